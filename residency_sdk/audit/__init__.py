"""Tamper-evident audit trail: the hash-chained log, its verification, the report.

``AuditLog("audit.db")`` (or ``AuditLog("postgresql://...")``) is what
``Residency.load(audit=...)`` wires in; ``verify_log`` checks a log against its key and
its anchors.
"""

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
