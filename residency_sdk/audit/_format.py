"""Small formatting helpers shared by every rendering of the audit report (Markdown, CSV,
HTML, the terminal): sizes in binary units and the one line on the chain's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from residency_sdk.audit.report import AuditReport


def human_bytes(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def chain_status(report: AuditReport) -> str:
    """One line on the chain: verified (and how) or where it broke."""
    c = report.chain
    if c.broken is not None:
        return (f"BROKEN at event {c.broken.seq} ({c.broken.kind}): {c.broken.message}; "
                f"events 1..{c.verified_through} verify")
    how = ("HMAC-SHA-256 checked" if c.hmac_checked else
           "SHA-256 only, HMAC not checked: no key" if c.keyed else "SHA-256, not keyed")
    return f"verified: {c.events:,} events, head {c.head_hash[:16]}… ({how})"
