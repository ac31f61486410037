"""A user's type checker sees the public values as they are used: the documented calls pass
mypy --strict, a misspelt or mistyped field fails it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.components import require

ROOT = Path(__file__).resolve().parents[2]

DOCUMENTED = """\
import residency_sdk as rs

a = rs.Tenant(id="clinic-17", country="TR", agreements={"kvkk_standard_contract"})
b = rs.Tenant(id="clinic-18", country="DE", agreements="scc")
c = rs.Tenant(id="clinic-19", country="FR",
              agreements=["scc", rs.Agreement(mechanism="scc", counterparty="acme")],
              out_of_scope={"hds": "no health data hosting"})
d = rs.Tenant(id="clinic-20", country="DE", out_of_scope=[("sgb5_393", "private clinic")])
"""

MISTAKES = """\
import residency_sdk as rs

a = rs.Tenant(id="clinic-17", countr="TR")
b = rs.Tenant(id="clinic-18", country=276)
c = rs.Tenant(id="clinic-19", country="DE", agreements=42)
"""


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    require("mypy", "pip install -e '.[test]'")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(source)
    # The user's view: strict mypy without the pydantic plugin (not every project has it).
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n")
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config),
                           "--cache-dir", str(ROOT / ".mypy_cache" / "user-view"),
                           str(snippet)], capture_output=True, text=True, cwd=ROOT,
                          env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_documented_tenant_calls_type_check(tmp_path: Path) -> None:
    out = _mypy(tmp_path, DOCUMENTED)
    errors = [line for line in out.stdout.splitlines() if "snippet.py" in line]
    assert errors == [], "\n".join(errors)


def test_misspelt_and_mistyped_tenant_fields_are_caught(tmp_path: Path) -> None:
    out = _mypy(tmp_path, MISTAKES)
    lines = [line for line in out.stdout.splitlines() if "snippet.py:" in line and "error" in line]
    assert any(':3:' in line and '"countr"' in line for line in lines), out.stdout
    assert any(':4:' in line and '"country"' in line for line in lines), out.stdout
    assert any(':5:' in line and '"agreements"' in line for line in lines), out.stdout
