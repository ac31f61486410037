"""Tamper-evident audit trail: the hash-chained log, its verification, the report.

``AuditLog("audit.db")`` (or ``AuditLog("postgresql://...")``) is what
``Residency.load(audit=...)`` wires in; ``verify_log`` checks a log against its key and
its anchors.

Every name below is imported on first use (PEP 562): ``from residency_sdk.audit import
AuditLog`` loads the log and its chain store, not the report and its renderers. One name
is also a submodule's: ``render`` is the function, unless ``residency_sdk.audit.render``
(the module) was imported first; ``from residency_sdk.audit.render import render`` is
unambiguous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from residency_sdk._lazy import lazy_getattr

if TYPE_CHECKING:
    from residency_sdk.audit._checkpoint import Checkpoint as Checkpoint
    from residency_sdk.audit._checkpoint import load_checkpoint as load_checkpoint
    from residency_sdk.audit.chain import GENESIS as GENESIS
    from residency_sdk.audit.chain import HMAC_KEY_ENV as HMAC_KEY_ENV
    from residency_sdk.audit.chain import LogInfo as LogInfo
    from residency_sdk.audit.chain import canonical as canonical
    from residency_sdk.audit.checkpoint import export_checkpoint as export_checkpoint
    from residency_sdk.audit.checkpoint import verify_checkpoint as verify_checkpoint
    from residency_sdk.audit.jsonl import JsonlSink as JsonlSink
    from residency_sdk.audit.jsonl import verify_jsonl as verify_jsonl
    from residency_sdk.audit.log import AuditLog as AuditLog
    from residency_sdk.audit.log import open_store as open_store
    from residency_sdk.audit.render import render as render
    from residency_sdk.audit.report import AuditReport as AuditReport
    from residency_sdk.audit.report import build_report as build_report
    from residency_sdk.audit.sqlite_store import SQLiteChainStore as SQLiteChainStore
    from residency_sdk.audit.store import ChainStore as ChainStore
    from residency_sdk.audit.store import Head as Head
    from residency_sdk.audit.verify import ChainBreak as ChainBreak
    from residency_sdk.audit.verify import VerifyResult as VerifyResult
    from residency_sdk.audit.verify import require_valid as require_valid
    from residency_sdk.audit.verify import verify_log as verify_log

# Export name -> the submodule defining it.
_EXPORTS: dict[str, str] = {
    "Checkpoint": "_checkpoint",
    "load_checkpoint": "_checkpoint",
    "GENESIS": "chain",
    "HMAC_KEY_ENV": "chain",
    "LogInfo": "chain",
    "canonical": "chain",
    "export_checkpoint": "checkpoint",
    "verify_checkpoint": "checkpoint",
    "JsonlSink": "jsonl",
    "verify_jsonl": "jsonl",
    "AuditLog": "log",
    "open_store": "log",
    "render": "render",
    "AuditReport": "report",
    "build_report": "report",
    "SQLiteChainStore": "sqlite_store",
    "ChainStore": "store",
    "Head": "store",
    "ChainBreak": "verify",
    "VerifyResult": "verify",
    "require_valid": "verify",
    "verify_log": "verify",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr("residency_sdk.audit", _EXPORTS, globals())
