"""The HTML report, opened in headless Chromium: diagram and tables render, no console
error, sorting works, and nothing outside the file is loaded."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from components import missing
from report_fixture import fixture_map, write_fixture_log

from residency_sdk.audit.html import to_html
from residency_sdk.audit.report import build_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_CONSOLE = re.compile(r":CONSOLE[:(]")


def _chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"chromium is not installed (looked for {CHROMIUM})",
                "apt-get install chromium (Debian)")
    return CHROMIUM


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """Load ``page`` headless; return the DOM after scripts ran and every console line."""
    profile = tmp_path / f"profile-{page.stem}"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if _CONSOLE.search(line)]
    return done.stdout, console


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(dom: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Counter()
    parser.feed(dom)
    return parser.tags


@pytest.fixture
def report_html(tmp_path: Path) -> str:
    log = write_fixture_log(tmp_path / "fixture.db")
    return to_html(build_report(log, until="2026-11-02", region_map=fixture_map(tmp_path)))


def test_report_is_self_contained(report_html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", report_html)
    assert "Content-Security-Policy" in report_html and "default-src 'none'" in report_html
    assert "@media print" in report_html


@pytest.mark.timeout(180)
def test_chromium_renders_diagram_and_tables(report_html: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    dom, console = open_in_chromium(page, tmp_path)
    assert console == [], console
    tags = _tags(dom)
    body = next(attrs for tag, attrs in tags if tag == "body")
    assert body.get("data-ready") == "sortable"  # the inline script ran to the end
    assert [a.get("id") for t, a in tags if t == "svg"] == ["flow-diagram"]
    links = [a for t, a in tags if t == "path" and a.get("class") == "link"]
    nodes = [a for t, a in tags if t == "rect" and a.get("class") == "node"]
    assert len(links) == 4 and len(nodes) == 6  # 2 origins, 2 locations, 2 destinations
    labels = re.findall(r'<rect class="node"[^>]*><title>([^:<]+):', dom)
    assert sorted(labels) == ["CH", "CH", "DE", "DE", "GB", "US"]  # residency locations only
    widths = {m[1]: float(m[0]) for m in re.findall(
        r'stroke-width="([\d.]+)"><title>([^<]+?):', dom)}
    # Band widths follow volume: DE->GB moved 4000 bytes, CH->US 500.
    assert widths["DE → GB"] / widths["CH → US"] == pytest.approx(8, rel=0.01)
    tables = [a for t, a in tags if t == "table"]
    assert [a.get("aria-label") for a in tables] == [
        "Data movements by flow", "Decisions", "Per tenant", "Blocked attempts",
        "Violations", "Rules in force", "Chain", "Endpoints located on the region map's word"]
    assert dom.count('class="violation"') == 5
    assert 'id="residency-report-data"' in dom and "<!--residency-seal-->" in dom


@pytest.mark.timeout(180)
def test_tables_sort_when_a_header_is_clicked(report_html: str, tmp_path: Path) -> None:
    # A test copy: drop the CSP (it would rightly refuse the probe script) and click the
    # movements table's "bytes" header twice, recording the first row each time.
    probe = """<script>
      var table = document.querySelector('table[aria-label="Data movements by flow"]');
      var col = Array.prototype.map.call(table.tHead.rows[0].cells,
                                         function (c) { return c.textContent; }).indexOf('bytes');
      var th = table.tHead.rows[0].cells[col];
      var first = function () {
        return table.tBodies[0].rows[0].cells[col].getAttribute('data-v'); };
      th.click(); var up = first(); th.click(); var down = first();
      document.body.setAttribute('data-probe',
                                 up + ',' + down + ',' + th.getAttribute('aria-sort'));
    </script></body>"""
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", report_html)
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe), encoding="utf-8")
    dom, console = open_in_chromium(page, tmp_path)
    assert console == [], console
    probe_value = next(a for t, a in _tags(dom) if t == "body").get("data-probe")
    assert probe_value == "500,4000,descending"


@pytest.mark.timeout(180)
def test_hostile_values_render_as_text_with_a_brand(tmp_path: Path) -> None:
    """Actors, keys and reasons come from callers: in the page they are text, never
    markup, whatever a company's branding adds."""
    from residency_sdk.audit import AuditLog
    from residency_sdk.audit.html import Branding, logo_data_uri
    from residency_sdk.events import AuditEvent

    log = tmp_path / "hostile.db"
    with AuditLog(log) as audit:
        audit.append(AuditEvent(
            operation="transfer_check", outcome="blocked", tenant_id="t1",
            tenant_country="DE", source_location="DE", destination_country="US",
            is_transfer=True, data_class="phi", actor="<script>alert(1)</script>",
            purpose="<img src=x onerror=alert(2)>", reasons=("</td><b>bold</b>",)))
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
                    '<rect width="40" height="20" fill="#0969da"/></svg>', encoding="utf-8")
    html = to_html(build_report(log), Branding(name="Clinic <Cloud> GmbH",
                                               logo=logo_data_uri(logo)))
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x" not in html and "<b>bold</b>" not in html
    page = tmp_path / "hostile.html"
    page.write_text(html, encoding="utf-8")
    dom, console = open_in_chromium(page, tmp_path)
    assert console == [], console
    tags = _tags(dom)
    assert [a.get("alt") for t, a in tags if t == "img"] == ["Clinic <Cloud> GmbH"]
    assert "<b>bold</b>" not in dom  # the reason's markup stayed text
    assert "Clinic &lt;Cloud&gt; GmbH" in dom


