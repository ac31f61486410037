"""The wheel a user installs: built without setuptools warnings, licensed, with project URLs,
no dead dependency, every data file the SDK reads, and the quick start runs from it alone."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a source distribution holds: the package, its data, the metadata; not the tests,
# the virtualenv or a stale build/ folder.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "residency_sdk", "region_maps")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    # -v: setuptools' own warnings are only shown in verbose mode.
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps",
                          "-w", str(dist), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (wheel,) = dist.glob("residency_sdk-*.whl")
    yield wheel, out.stdout + out.stderr


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(zf.read(name))


def test_build_has_no_ignored_package_warning(built: tuple[Path, str]) -> None:
    _, log = built
    assert "would be ignored" not in log, log[log.find("would be ignored") - 600:][:1500]
    assert "is absent from the `packages` configuration" not in log


def test_wheel_is_licensed_and_names_its_project(built: tuple[Path, str]) -> None:
    wheel, _ = built
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(urls)
    with zipfile.ZipFile(wheel) as zf:
        licence = next(n for n in zf.namelist() if n.endswith("licenses/LICENSE"))
        assert b"Apache License" in zf.read(licence)


def test_dependencies_are_the_ones_used(built: tuple[Path, str]) -> None:
    wheel, _ = built
    requires = [r.replace(" ", "") for r in _metadata(wheel).get_all("Requires-Dist") or []]
    names = {r.split(";")[0].split(">")[0].split("<")[0].split("[")[0].lower() for r in requires}
    assert "pycountry" not in names  # the ISO table ships as data
    assert "duckdb" not in names  # no module imports it
    assert "pydantic-settings" in names
    assert any(r.startswith("azure-identity") and 'extra=="azure"' in r for r in requires)
    assert any(r.startswith("opentelemetry-api") and 'extra=="otel"' in r for r in requires)


def test_wheel_ships_every_data_file_the_sdk_reads(built: tuple[Path, str]) -> None:
    wheel, _ = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    expected = {
        "residency_sdk/py.typed",
        "residency_sdk/audit/templates/report.html.j2",
        "residency_sdk/region_maps/default.yaml",
        "residency_sdk/region_maps/transfer_rules.yaml",
        "residency_sdk/region_maps/schema.json",
        "residency_sdk/region_maps/examples/mvision.yaml",
    }
    assert expected <= names, expected - names
    shipped_json = {n for n in names if n.startswith("residency_sdk/deid/") and n.endswith(".json")}
    assert shipped_json, "the de-identification tables are missing"


def test_quickstart_runs_from_the_installed_wheel_alone(built: tuple[Path, str],
                                                        tmp_path: Path) -> None:
    wheel, _ = built
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    # The script is copied out of the checkout: nothing may be read from the repository.
    script = tmp_path / "elsewhere" / "quickstart.py"
    script.parent.mkdir()
    shutil.copy2(ROOT / "examples" / "quickstart.py", script)
    check = ("import residency_sdk, runpy, sys; "
             f"assert residency_sdk.__file__.startswith({str(target)!r}), residency_sdk.__file__;"
             f"sys.argv = ['quickstart.py', {str(tmp_path / 'work')!r}];"
             f"runpy.run_path({str(script)!r}, run_name='__main__')")
    (tmp_path / "work").mkdir()
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         cwd=script.parent, env={"PYTHONPATH": str(target),
                                                 "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "clinic-17 (TR) -> location DE" in out.stdout
    assert "transfer to US blocked" in out.stdout
    assert "completed" in out.stdout
