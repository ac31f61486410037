"""Canonical JSON of many events that differ in a few fields, made by joining strings.

An audited egress request records two events that share every field but their id, time,
endpoint and sizes. Copying and serialising a whole pydantic event for each costs more
than the request's own bookkeeping once caches are cold (measured in
``benchmarks/bench_egress.py``), so the hot path serialises one event per verdict and
fills the few varying *slots* of its canonical text per request.

The result is byte-for-byte :func:`~residency_sdk.audit.chain.canonical` of the event
with those fields set (``tests/audit/test_event_template.py`` checks it with
generated values). A string value that JSON would escape (a quote, a backslash, a control
or non-ASCII character) is refused with ``None`` from :meth:`EventTemplate.fill`: the
caller then takes the ordinary path, so no escaping rule is re-implemented here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from residency_sdk.audit.chain import canonical
from residency_sdk.events import AuditEvent

_STRING_MARK = "\ue000slot{}\ue000"  # private-use characters: serialised as they are
_INT_BASE = 7_770_000_000_000_000_000
_TIME_BASE = datetime(1, 1, 1, tzinfo=UTC)
_TIME_FIELDS = frozenset({"time"})


class EventTemplate:
    """The canonical JSON of ``event`` with the fields named in ``slots`` left open.

    ``fill(**values)`` gives the canonical JSON of ``event`` with those fields set, or
    None when a string value would need JSON escaping. Slots may be string, integer,
    optional (None) or, for ``time``, aware UTC datetime fields.
    """

    def __init__(self, event: AuditEvent, slots: tuple[str, ...]) -> None:
        self.event = event
        self.slots = slots
        marks: dict[str, Any] = {}
        texts: dict[str, str] = {}
        for i, name in enumerate(slots):
            if name in _TIME_FIELDS:
                value: Any = _TIME_BASE + timedelta(microseconds=i + 1)
                texts[name] = _utc_text(value)
            elif _is_int_field(name):
                value = _INT_BASE + i
                texts[name] = str(value)
            else:
                value = _STRING_MARK.format(i)
                texts[name] = f'"{value}"'
            marks[name] = value
        text = canonical(event.model_copy(update=marks))
        positions = sorted((text.index(texts[name]), name) for name in slots)
        parts: list[str] = []
        order: list[str] = []
        start = 0
        for at, name in positions:
            parts.append(text[start:at])
            order.append(name)
            start = at + len(texts[name])
        parts.append(text[start:])
        # One str.format pattern: the fixed parts, and {i} where slot i (in the order of
        # ``slots``) goes.
        self._pattern = "".join(
            part.replace("{", "{{").replace("}", "}}")
            + (f"{{{slots.index(order[n])}}}" if n < len(order) else "")
            for n, part in enumerate(parts))

    def fill(self, *values: Any) -> str | None:
        """The canonical JSON with the slots set to ``values`` (in the order of
        ``slots``); None when a string needs escaping."""
        texts: list[str] = [""] * len(values)
        for i, value in enumerate(values):
            if value is None:
                texts[i] = "null"
            elif type(value) is int:
                texts[i] = str(value)
            elif type(value) is str:
                if not value.isascii() or not value.isprintable() or '"' in value \
                        or "\\" in value:
                    return None
                texts[i] = f'"{value}"'
            elif isinstance(value, datetime):
                if value.utcoffset() != timedelta(0):
                    return None
                texts[i] = _utc_text(value)
            else:
                raise TypeError(f"slot {self.slots[i]} got {type(value).__name__}")
        return self.join(*texts)

    def join(self, *texts: str) -> str:
        """The canonical JSON with the slots set to ``texts``: each already in its
        canonical form (a JSON string of characters needing no escape, an integer,
        ``null``, or :func:`utc_text` of a time), in the order of ``slots``. For hot
        paths whose values are known safe (ids they made, clock readings, counts): one
        ``str.format``, none of :meth:`fill`'s checks."""
        return self._pattern.format(*texts)


_SECOND: tuple[int, str] = (-1, "")  # the last second utc_text wrote out, and its text


def utc_text(micros: int) -> str:
    """The canonical JSON text (quoted) of a UTC time given as microseconds since the
    epoch: what the canonical form writes for ``datetime.fromtimestamp(micros / 1e6,
    UTC)`` exactly. The date and seconds part is kept for the next call in the same
    second (a commit writes many events of one second)."""
    global _SECOND
    second, micro = divmod(micros, 1_000_000)
    cached = _SECOND
    if cached[0] != second:
        when = datetime.fromtimestamp(second, UTC).replace(tzinfo=None)
        cached = _SECOND = (second, when.isoformat(timespec="seconds"))
    return f'"{cached[1]}.{micro:06d}Z"'


def _utc_text(value: datetime) -> str:
    """A UTC time as the canonical form writes it (always six fractional digits)."""
    return f'"{value.replace(tzinfo=None).isoformat(timespec="microseconds")}Z"'


def _is_int_field(name: str) -> bool:
    annotation = str(AuditEvent.model_fields[name].annotation)
    return "int" in annotation and "str" not in annotation
