"""The PDF report: the HTML report printed by headless Chromium.

Chromium is the renderer because the HTML report is the one layout (the flow diagram, the
print stylesheet); the PDF is what it prints, so the two cannot drift apart. The page is
printed from a private temporary folder with a throwaway profile, no network fetches of
its own, and is removed afterwards. Seal the result with
:func:`residency_sdk.audit.seal.seal_pdf`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from residency_sdk.errors import ReportRenderError, SDKNotInstalled

CHROMIUM_ENV = "RESIDENCY_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_INSTALL = (f"install it (`apt-get install chromium` on Debian/Ubuntu) or set {CHROMIUM_ENV} "
            "to the browser's executable")
# Chromium logs a screenful of these without a system bus; they hide the line that matters.
_NOISE = ("dbus/", "Fontconfig", "[: ")


def find_chromium() -> str:
    """The Chromium (or Chrome) executable: ``$RESIDENCY_CHROMIUM`` when set, else the first
    of chromium, chromium-browser, google-chrome, google-chrome-stable on ``PATH``.

    Raises :class:`SDKNotInstalled` naming what was looked for and how to install it.
    """
    configured = os.environ.get(CHROMIUM_ENV, "").strip()
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise SDKNotInstalled(
                f"${CHROMIUM_ENV} is {configured!r}, which is not an executable file (nor a "
                f"command on PATH): point it at the Chromium or Chrome executable, or unset "
                f"it to look for {', '.join(CANDIDATES)} on PATH")
        return found
    for name in CANDIDATES:
        found = shutil.which(name)
        if found is not None:
            return found
    raise SDKNotInstalled(
        f"the PDF report is printed by headless Chromium, which was not found (looked for "
        f"{', '.join(CANDIDATES)} on PATH; ${CHROMIUM_ENV} is not set): {_INSTALL}")


def html_to_pdf(html: str, *, timeout: float = 120.0) -> bytes:
    """Print ``html`` to PDF with headless Chromium and return the PDF's bytes.

    Raises :class:`SDKNotInstalled` without a browser and :class:`ReportRenderError` when
    it fails, runs past ``timeout`` seconds or prints nothing (with the tail of its
    stderr).
    """
    browser = find_chromium()
    # mkdtemp makes the folder 0o700: the report's data is readable by this user only.
    with tempfile.TemporaryDirectory(prefix="residency-pdf-") as tmp:
        root = Path(tmp)
        page, out = root / "report.html", root / "report.pdf"
        page.write_text(html, encoding="utf-8")
        command = [browser, "--headless", "--disable-gpu",
                   f"--user-data-dir={root / 'profile'}", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run",
                   "--no-default-browser-check", f"--print-to-pdf={out}",
                   # the first is today's switch, the second the one older versions know
                   "--no-pdf-header-footer", "--print-to-pdf-no-header", page.as_uri()]
        if _running_as_root():
            # Chromium refuses to start its sandbox as root (containers, CI); only then.
            command.insert(2, "--no-sandbox")
        stderr = _run(command, browser, timeout)
        data = out.read_bytes() if out.exists() else b""
    if not data.startswith(b"%PDF-"):
        what = "an empty file" if not data else "a file that is not a PDF"
        raise ReportRenderError(
            f"Chromium ({browser}) exited cleanly but printed {what}: check that it supports "
            f"--print-to-pdf (Chromium 112 or later); its stderr ends:\n{_tail(stderr)}")
    return data


def _running_as_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def _run(command: list[str], browser: str, timeout: float) -> str:
    """Run Chromium in its own process group, so it and every helper it started can be
    ended together; return its stderr."""
    try:
        process = subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise ReportRenderError(f"cannot start Chromium ({browser}): {exc.strerror or exc}; "
                                f"{_INSTALL}") from None
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(process.pid)
        _, err = process.communicate()
        raise ReportRenderError(
            f"Chromium ({browser}) did not print the PDF within {timeout:g} s: raise the "
            f"timeout or check that it starts headless; its stderr ends:\n"
            f"{_tail(err.decode('utf-8', 'replace'))}") from None
    finally:
        # Helpers (zygote, renderer) may outlive the browser; they write in the temp folder.
        _end_group(process.pid)
    text = err.decode("utf-8", "replace")
    if process.returncode != 0:
        raise ReportRenderError(
            f"Chromium ({browser}) failed printing the PDF (exit status {process.returncode});"
            f" its stderr ends:\n{_tail(text)}")
    return text


def _end_group(pgid: int) -> None:
    """SIGKILL the process group Chromium leads (ours: started with its own session), then
    wait briefly for it to be gone so the temp folder can be removed."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def _tail(stderr: str, lines: int = 15) -> str:
    useful = [line for line in stderr.splitlines()
              if line.strip() and not any(noise in line for noise in _NOISE)]
    return "\n".join(useful[-lines:])[-2000:] or "(nothing)"
