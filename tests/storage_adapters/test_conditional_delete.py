"""Conditional deletes: ``delete(key, if_match=info)`` removes only the exact write ``info``
describes, on every adapter.

A sweep heads an object, decides, then deletes it; a re-upload of the same key in
between must survive. Each backend's condition is checked where it is enforced: local and
memory compare under their lock, moto enforces S3 ``If-Match`` on DeleteObject, Azurite
enforces ``If-Match`` on Delete Blob. The gcp-storage-emulator ignores
``ifGenerationMatch`` (TEST_INFRA.md): for GCS the tests assert the request the adapter
sent names the examined generation, and that a real service's 412 is translated.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers_storage import MemoryHarness
from storage_harness import PROVIDERS, ProviderHarness

from residency_sdk.errors import ObjectChanged, ResidencyError, StorageError
from residency_sdk.storage.base import ObjectInfo, ObjectStore

pytestmark = pytest.mark.emulator

BACKENDS = (*PROVIDERS, "memory")


@pytest.fixture(params=BACKENDS)
def provider_harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                     tmp_path: Path) -> ProviderHarness | MemoryHarness:
    """The conftest harness (local, aws, gcp, azure) plus ``memory`` (as in the contract
    suite)."""
    if request.param == "memory":
        return MemoryHarness()
    emulators = request.getfixturevalue("emulators")
    return ProviderHarness(request.param, emulators, monkeypatch, tmp_path)


class _Sent:
    """What the adapter put on the wire for its deletes: ``(url, headers)`` per DELETE."""

    def __init__(self) -> None:
        self.deletes: list[tuple[str, dict[str, str]]] = []

    def record(self, method: str, url: str, headers: Any) -> None:
        if method.upper() == "DELETE":
            self.deletes.append((url, {str(k).lower(): (v.decode() if isinstance(v, bytes)
                                                        else str(v))
                                       for k, v in dict(headers).items()}))


@pytest.fixture
def sent() -> _Sent:
    return _Sent()


@pytest.fixture
def store(provider_harness: Any, tmp_path: Path, sent: _Sent) -> Iterator[ObjectStore]:
    """The adapter of DE's backend, with every request it sends recorded in ``sent``."""
    target = provider_harness.target(provider_harness.write_map(tmp_path))
    provider = provider_harness.provider
    if provider == "azure":
        from residency_sdk.storage.azure import AzureStore

        opened: ObjectStore = AzureStore(target, raw_request_hook=lambda r: sent.record(
            r.http_request.method, r.http_request.url, r.http_request.headers))
    else:
        opened = provider_harness.open(target)
    if provider == "aws":
        opened.client.meta.events.register(  # type: ignore[attr-defined]
            "before-send.s3.DeleteObject",
            lambda request, **kw: sent.record(request.method, request.url, request.headers))
    elif provider == "gcp":
        opened.client._http.hooks["response"].append(  # type: ignore[attr-defined]
            lambda response, *a, **kw: sent.record(response.request.method,
                                                   response.request.url,
                                                   response.request.headers))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def key() -> str:
    return f"conditional-{uuid.uuid4().hex[:12]}/study.dcm"


def _provider(store: ObjectStore) -> str:
    return "memory" if type(store).__name__ == "MemoryStore" else store.target.provider


def _enforced(store: ObjectStore) -> bool:
    """Whether the backend itself refuses a stale conditional delete here."""
    return _provider(store) != "gcp"  # gcp-storage-emulator ignores ifGenerationMatch


def _assert_condition_sent(store: ObjectStore, sent: _Sent, examined: ObjectInfo) -> None:
    """The last DELETE the adapter sent was conditional on exactly ``examined``."""
    provider = _provider(store)
    if provider in ("local", "memory"):
        return  # nothing is sent: the comparison happens under the store's lock
    assert sent.deletes, "no DELETE request was sent"
    url, headers = sent.deletes[-1]
    if provider == "aws":
        assert examined.etag
        assert headers.get("if-match") == f'"{examined.etag}"'
        # The current object is the one examined: never a specific older version.
        assert "versionId" not in parse_qs(urlsplit(url).query)
    elif provider == "gcp":
        assert examined.version
        assert parse_qs(urlsplit(url).query).get("ifGenerationMatch") == [examined.version]
    elif provider == "azure":
        assert examined.etag
        assert headers.get("if-match") == f'"{examined.etag}"'


def test_head_and_list_identify_the_exact_write(store: ObjectStore, key: str) -> None:
    """Every write gets an identifier of its own, reported by head and list alike (what a
    conditional delete is conditional on)."""
    first = store.put(key, b"first upload")
    head1 = store.head(key)
    store.put(key, b"second upload, other bytes")
    head2 = store.head(key)
    (listed,) = [i for i in store.list(key.rsplit("/", 1)[0] + "/") if i.key == key]
    assert head1.etag and head2.etag
    assert (head1.etag, head1.version) != (head2.etag, head2.version)
    assert (listed.etag, listed.version) == (head2.etag, head2.version)
    assert first.etag == head1.etag
    if _provider(store) == "gcp":
        # The generation is what GCS deletes are conditional on.
        assert head1.version and head2.version and head1.version != head2.version


