"""EventTemplate fills the canonical JSON of an event's varying fields by joining
strings: it must give exactly what ``canonical`` gives for the same event, or refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from residency_sdk.audit.chain import canonical
from residency_sdk.audit.template import EventTemplate
from residency_sdk.events import AuditEvent

BASE = AuditEvent(operation="egress", outcome="ok", actor='ops "night" \\ shift',
                  purpose="inference", tenant_id="clinic-ü", tenant_country="AT",
                  data_class="phi", source_location="DE", destination_country="DE",
                  reasons=("compute endpoint of DE",), agreements=("scc[SCC-1]",))
SLOTS = ("event_id", "time", "endpoint", "size", "intent_id", "status", "bytes_received")
TEMPLATE = EventTemplate(BASE, SLOTS)

texts = st.text(max_size=40)
ints = st.none() | st.integers(min_value=0, max_value=2**62)
times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC))


@given(event_id=texts, time=times, endpoint=st.none() | texts, size=ints,
       intent_id=st.none() | texts, status=ints, received=ints)
def test_fill_is_canonical_or_refuses(event_id, time, endpoint, size, intent_id, status,
                                      received):
    values = (event_id, time, endpoint, size, intent_id, status, received)
    text = TEMPLATE.fill(*values)
    expected = canonical(BASE.model_copy(update=dict(zip(SLOTS, values, strict=True))))
    if text is None:
        # Refused only for what JSON would escape.
        assert any(isinstance(v, str) and (not v.isascii() or not v.isprintable()
                                           or '"' in v or "\\" in v) for v in values)
    else:
        assert text == expected
        assert AuditEvent.model_validate_json(text) == AuditEvent.model_validate_json(
            expected)


def test_time_without_fraction_keeps_six_digits():
    when = datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC)
    text = TEMPLATE.fill("a" * 32, when, "https://x.example/p", 1, None, 200, 2)
    assert text is not None and '"time":"2026-12-03T09:00:00.000000Z"' in text


@pytest.mark.parametrize("value", ['a"b', "a\\b", "tab\there", "ü", "\x00"])
def test_strings_json_would_escape_are_refused(value):
    assert TEMPLATE.fill(value, datetime.now(UTC), None, None, None, None, None) is None


def test_a_time_not_in_utc_is_refused():
    plus_one = timezone(timedelta(hours=1))
    assert TEMPLATE.fill("id", datetime.now(plus_one), None, None, None, None,
                         None) is None


def test_a_value_of_another_type_is_an_error():
    with pytest.raises(TypeError, match="slot size"):
        TEMPLATE.fill("id", datetime.now(UTC), None, 1.5, None, None, None)


safe_ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)


@given(event_id=safe_ids, micros=st.integers(min_value=0, max_value=4_102_444_800_000_000),
       size=ints, intent_id=safe_ids, status=ints, received=ints)
def test_join_of_canonical_texts_is_what_fill_gives(event_id, micros, size, intent_id,
                                                    status, received):
    """The hot path's ``join`` (texts the caller knows are canonical: ids it made, clock
    readings, counts) gives exactly what ``fill`` and ``canonical`` give."""
    from residency_sdk.audit.template import utc_text

    second, micro = divmod(micros, 1_000_000)
    when = datetime.fromtimestamp(second, UTC).replace(microsecond=micro)
    endpoint = "https://x.example/p"

    def num(value: int | None) -> str:
        return "null" if value is None else str(value)

    text = TEMPLATE.join(f'"{event_id}"', utc_text(micros), f'"{endpoint}"', num(size),
                         f'"{intent_id}"', num(status), num(received))
    values = (event_id, when, endpoint, size, intent_id, status, received)
    assert text == TEMPLATE.fill(*values)
    assert text == canonical(BASE.model_copy(update=dict(zip(SLOTS, values, strict=True))))


def test_utc_text_across_a_second_boundary_and_back():
    """The cached date-and-seconds part is never reused for another second."""
    from residency_sdk.audit.template import utc_text

    a, b = 1_764_720_000_999_999, 1_764_720_001_000_000
    assert utc_text(a) == '"2025-12-03T00:00:00.999999Z"'
    assert utc_text(b) == '"2025-12-03T00:00:01.000000Z"'
    assert utc_text(a) == '"2025-12-03T00:00:00.999999Z"'
