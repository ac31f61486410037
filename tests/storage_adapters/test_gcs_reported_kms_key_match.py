"""The GCS adapter accepts a write only under the location's own key (or a version of it).

GCS reports the key that encrypted an object as ``.../cryptoKeys/NAME/cryptoKeyVersions/N``.
Accepting every name that merely *starts with* the location key's name would accept
another key whose name extends it (``.../cryptoKeys/data-old``): data encrypted under a
key the location does not manage. These tests go through the gcp-storage-emulator and a
proxy that rewrites its answer (the ``_gcs_report`` technique of
``test_encryption_proofs.py``): the write must fail with the exact message, and the object
must be gone (checked with the emulator's own client).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emulators import RewritingProxy
from storage_harness import ProviderHarness

from residency_sdk.errors import EncryptionError

pytestmark = pytest.mark.emulator


@pytest.fixture
def harness(request: pytest.FixtureRequest, emulators: Any, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> ProviderHarness:
    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for store in opened:
        store.close()


def _key() -> str:
    # Long: the rewritten answer needs room for a full key name.
    return f"kms-match-{uuid.uuid4().hex[:10]}/" + "k" * 90


def _reported(target: Any, key: str, value: str) -> dict[bytes, bytes]:
    """The object's ``selfLink`` in the emulator's answer becomes a ``kmsKeyName`` (padded
    with JSON whitespace to the same length): GCS reporting ``value``."""
    original = f'"selfLink": "/storage/v1/b/{target.bucket}/o/{key}"'
    forged = f'"kmsKeyName": "{value}"'
    assert len(forged) <= len(original)
    return {original.encode(): forged.ljust(len(original)).encode()}


def _put_reporting(harness: ProviderHarness, tmp_path: Path, closing: list[Any],
                   reported: str | None = None, *, suffix: str = "") -> tuple[Any, str, Any]:
    """``put`` through a proxy where GCS reports ``target.kms_key + suffix`` (or
    ``reported``); returns the target, the key and the put's result or its exception."""
    target = harness.target(harness.write_map(tmp_path))
    key = _key()
    value = reported if reported is not None else target.kms_key + suffix
    port = harness.emulators.get("gcp").port
    with RewritingProxy(port, _reported(target, key, value)) as proxy:
        store = harness.open(target.model_copy(
            update={"endpoint": f"http://127.0.0.1:{proxy.port}"}))
        closing.append(store)
        try:
            outcome: Any = store.put(key, b"phi")
        except EncryptionError as exc:
            outcome = exc
        assert proxy.hits >= 1  # the answer really named ``value``
    return target, key, outcome


def _exists(harness: ProviderHarness, target: Any, key: str) -> bool:
    return bool(harness.gcs_client().bucket(target.bucket).blob(key).exists())


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
@pytest.mark.parametrize("suffix", ["-old/cryptoKeyVersions/1", "-old", "2",
                                    "_backup/cryptoKeyVersions/7"],
                         ids=["dash-version", "dash", "digit", "underscore-version"])
def test_gcs_put_refuses_another_key_whose_name_starts_with_the_location_key(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any], suffix: str) -> None:
    target, key, outcome = _put_reporting(harness, tmp_path, closing, suffix=suffix)
    reported = target.kms_key + suffix
    assert isinstance(outcome, EncryptionError), (
        f"a write GCS reports under {reported!r} was accepted for key {target.kms_key!r}")
    assert str(outcome).endswith(
        f"{key!r} was stored with KMS key {reported!r}, not {target.kms_key!r}; the object "
        "was deleted - check the bucket's CMEK configuration")
    assert not _exists(harness, target, key)


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
def test_gcs_put_refusing_another_key_names_both_keys_and_the_fix_exactly(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any]) -> None:
    other = "projects/residency-fr/locations/europe-west9/keyRings/residency/cryptoKeys/data"
    target, key, outcome = _put_reporting(harness, tmp_path, closing, reported=other)
    assert isinstance(outcome, EncryptionError)
    assert str(outcome).endswith(
        f": {key!r} was stored with KMS key {other!r}, not {target.kms_key!r}; the object "
        "was deleted - check the bucket's CMEK configuration")
    assert not _exists(harness, target, key)


@pytest.mark.parametrize("harness", ["gcp"], indirect=True)
@pytest.mark.parametrize("suffix", ["", "/cryptoKeyVersions/1", "/cryptoKeyVersions/12"],
                         ids=["key", "version-1", "version-12"])
def test_gcs_put_accepts_the_location_key_and_its_versions(
        harness: ProviderHarness, tmp_path: Path, closing: list[Any], suffix: str) -> None:
    target, key, outcome = _put_reporting(harness, tmp_path, closing, suffix=suffix)
    assert not isinstance(outcome, BaseException), outcome
    assert (outcome.encryption, outcome.kms_key) == ("gcs:kms", target.kms_key + suffix)
    assert _exists(harness, target, key)
