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