def test_delete_if_match_the_current_write_deletes_it(store: ObjectStore, key: str,
                                                      sent: _Sent) -> None:
    store.put(key, b"examined")
    examined = store.head(key)
    assert store.delete(key, if_match=examined) is True
    assert not store.exists(key)
    _assert_condition_sent(store, sent, examined)


def test_delete_if_match_a_listed_write_deletes_it(store: ObjectStore, key: str,
                                                   sent: _Sent) -> None:
    store.put(key, b"listed")
    (listed,) = [i for i in store.list(key.rsplit("/", 1)[0] + "/") if i.key == key]
    assert store.delete(key, if_match=listed) is True
    assert not store.exists(key)
    _assert_condition_sent(store, sent, listed)


def test_stale_delete_never_removes_a_reupload(store: ObjectStore, key: str,
                                               sent: _Sent) -> None:
    """Examined, re-uploaded, then deleted with the examined info: the fresh object
    survives and :class:`ObjectChanged` names the key and both versions."""
    store.put(key, b"old study")
    examined = store.head(key)
    store.put(key, b"fresh study, uploaded again")
    fresh = store.head(key)
    if not _enforced(store):
        # The emulator deletes anyway; what a real GCS would refuse is the request sent.
        store.delete(key, if_match=examined)
        _assert_condition_sent(store, sent, examined)
        assert fresh.version != examined.version
        return
    with pytest.raises(ObjectChanged) as caught:
        store.delete(key, if_match=examined)
    assert store.get(key) == b"fresh study, uploaded again"
    assert store.head(key).etag == fresh.etag
    assert caught.value.key == key
    assert caught.value.expected in (examined.etag, examined.version)
    assert caught.value.found in (fresh.etag, fresh.version)  # what the key holds now
    assert key in str(caught.value) and "examine it again" in str(caught.value)
    _assert_condition_sent(store, sent, examined)
    # The fresh write itself can still be deleted conditionally.
    assert store.delete(key, if_match=fresh) is True
    assert not store.exists(key)


def test_conditional_delete_of_a_missing_object_returns_false(store: ObjectStore,
                                                              key: str) -> None:
    store.put(key, b"x")
    examined = store.head(key)
    assert store.delete(key) is True
    assert store.delete(key, if_match=examined) is False


def test_if_match_without_an_identifier_is_refused(store: ObjectStore, key: str) -> None:
    """An ``if_match`` that identifies no write (no etag, no version) cannot make a delete
    conditional: refused with the fix, and nothing is deleted."""
    store.put(key, b"keep me")
    with pytest.raises(StorageError) as caught:
        store.delete(key, if_match=ObjectInfo(key=key, size=7))
    assert not isinstance(caught.value, ObjectChanged)
    assert key in str(caught.value) and "head" in str(caught.value)
    if _provider(store) == "gcp":
        # GCS conditions on the generation: an etag alone, or a version that is no
        # generation number, identifies nothing it can send.
        for info in (ObjectInfo(key=key, size=7, etag=store.head(key).etag),
                     ObjectInfo(key=key, size=7, version="v1")):
            with pytest.raises(StorageError, match="nothing was deleted"):
                store.delete(key, if_match=info)
    assert store.get(key) == b"keep me"


def test_if_match_for_another_key_is_refused(store: ObjectStore, key: str) -> None:
    store.put(key, b"keep me")
    other = store.put(key + ".other", b"other")
    with pytest.raises(ResidencyError) as caught:
        store.delete(key, if_match=other)
    assert key in str(caught.value)
    assert store.get(key) == b"keep me"


@pytest.mark.parametrize(("provider", "status"), [("aws", 412), ("aws", 409), ("gcp", 412),
                                                  ("azure", 412)])
def test_a_refused_condition_from_the_service_is_object_changed(
        provider: str, status: int, emulators: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """What a real service answers to a stale condition (GCS's 412 cannot come from its
    emulator, S3's 409 from moto): a server on loopback answers every request with it.
    The delete raises ObjectChanged, is not retried, and the condition was sent."""
    from emulators import FaultServer

    from residency_sdk.storage.retry import RetryPolicy

    harness = ProviderHarness(provider, emulators, monkeypatch, tmp_path)
    target = harness.target(harness.write_map(tmp_path))
    key = f"conditional-{uuid.uuid4().hex[:12]}/study.dcm"
    examined = ObjectInfo(key=key, size=3, etag="0x8DEADBEEF", version="1712345678901234")
    with FaultServer(status).running() as fault:
        suffix = "/devstoreaccount1" if provider == "azure" else ""
        store = harness.open(target.model_copy(update={
            "endpoint": f"{fault.endpoint}{suffix}"}), verify_on_open=False)
        store.policy = RetryPolicy(max_attempts=3, max_elapsed=20, initial_backoff=0.01,
                                   max_backoff=0.05)
        with pytest.raises(ObjectChanged) as caught:
            store.delete(key, if_match=examined)
        store.close()
    deletes = [p for p in fault.paths if p.startswith("DELETE")]
    assert len(deletes) == 1, fault.paths  # a refused condition is never retried
    assert caught.value.key == key and caught.value.found is None
    if provider == "gcp":
        assert parse_qs(urlsplit(deletes[0].split(" ", 1)[1]).query)[
            "ifGenerationMatch"] == [examined.version]
        assert caught.value.expected == examined.version
    else:
        assert caught.value.expected == examined.etag