@pytest.mark.timeout(240)
def test_sealed_pdf_report_prints_and_verifies(tmp_path: Path) -> None:
    """The report printed to PDF by headless Chromium, sealed: `report verify` accepts
    it, and refuses it once a byte of its text or its embedded data is changed."""
    from pypdf import PdfReader

    from residency_sdk.audit.render import render_document
    from residency_sdk.audit.seal import generate_keypair, load_public_key, load_signing_key
    from residency_sdk.audit.seal import verify_report as verify_sealed

    _chromium()
    log = write_fixture_log(tmp_path / "fixture.db")
    report = build_report(log, until="2026-11-02", region_map=fixture_map(tmp_path))
    generate_keypair(tmp_path / "key.pem", tmp_path / "key.pub")
    key, public = load_signing_key(tmp_path / "key.pem"), load_public_key(tmp_path / "key.pub")
    pdf = render_document(report, "pdf", signing_key=key)
    assert pdf.startswith(b"%PDF-")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    for expected in ("Transfer-audit report", "Data movements by", "Blocked attempts",
                     "Rules in force", "charite"):
        assert expected in text, expected
    check = verify_sealed(pdf, public)
    assert check.ok and check.format == "pdf", check.problems
    assert check.chain_head == report.chain.head_hash
    # One byte of the printed text, inside a page content stream.
    at = pdf.index(b"stream", pdf.index(b"/Contents")) + 40
    altered = pdf[:at] + bytes([pdf[at] ^ 0x01]) + pdf[at + 1:]
    assert not verify_sealed(altered, public).ok
    other = tmp_path / "other"
    other.mkdir()
    generate_keypair(other / "key.pem", other / "key.pub")
    assert not verify_sealed(pdf, load_public_key(other / "key.pub")).ok


@pytest.mark.timeout(180)
def test_console_errors_and_external_loads_are_caught(tmp_path: Path) -> None:
    """The checks above can fail: a script error, or an asset blocked by the report's
    policy, both show up as console lines."""
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefinedFunction();</script></body></html>",
                      encoding="utf-8")
    _, console = open_in_chromium(broken, tmp_path)
    assert any("undefinedFunction" in line for line in console)
    external = tmp_path / "external.html"
    external.write_text(
        "<html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
        "'none'\"></head><body><img src=\"http://127.0.0.1:9/x.png\"></body></html>",
        encoding="utf-8")
    _, console = open_in_chromium(external, tmp_path)
    assert any("Content Security Policy" in line for line in console)
