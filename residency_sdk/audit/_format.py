"""Small formatting helpers shared by every rendering of the audit report (Markdown, CSV,
HTML, the terminal): sizes in binary units, the one line on the chain's state, and what
an unaudited period recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    """One line on the chain: verified (and how), UNVERIFIED (a keyed log read without its
    key), or where it broke."""
    state, c = report.chain_state, report.chain
    if state.status == "broken":
        where = (f" at event {c.broken.seq}" if c.broken is not None and c.broken.seq > 0
                 else "")
        line = (f"BROKEN{where} ({state.kind}): {state.message}; "
                f"events 1..{c.verified_through} verify")
        if state.outside_chain_rows and state.kind != "outside_chain":
            line += f"; {state.outside_chain_rows} row(s) stored outside the chain"
        return line
    if state.status == "unverified":
        return f"UNVERIFIED: {state.message}"
    return f"{state.status}: {state.message}"


def chain_mark(report: AuditReport) -> str:
    """✅ verified, ⚠️ unverified, ❌ broken."""
    return {"verified": "✅", "unverified": "⚠️"}.get(report.chain_state.status, "❌")


def recorded(period: dict[str, Any]) -> str:
    """What an ``audit_off`` event recorded about the process (purpose, reasons such as
    its pid and host, error), as one line."""
    purpose = period.get("purpose")
    parts = [None if purpose == "audit_off" else purpose, *period.get("reasons", []),
             period.get("error")]
    return "; ".join(str(p) for p in parts if p) or "(nothing recorded)"


_MD_SPECIAL = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\\": "\\\\", "`": "\\`",
    "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "#": "\\#", "~": "\\~",
    "\n": " ", "\r": " "})


def md_text(value: object) -> str:
    """``value`` as Markdown text that renders as written: HTML (``<script>``) becomes
    entities, emphasis, links, code and table pipes are backslash-escaped, newlines
    become spaces (one table row stays one row)."""
    return str(value).translate(_MD_SPECIAL)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: object) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text: a leading ``=``, ``+``,
    ``-``, ``@``, tab or carriage return (a formula to Excel or LibreOffice) is prefixed
    with an apostrophe (OWASP's CSV-injection advice); newlines become spaces."""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return "'" + text if text.startswith(_FORMULA_START) else text
