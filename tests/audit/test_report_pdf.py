"""The PDF report: headless Chromium prints the HTML report, the PDF is sealed and verifies,
and a byte changed in a page's content stream fails; finding and running the browser fails
with a clear error (fake browsers stand in for the failures)."""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
from pathlib import Path

import pytest
from components import missing, require
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from residency_sdk.audit.pdf import CHROMIUM_ENV, find_chromium, html_to_pdf
from residency_sdk.audit.seal import (
    SEAL_SLOT_HTML,
    embed_report_json,
    seal_html,
    seal_pdf,
    verify_report,
)
from residency_sdk.errors import ReportRenderError, SDKNotInstalled

pypdf = require("pypdf", "pip install 'residency-sdk[pdf]'")

REPORT = {
    "schema": "residency.audit.report/v3",
    "generated_at": "2026-11-02T09:00:00+00:00",
    "chain": {"head_hash": "ab" * 32, "status": "verified"},
    "anchors": [{"kind": "folder", "ref": "/srv/anchors"}],
    "summary": {"flows": 1},
    "rows": [{"origin": "DE", "destination": "US", "bytes": 4000}],
}
HEADLINE = "Cross-border transfers DE to US"


def report_page() -> str:
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\"><style>h1 { font: 24px sans-serif; }</style></head>"
            f"<body><h1>{HEADLINE}</h1><table><tr><td>DE</td><td>US</td><td>4000</td></tr>"
            '</table><script type="application/json" id="residency-report-data">'
            f"{embed_report_json(REPORT)}</script>{SEAL_SLOT_HTML}</body></html>")


def _real_chromium(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv(CHROMIUM_ENV, raising=False)
    try:
        return find_chromium()
    except SDKNotInstalled as exc:
        missing(f"chromium is not installed ({exc})", "apt-get install chromium (Debian)")
        raise  # not reached: missing() fails (CI) or skips


def _fake_browser(tmp_path: Path, body: str) -> Path:
    """An executable standing in for Chromium: ``body`` is Python run with ``out`` (the PDF
    path it was asked to print to), ``here`` (``tmp_path``), ``os`` and ``sys``."""
    script = tmp_path / "fake-chromium"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"here = {str(tmp_path)!r}\n"
        "open(os.path.join(here, 'args'), 'w').write('\\n'.join(sys.argv[1:]))\n"
        "out = next(a.split('=', 1)[1] for a in sys.argv if a.startswith('--print-to-pdf='))\n"
        f"{body}\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where html_to_pdf makes its temp folder, to check it is removed."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# --- with Chromium ---------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_chromium_prints_a_pdf_that_seals_and_verifies(
        monkeypatch: pytest.MonkeyPatch, private_tmp: Path) -> None:
    _real_chromium(monkeypatch)
    key = Ed25519PrivateKey.generate()
    pdf = html_to_pdf(report_page())
    assert pdf.startswith(b"%PDF-")
    assert list(private_tmp.iterdir()) == []  # the page and profile are gone
    sealed = seal_pdf(pdf, REPORT, key)
    check = verify_report(sealed, key.public_key(), name="report.pdf")
    assert check.ok, check.problems
    assert check.format == "pdf" and check.chain_head == "ab" * 32
    reader = pypdf.PdfReader(io.BytesIO(sealed))
    assert HEADLINE in reader.pages[0].extract_text()
    assert "residency-report.json" in reader.attachments

    # One byte flipped inside the first page's content stream.
    contents = reader.pages[0].get("/Contents")
    ref = contents[0] if isinstance(contents, pypdf.generic.ArrayObject) else contents
    obj_at = sealed.index(b"\n%d %d obj" % (ref.idnum, ref.generation))
    stream_at = sealed.index(b"stream", obj_at) + len(b"stream\n")
    at = stream_at + 8
    assert at < sealed.index(b"endstream", stream_at)
    flipped = sealed[:at] + bytes([sealed[at] ^ 0x20]) + sealed[at + 1:]
    check = verify_report(flipped, key.public_key())
    assert not check.ok
    assert any("pdf document does not match the seal" in p for p in check.problems)


@pytest.mark.timeout(180)
def test_a_sealed_html_page_prints_too(monkeypatch: pytest.MonkeyPatch) -> None:
    _real_chromium(monkeypatch)
    key = Ed25519PrivateKey.generate()
    pdf = html_to_pdf(seal_html(report_page(), REPORT, key))
    assert HEADLINE in pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


# --- finding and running the browser ---------------------------------------------------


def test_find_chromium_honours_the_environment(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    browser = _fake_browser(tmp_path, "sys.exit(0)")
    monkeypatch.setenv(CHROMIUM_ENV, str(browser))
    assert find_chromium() == str(browser)
    monkeypatch.setenv(CHROMIUM_ENV, str(tmp_path / "no-such-browser"))
    with pytest.raises(SDKNotInstalled, match=rf"\${CHROMIUM_ENV} is .*no-such-browser"):
        find_chromium()


def test_find_chromium_says_how_to_install(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHROMIUM_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SDKNotInstalled) as raised:
        find_chromium()
    message = str(raised.value)
    assert "chromium, chromium-browser, google-chrome" in message
    assert "apt-get install chromium" in message and CHROMIUM_ENV in message


def test_html_to_pdf_runs_the_browser_headless_in_a_private_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path) -> None:
    browser = _fake_browser(
        tmp_path, "mode = os.stat(os.path.dirname(out)).st_mode & 0o777\n"
                  "open(os.path.join(here, 'mode'), 'w').write(oct(mode))\n"
                  "open(out, 'wb').write(b'%PDF-1.7 fake')")
    monkeypatch.setenv(CHROMIUM_ENV, str(browser))
    assert html_to_pdf("<html><body>hi</body></html>") == b"%PDF-1.7 fake"
    args = (tmp_path / "args").read_text(encoding="utf-8").splitlines()
    assert "--headless" in args and "--no-pdf-header-footer" in args
    assert "--disable-gpu" in args and "--no-first-run" in args
    assert any(a.startswith("--user-data-dir=") and a.endswith("/profile") for a in args)
    assert ("--no-sandbox" in args) == (os.geteuid() == 0)
    assert args[-1].startswith("file://") and args[-1].endswith("/report.html")
    assert (tmp_path / "mode").read_text(encoding="utf-8") == "0o700"
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("body, expected", [
    ("print('fatal: no display for you', file=sys.stderr); sys.exit(3)",
     r"exit status 3.*no display for you"),
    ("sys.exit(0)", r"printed an empty file"),
    ("open(out, 'w').write('<html>')", r"not a PDF"),
])
def test_html_to_pdf_failures_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        private_tmp: Path, body: str, expected: str) -> None:
    monkeypatch.setenv(CHROMIUM_ENV, str(_fake_browser(tmp_path, body)))
    with pytest.raises(ReportRenderError, match=rf"(?s)fake-chromium.*{expected}"):
        html_to_pdf("<html></html>")
    assert list(private_tmp.iterdir()) == []


@pytest.mark.timeout(60)
def test_html_to_pdf_times_out_and_ends_the_browser(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    browser = _fake_browser(
        tmp_path, "open(os.path.join(here, 'pid'), 'w').write(str(os.getpid()))\n"
                  "print('starting', file=sys.stderr, flush=True)\n"
                  "time.sleep(30)")
    monkeypatch.setenv(CHROMIUM_ENV, str(browser))
    with pytest.raises(ReportRenderError, match=r"(?s)within 1 s.*starting"):
        html_to_pdf("<html></html>", timeout=1)
    pid = int((tmp_path / "pid").read_text(encoding="utf-8"))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
