"""Hostile input against the storage facade and the storage CLI (``put/get/ls/rm``).

Tenant ids, keys, prefixes and data classes come from hypothesis: ``..``, NUL, unicode
confusables of ``.`` and ``/``, 10 KB names, absolute paths, backslashes, ``%2e%2e``,
trailing dots and spaces, data classes that do not exist. Every call must succeed or raise
a ``ResidencyError`` subclass (the CLI: exit 0/1/2 with no traceback, JSON that parses with
``--json``); afterwards every file on the local backend lies under
``<root>/<location>/<bucket>/tenants/<tenant id>/`` (or in the location's ``.keys``), and on
the S3 emulator every key in the bucket starts with an accepted tenant's prefix.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from reliability_support import Clock, write_figures

import residency_sdk as rs
from residency_sdk.cli import app
from residency_sdk.lineage import LINEAGE_PREFIX
from residency_sdk.tenants import RECORDS_PREFIX

EXAMPLES = int(os.environ.get("RESIDENCY_HOSTILE_EXAMPLES") or 150)
TRAVERSALS = [
    "..", "../..", "../x", "a/../../b", "./a", "a/./b", "/etc/passwd", "/", "//x", "C:\\x",
    "C:/Windows/x", "..\\..\\x", "a\\..\\..\\b", "%2e%2e/%2e%2e/x", "%2e%2e%2fx", "..%2fx",
    "a\x00b", "\x00", "a.", "a ", "a. .", "a/b.", "a /b", " ", "", "CON", "nul", "aux.txt",
    "~", "~/x", "$HOME", "a\nb", "a\rb", "a\tb", "\u202eevil", "a\u200bb", "\ufeffa",
    "\u2024\u2024/x", "\uff0e\uff0e/x", "a\u2215..\u2215b", "a\uff0fb", "..\u2044x",
    "\u0430dmin", "tenants", "tenants/other/x", "@meta", "x/@meta", "@v-1", ".keys/CURRENT",
    "x" * 10_240, "é" * 300, "a/" * 600 + "b", "a" * 255 + "/b", "ﬁle", "e\u0301",
]
SAFE_KEYS = st.sampled_from(["a", "notes/1.txt", "scans/2024/img.dcm", "ü/ß", "x-y_z"])
hostile = (SAFE_KEYS | SAFE_KEYS | st.sampled_from(TRAVERSALS) | st.text(max_size=20)
           | st.lists(st.sampled_from([*TRAVERSALS, "a", "b", "tenants"]), min_size=1,
                      max_size=4).map("/".join))
SAFE_TENANTS = st.sampled_from(["clinic-a", "clinic-b", "c.d", "a_b"])
# Safe values weigh as much as hostile ones, so writes succeed and the walk means something.
tenant_ids = st.one_of(SAFE_TENANTS, SAFE_TENANTS, hostile)
data_classes = st.sampled_from(["phi", "phi", "phi", "personal", "anonymised", "PHI", "secret",
                                "", "..", "phi\x00", "\uff50\uff48\uff49"]) | st.text(max_size=8)
OPS = ("put", "put", "get", "head", "exists", "list", "delete")
PROFILE = settings(max_examples=EXAMPLES, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow,
                                          HealthCheck.function_scoped_fixture])


class Tally:
    """Inputs tried and accepted tenant ids, for the after-run walk and the figures."""

    def __init__(self) -> None:
        self.inputs = 0
        self.refused = 0
        self.accepted_tenants: set[str] = set()
        self.untyped: list[str] = []


def _check_local_root(root: Path, tenants: set[str]) -> list[str]:
    """Every file outside ``<root>/<loc>/<bucket>/tenants/<accepted id>/`` (or the
    location's key folder / bucket lock, or an accepted tenant's country record or
    lineage)."""
    outside = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            rel = (Path(dirpath) / name).relative_to(root).parts
            if len(rel) == 2 and rel[0] == ".residency-state" \
                    and rel[1].startswith("audit.db"):
                continue  # the default audit log (the CLI audits by default)
            if len(rel) >= 3 and rel[1] == ".keys":
                continue
            if len(rel) == 3 and rel[2] == "@lock":
                continue
            if len(rel) >= 5 and rel[2] == "tenants" and rel[3] in tenants:
                continue
            if len(rel) == 6 and rel[2:4] == ("_residency", "tenant-records") \
                    and rel[4].removesuffix(".json") in tenants:
                continue  # the accepted tenant's own country record
            if len(rel) >= 6 and rel[2:4] == ("_residency", "lineage") and rel[4] in tenants:
                continue  # where the accepted tenant's data went (what erasure plans from)
            outside.append("/".join(rel))
    return outside


def _facade_call(res: Any, tally: Tally, tenant_id: Any, key: Any, data_class: Any,
                 op: str) -> None:
    tally.inputs += 1
    try:
        tenant = rs.Tenant(id=tenant_id, country="DE")
        store = res.storage_for(tenant)
        if op == "put":
            info = store.put(key, b"hostile payload", data_class=data_class)
            tally.accepted_tenants.add(tenant.id)
            assert info.stored_key.startswith(f"tenants/{tenant.id}/"), info.stored_key
            assert store.get(key) == b"hostile payload"
        elif op == "get":
            store.get(key)
        elif op == "head":
            store.head(key)
        elif op == "exists":
            store.exists(key)
        elif op == "list":
            for obj in store.list(key):
                assert obj.stored_key.startswith(f"tenants/{tenant.id}/"), obj.stored_key
        else:
            store.delete(key)
    except rs.ResidencyError:
        tally.refused += 1
    except Exception as exc:  # the finding: anything but the hierarchy
        tally.untyped.append(f"{op} tenant={tenant_id!r:.80} key={key!r:.80} "
                             f"class={data_class!r}: {type(exc).__name__}: {exc!s:.200}")


def test_facade_local_backend_hostile_input(tmp_path: Path) -> None:
    clock = Clock()
    root = tmp_path / "root"
    audit = tmp_path / "audit.db"
    res = rs.Residency.load(local_root=root, audit=str(audit))
    tally = Tally()

    @PROFILE
    @given(tenant_id=tenant_ids, key=hostile, data_class=data_classes,
           op=st.sampled_from(OPS))
    def run(tenant_id: Any, key: Any, data_class: Any, op: str) -> None:
        _facade_call(res, tally, tenant_id, key, data_class, op)

    run()
    res.close()
    outside = _check_local_root(root, tally.accepted_tenants)
    write_figures("hostile_storage_facade_local", {
        "inputs_tried": tally.inputs, "typed_errors": tally.refused,
        "untyped_errors": len(tally.untyped), "writes_outside_prefix": len(outside),
        "tenants_accepted": len(tally.accepted_tenants), "duration_s": clock.seconds()})
    assert not tally.untyped, "\n".join(tally.untyped[:20])
    assert not outside, outside[:20]
    assert tally.accepted_tenants, "no write succeeded: the test proves nothing"


@pytest.mark.emulator
def test_facade_s3_emulator_hostile_input(emulators: Any, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    from storage_harness import ProviderHarness

    clock = Clock()
    harness = ProviderHarness("aws", emulators, monkeypatch, tmp_path)
    res = harness.residency(tmp_path)
    tally = Tally()
    marker = f"hostile{os.getpid()}"

    @settings(PROFILE, max_examples=max(20, EXAMPLES // 3))
    @given(tenant_id=tenant_ids.map(lambda t: f"{marker}{t}" if isinstance(t, str) else t),
           key=hostile, data_class=data_classes, op=st.sampled_from(OPS))
    def run(tenant_id: Any, key: Any, data_class: Any, op: str) -> None:
        _facade_call(res, tally, tenant_id, key, data_class, op)

    bucket = res.map.locations["DE"].backends["aws"].bucket
    s3 = harness.aws_client("s3", res.map.locations["DE"].backends["aws"].region)

    def all_keys() -> set[str]:
        return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket) for o in page.get("Contents", [])}

    # Other tests share the session's emulator: judge only what this run added.
    before = all_keys()
    run()
    keys = sorted(all_keys() - before)
    records = {f"{RECORDS_PREFIX}{t}.json" for t in tally.accepted_tenants}
    lineage = tuple(f"{LINEAGE_PREFIX}{t}/" for t in tally.accepted_tenants)
    outside = [k for k in keys if k not in records and not k.startswith(lineage)
               and (not k.startswith("tenants/")
                    or k.split("/")[1] not in tally.accepted_tenants)]
    res.close()
    write_figures("hostile_storage_facade_s3", {
        "inputs_tried": tally.inputs, "typed_errors": tally.refused,
        "untyped_errors": len(tally.untyped), "writes_outside_prefix": len(outside),
        "objects_listed": len(keys), "duration_s": clock.seconds()})
    assert not tally.untyped, "\n".join(tally.untyped[:20])
    assert not outside, outside[:20]
    assert tally.accepted_tenants, "no write succeeded: the test proves nothing"


def test_cli_hostile_input(tmp_path: Path) -> None:
    clock = Clock()
    root = tmp_path / "root"
    runner = CliRunner()
    src = tmp_path / "payload.bin"
    src.write_bytes(b"cli hostile payload")
    tally = Tally()
    problems: list[str] = []

    @settings(PROFILE, max_examples=max(30, EXAMPLES // 2))
    @given(tenant_id=tenant_ids, key=hostile, data_class=data_classes,
           command=st.sampled_from(["put", "get", "ls", "rm"]), as_json=st.booleans())
    def run(tenant_id: str, key: str, data_class: str, command: str, as_json: bool) -> None:
        tally.inputs += 1
        args = [command, key]
        if command == "put":
            args += [str(src), "--data-class", data_class]
        elif command == "get":
            args += ["--out", tempfile.mktemp(dir=tmp_path)]
        args += ["--tenant", tenant_id, "--country", "DE", "--local-root", str(root)]
        if as_json:
            args.append("--json")
        result = runner.invoke(app, args, catch_exceptions=True)
        shown = f"{args!r:.200}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"{shown}: {type(result.exception).__name__}: "
                            f"{result.exception!s:.200}")
            return
        if result.exit_code not in (0, 1, 2):
            problems.append(f"{shown}: exit {result.exit_code}")
        if "Traceback" in result.output:
            problems.append(f"{shown}: traceback in output")
        if result.exit_code == 0 and command == "put":
            tally.accepted_tenants.add(tenant_id)
        if result.exit_code != 0:
            tally.refused += 1
        if as_json and result.exit_code in (0, 1) and result.stdout.strip():
            try:
                json.loads(result.stdout)
            except ValueError:
                problems.append(f"{shown}: --json printed non-JSON {result.stdout!r:.200}")

    run()
    outside = _check_local_root(root, tally.accepted_tenants)
    write_figures("hostile_storage_cli", {
        "inputs_tried": tally.inputs, "refused": tally.refused,
        "untyped_errors": len(problems), "writes_outside_prefix": len(outside),
        "duration_s": clock.seconds()})
    assert not problems, "\n".join(problems[:20])
    assert not outside, outside[:20]
    assert tally.accepted_tenants, "no CLI write succeeded: the test proves nothing"
