"""examples/quickstart.py runs as documented and does what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_runs_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py"),
                          str(tmp_path)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("clinic-17 (TR) -> location DE")
    assert "stored studies/1/ct.dcm in DE (local, local:aes-256-gcm)" in lines[1]
    assert lines[2].startswith("transfer to US blocked:") and "GDPR" in lines[2]
    assert lines[3] == "retention sweep of DE: 1 deleted"
    assert ": completed, receipt sha256:" in lines[4]
    # What it stored is gone: nothing of clinic-17 is left on disk.
    assert not list((tmp_path / "data").rglob("clinic-17/*"))
