"""residency-sdk in one page: route a clinic, store a study in its country, try to send it
abroad, sweep expired uploads, erase the clinic. Runs on the embedded local backend: no
cloud account needed.

    python examples/quickstart.py [WORKDIR]
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from importlib.resources import as_file, files
from pathlib import Path

import residency_sdk as rs
from residency_sdk.erasure import audit_log_events, verify_receipt

# The example maps ship inside the package, so this runs from an installed wheel too.
EXAMPLE_MAP = files("residency_sdk.region_maps.examples") / "mvision.yaml"


def main(workdir: Path) -> int:
    with as_file(EXAMPLE_MAP) as map_path:
        res = rs.Residency.load(map_path, audit=str(workdir / "audit.db"),
                                local_root=workdir / "data")

    # 1. Routing: a Turkish clinic's data lives in Germany, under its standard contract.
    clinic = rs.Tenant(id="clinic-17", country="TR", agreements={"kvkk_standard_contract"})
    placement = res.resolve(clinic)
    print(f"clinic-17 (TR) -> location {placement.location} "
          f"(needs one of {placement.required_mechanisms})")

    # 2. Storage: the study is stored, encrypted, in the clinic's location; its retention
    #    category makes it expire after the map's 24 hours (the cloud's lifecycle rule
    #    selects it by tag / custom time; the retention sweep is the exact fallback).
    store = res.storage_for(clinic, actor="quickstart", purpose="diagnosis")
    info = store.put("studies/1/ct.dcm", b"DICM" + b"\0" * 1024, data_class="phi",
                     category="imaging_upload")
    print(f"stored {info.key} in {info.location} ({info.provider}, {info.encryption})")

    # 3. Transfer control: sending the study to the US is blocked, with the reason.
    try:
        res.transfer(clinic, "studies/1/ct.dcm", to="US", data_class="phi")
    except rs.TransferBlocked as blocked:
        print("transfer to US blocked: " + "; ".join(blocked.decision.reasons))

    # 4. Retention: 25 hours later (an injected clock), the sweep deletes the upload.
    later = datetime.now(UTC) + timedelta(hours=25)
    report = res.retention_sweep(placement.location, clock=lambda: later).run()
    print(f"retention sweep of {placement.location}: {report.total('deleted')} deleted")

    # 5. Erasure: res.erase records a tracked request (30-day deadline), deletes on every
    #    backend, verifies nothing is left and records the receipt in the audit trail.
    store.put("reports/1.pdf", b"%PDF-1.7", data_class="phi")
    done = res.erase(clinic, actor="dpo@example.com", reason="contract terminated",
                     state_dir=workdir / "state")
    request = res.erasure_tracker(workdir / "state").get(done.request_id)
    audited = verify_receipt(request, audit_log_events(workdir / "audit.db"))
    print(f"erasure {done.request_id}: {done.status}, receipt {audited.checksum} "
          f"({done.objects} object(s), {done.bytes} bytes)")
    return 0 if done.complete else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp)))
