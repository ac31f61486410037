"""Tamper-evident audit trail: the hash-chained log, its verification, the report.

``AuditLog("audit.db")`` is what ``Residency.load(audit="audit.db")`` wires in.
"""

from residency_sdk.audit.chain import GENESIS, HMAC_KEY_ENV, canonical
from residency_sdk.audit.checkpoint import (
    Checkpoint,
    export_checkpoint,
    load_checkpoint,
    verify_checkpoint,
)
from residency_sdk.audit.jsonl import JsonlSink, verify_jsonl
from residency_sdk.audit.log import AuditLog
from residency_sdk.audit.render import render
from residency_sdk.audit.report import AuditReport, build_report
from residency_sdk.audit.verify import ChainBreak, VerifyResult, require_valid, verify_log

__all__ = [
    "GENESIS",
    "HMAC_KEY_ENV",
    "AuditLog",
    "AuditReport",
    "ChainBreak",
    "Checkpoint",
    "JsonlSink",
    "VerifyResult",
    "build_report",
    "canonical",
    "export_checkpoint",
    "load_checkpoint",
    "render",
    "require_valid",
    "verify_checkpoint",
    "verify_jsonl",
    "verify_log",
]
