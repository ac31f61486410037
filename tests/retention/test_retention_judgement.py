"""The retention sweep's judgement of one object, verdict by verdict (promises MV-3, MV-6).

``RetentionSweep._judge`` decides from the object's own marks (category, creation time)
and the map's retention periods whether it goes; every verdict is compared whole, so a
changed period, boundary, fallback or message fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import residency_sdk as rs
from residency_sdk.marks import CATEGORY_META, CREATED_META
from residency_sdk.retention import RetentionSweep
from residency_sdk.storage.base import ObjectInfo
from residency_sdk.sweep import Verdict

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(hours=30)


@pytest.fixture
def sweep(tmp_path: Path) -> RetentionSweep:
    res = rs.Residency.load(audit=False, local_root=tmp_path / "data")
    return res.retention_sweep("DE", providers=["local"])


def _info(metadata: dict[str, str], last_modified: datetime | None = None) -> ObjectInfo:
    return ObjectInfo(key="tenants/t/uploads/ct.dcm", size=5, metadata=metadata,
                      last_modified=last_modified)


def test_an_object_without_a_category_is_kept_as_unclassified(sweep: RetentionSweep) -> None:
    info = _info({CREATED_META: CREATED.isoformat()})
    assert sweep._judge(info, info, NOW) == Verdict(False, "unclassified")


def test_a_category_the_map_has_no_period_for_is_kept_and_named(sweep: RetentionSweep) -> None:
    info = _info({CATEGORY_META: "holiday_photos", CREATED_META: CREATED.isoformat()})
    assert sweep._judge(info, info, NOW) == Verdict(
        False, "unknown_category",
        "category 'holiday_photos' has no retention period in map 'default' for location "
        "DE; kept", "holiday_photos")


def test_an_object_without_any_creation_time_is_kept_as_an_error(sweep: RetentionSweep) -> None:
    info = _info({CATEGORY_META: "imaging_upload"})
    assert sweep._judge(info, info, NOW) == Verdict(
        False, "error", "no creation time (neither metadata nor last-modified); kept",
        "imaging_upload")


def test_an_expired_upload_is_deleted_naming_its_period_and_times(sweep: RetentionSweep) -> None:
    info = _info({CATEGORY_META: "imaging_upload", CREATED_META: CREATED.isoformat()})
    expires = CREATED + timedelta(hours=24)
    assert sweep._judge(info, info, NOW) == Verdict(
        True, "delete",
        f"category 'imaging_upload' retention 24h expired at {expires.isoformat()} "
        f"(created {CREATED.isoformat()})", "imaging_upload")


def test_an_upload_is_deleted_at_the_exact_end_of_its_period_not_a_moment_later(
        sweep: RetentionSweep) -> None:
    created = NOW - timedelta(hours=24)
    info = _info({CATEGORY_META: "imaging_upload", CREATED_META: created.isoformat()})
    assert sweep._judge(info, info, NOW).delete is True
    assert sweep._judge(info, info, NOW - timedelta(seconds=1)) == Verdict(
        False, "kept", category="imaging_upload")


def test_the_creation_mark_wins_over_the_backends_last_modified(sweep: RetentionSweep) -> None:
    # Copied yesterday (fresh last-modified) but created 30 hours ago: it is expired.
    info = _info({CATEGORY_META: "imaging_upload", CREATED_META: CREATED.isoformat()},
                 last_modified=NOW - timedelta(hours=1))
    assert sweep._judge(info, info, NOW).delete is True


def test_without_a_creation_mark_the_last_modified_time_counts(sweep: RetentionSweep) -> None:
    fresh = _info({CATEGORY_META: "imaging_upload"}, last_modified=NOW - timedelta(hours=1))
    old = _info({CATEGORY_META: "imaging_upload"}, last_modified=CREATED)
    assert sweep._judge(fresh, fresh, NOW) == Verdict(False, "kept", category="imaging_upload")
    assert sweep._judge(old, old, NOW).delete is True
    # HEAD may report no time where the listing did: the listing's time is used then.
    headed = _info({CATEGORY_META: "imaging_upload"})
    assert sweep._judge(headed, old, NOW).delete is True
    assert sweep._judge(headed, fresh, NOW).delete is False


def test_a_period_in_days_is_named_in_days(sweep: RetentionSweep) -> None:
    created = NOW - timedelta(days=2200)
    info = _info({CATEGORY_META: "audit", CREATED_META: created.isoformat()})
    verdict = sweep._judge(info, info, NOW)
    assert verdict.delete and verdict.detail is not None
    assert "retention 2192d expired" in verdict.detail
