"""The map's ``retention:`` settings become the cloud lifecycle rules and the audit lock
exactly (MV-7, MA-7): the period, its rounding to the whole days lifecycle engines count,
and the source each rule cites, on every provider of the plan.

The default map's audit retention (2192 days) equals the SDK's own default, so a plan
that ignored the map's audit setting would pass any test on the default map: these tests
use overlays whose audit retention differs, in days and in hours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from residency_sdk.infra.plan import (
    DEFAULT_AUDIT_LOCK_DAYS,
    ExpiryRule,
    _audit_retention,
    build_plan,
)
from residency_sdk.lifecycle import TAG_KEY
from residency_sdk.regionmap import load_region_map


def _plan(tmp_path: Path, retention: dict[str, Any]) -> Any:
    """The DE plan of the default map with ``retention`` set on location DE."""
    doc = {"extends": "default", "name": "retention-edges",
           "locations": {"DE": {"retention": retention}}}
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    plan = build_plan(load_region_map(path), "DE")
    assert len(plan.providers) >= 2  # every provider below is checked, not an empty loop
    return plan


def _spec(source: str, **period: int) -> dict[str, Any]:
    return {**period, "source": source, "as_of": "2026-12-01"}


def test_the_maps_audit_retention_sets_the_audit_lock_and_expiry_not_the_default(
        tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"audit": _spec("ten years, contract 7", days=3650)})
    for provider in plan.providers:
        audit = provider.audit
        assert audit.lock_days == 3650, provider.provider
        # Expired the day after the lock ends, never before.
        assert audit.expiry == (ExpiryRule(category="audit", days=3651,
                                           period_hours=3650 * 24,
                                           source="ten years, contract 7"),), provider.provider


def test_an_audit_retention_in_hours_locks_for_the_whole_days_it_touches(
        tmp_path: Path) -> None:
    # 3600 days and one hour: the lock covers day 3601 too (rounded up, never down).
    plan = _plan(tmp_path, {"audit": _spec("hours", hours=3600 * 24 + 1)})
    for provider in plan.providers:
        assert provider.audit.lock_days == 3601
        [rule] = provider.audit.expiry
        assert (rule.days, rule.period_hours) == (3602, 3601 * 24)


def test_a_one_hour_audit_retention_is_locked_one_day_and_expired_the_next(
        tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"audit": _spec("one hour", hours=1)})
    for provider in plan.providers:
        assert provider.audit.lock_days == 1
        assert provider.audit.expiry == (ExpiryRule(category="audit", days=2,
                                                    period_hours=24, source="one hour"),)


def test_without_an_audit_retention_the_audit_bucket_is_locked_six_years() -> None:
    assert DEFAULT_AUDIT_LOCK_DAYS == 2192  # 6 years of 365.25 days (HIPAA)
    days, rules = _audit_retention({})
    assert days == 2192
    assert rules == (ExpiryRule(category="audit", days=2193, period_hours=2192 * 24,
                                source="residency-sdk default: 6 years"),)


@pytest.mark.parametrize(("period", "days", "hours"), [
    ({"hours": 36}, 2, 36), ({"hours": 24}, 1, 24), ({"hours": 1}, 1, 1),
    ({"days": 35}, 35, 35 * 24)])
def test_each_data_category_becomes_a_tagged_rule_citing_its_source(
        tmp_path: Path, period: dict[str, int], days: int, hours: int) -> None:
    plan = _plan(tmp_path, {"backup": _spec("backup policy v2", **period)})
    for provider in plan.providers:
        rules = {r.category: r for r in provider.data.expiry}
        assert rules["backup"] == ExpiryRule(category="backup", days=days,
                                             period_hours=hours, source="backup policy v2",
                                             tag=(TAG_KEY, "backup"))
        # The map's other categories keep their own rules and sources.
        assert rules["imaging_upload"].source.startswith("MVision AI privacy notice")
