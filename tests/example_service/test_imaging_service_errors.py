"""The example service answers by error kind (examples/imaging_service/errors.py): 451
with the reasons for residency refusals, 503 with Retry-After when storage is down, 4xx for
bad input, and never a traceback. Over HTTP against the real service (uvicorn in a
subprocess), then the whole table against every error class residency-sdk defines."""

from __future__ import annotations

import inspect
import socket
import sys
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
from fastapi import FastAPI
from imaging_stack import REPO, Stack, running_stack

import residency_sdk as rs
import residency_sdk.errors as rse

LIMIT = 1024 * 1024  # the service's study size limit in this module
RETRY_AFTER = "7"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"IMAGING_MAX_STUDY_BYTES": str(LIMIT), "IMAGING_RETRY_AFTER": RETRY_AFTER}
    with running_stack(tmp_path_factory.mktemp("imaging-errors"), env) as running:
        yield running


def _study(n: int = 4096) -> bytes:
    return b"DICM" + bytes(range(256)) * (n // 256)


def _no_traceback(response: httpx.Response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


# --- over HTTP -------------------------------------------------------------------------


def test_a_country_the_map_does_not_route_is_451_before_the_body_is_read(
        stack: Stack) -> None:
    with stack.client("clinic-saopaulo") as http:
        response = http.post("/studies", content=_study())
    assert response.status_code == 451, response.text
    detail = response.json()["detail"]
    assert (detail["error"], detail["kind"], detail["country"]) == ("no_route", "NoRoute", "BR")
    assert detail["reasons"] and "no residency route for country 'BR'" in detail["reasons"][0]
    assert detail["unblock_with"] == []
    assert not list(stack.local_root.rglob("clinic-saopaulo"))


def test_a_blocked_transfer_is_451_with_the_decision(stack: Stack) -> None:
    with stack.client("clinic-istanbul") as http:
        study = http.post("/studies", content=_study()).json()["study_id"]
        response = http.post(f"/studies/{study}/transfer", json={"to": "US"})
    assert response.status_code == 451, response.text
    detail = response.json()["detail"]
    assert (detail["error"], detail["study_id"], detail["from"], detail["to"]) == (
        "transfer_blocked", study, "DE", "US")
    assert any("KVKK" in reason for reason in detail["reasons"]), detail["reasons"]
    assert detail["unblock_with"] and all(detail["unblock_with"])


def test_storage_down_is_503_with_retry_after_and_nothing_leaks(stack: Stack) -> None:
    location = stack.local_root / "DE"
    with stack.client("clinic-berlin") as http:
        assert http.post("/studies", content=_study()).status_code == 201
        # The DE data volume goes away (its mount point is now a plain file).
        aside = location.with_name("DE.unmounted")
        location.rename(aside)
        location.write_bytes(b"")
        try:
            response = http.post("/studies", content=_study())
        finally:
            location.unlink()
            aside.rename(location)
        again = http.post("/studies", content=_study())
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == RETRY_AFTER
    detail = response.json()["detail"]
    assert (detail["error"], detail["kind"]) == ("backend_unavailable", "BackendUnavailable")
    assert "retry" in detail["message"]
    assert str(stack.local_root) not in response.text  # paths stay in the service log
    _no_traceback(response)
    assert again.status_code == 201, again.text  # back once the volume is back
    assert "BackendUnavailable" in stack.service.log.read_text(errors="replace")


def test_bad_input_is_400_and_names_the_value(stack: Stack) -> None:
    with stack.client("clinic-berlin") as http:
        study = http.post("/studies", content=_study()).json()["study_id"]
        to_atlantis = http.post(f"/studies/{study}/transfer", json={"to": "Atlantis"})
        bad_class = http.post(f"/studies/{study}/transfer",
                              json={"to": "US", "data_class": "gossip"})
        empty = http.post("/studies", content=b"")
        no_file = http.post("/studies", files={"other": ("x.txt", b"abc")})
        bad_multipart = http.post("/studies", content=b"--nope\r\n\r\n",
                                  headers={"content-type": "multipart/form-data"})
    assert (to_atlantis.status_code, to_atlantis.json()["detail"]["error"]) == (
        400, "unknown_location")
    assert "'Atlantis'" in to_atlantis.json()["detail"]["message"]
    assert (bad_class.status_code, bad_class.json()["detail"]["kind"]) == (
        400, "UnknownDataClass")
    assert "'gossip'" in bad_class.json()["detail"]["message"]
    assert (empty.status_code, empty.json()["detail"]["error"]) == (400, "empty_study")
    assert (no_file.status_code, no_file.json()["detail"]["error"]) == (400, "no_file")
    assert (bad_multipart.status_code, bad_multipart.json()["detail"]["error"]) == (
        400, "bad_multipart")


def test_a_request_not_matching_the_api_is_422(stack: Stack) -> None:
    with stack.client("clinic-berlin") as http:
        study = http.post("/studies", content=_study()).json()["study_id"]
        response = http.post(f"/studies/{study}/transfer", json={"destination": "US"})
        not_json = http.post(f"/studies/{study}/transfer", content=b"{",
                             headers={"content-type": "application/json"})
    for answer in (response, not_json):
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"]["error"] == "invalid_request"
        assert answer.json()["detail"]["problems"]
    assert response.json()["detail"]["problems"][0]["loc"] == ["body", "to"]


def test_not_found_is_404(stack: Stack) -> None:
    with stack.client("clinic-berlin") as http:
        missing = "0" * 32
        for response in (http.get(f"/studies/{missing}"),
                         http.get(f"/studies/{missing}/original"),
                         http.get("/studies/not-a-study/original")):
            assert response.status_code == 404, response.text
            _no_traceback(response)
        assert http.get(f"/studies/{missing}").json()["detail"]["kind"] == "ObjectNotFound"


def test_a_study_over_the_limit_is_413_and_nothing_is_kept(stack: Stack) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is met mid-stream
        for _ in range(4):
            yield b"\x00" * (LIMIT // 2)

    res = stack.residency()
    store = res.storage_for(rs.Tenant(id="clinic-vienna", country="AT"))
    before = {o.key for o in store.list("studies/")}
    with stack.client("clinic-vienna") as http:
        assert http.post("/studies", content=_study()).status_code == 201  # within limit
        streamed = http.post("/studies", content=chunks())
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["detail"]["error"] == "study_too_large"
    after = {o.key for o in store.list("studies/")}
    assert len(after - before) == 2  # the small study and its result, nothing else
    # Audited: the study's put and its result's, then the refused one.
    puts = [(e.outcome, (e.object_key or "").split("/")[-1])
            for e in stack.events("clinic-vienna", "put", until=3, key_prefix="studies/")]
    assert puts == [("ok", "original.dcm"), ("ok", "result.json"),
                    ("error", "original.dcm")], puts
    res.close()


def test_a_declared_length_over_the_limit_is_413_before_reading(stack: Stack) -> None:
    host, port = stack.service.url.removeprefix("http://").split(":")
    # Headers only: the service answers from Content-Length without waiting for a body.
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST /studies HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: clinic-berlin\r\n"
                     b"Connection: close\r\n"
                     b"Content-Length: " + str(LIMIT + 1).encode() + b"\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):  # until the service closes the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"study_too_large" in answer


def test_a_client_hanging_up_mid_upload_stores_nothing_and_is_no_error(
        stack: Stack) -> None:
    host, port = stack.service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST /studies HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: clinic-sydney\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n" % (64 * 1024) + b"\x00" * (64 * 1024) + b"\r\n")
        time.sleep(0.5)  # the upload has started (the first bytes are in the store's pipe)
    [put] = stack.events("clinic-sydney", "put", key_prefix="studies/")
    assert put.outcome == "error"
    res = stack.residency()
    assert not list(res.storage_for(rs.Tenant(id="clinic-sydney", country="AU")).list(""))
    res.close()
    assert "Traceback" not in stack.service.log.read_text(errors="replace")


# --- the table, for every error class the SDK defines ----------------------------------

REFUSALS = (rs.TransferBlocked, rs.EgressBlocked, rs.BAARequired, rs.NotAnonymised,
            rs.NoRoute)
UNAVAILABLE = (rs.BackendUnavailable, rs.AuditUnavailable)
OPERATOR_INPUT = (rs.BackendNotConfigured, rs.MapError, rse.ConfigError, rs.AuditKeyError,
                  rs.AuditFormatError, rs.InsecureEndpoint, rs.InfraError,
                  rs.UnknownRetentionCategory)
SECRET = "/srv/secret/DE/residency-de-local-data"
SDK_ERRORS = sorted((cls for _, cls in inspect.getmembers(rse, inspect.isclass)
                     if issubclass(cls, rs.ResidencyError)), key=lambda c: c.__name__)


def _instance(cls: type[rs.ResidencyError]) -> rs.ResidencyError:
    """An instance of ``cls`` whatever its constructor, with the attributes the
    service's answer may read."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, f"{cls.__name__} at {SECRET}")
    for name, value in {"decision": None, "reasons": (f"{cls.__name__} refused",),
                        "url": "http://x.test/", "host": "x.test", "found": (),
                        "problems": (), "country": "BR"}.items():
        setattr(exc, name, value)
    return exc


class TableClient:
    """Raises a given exception inside a FastAPI app with the service's error handlers
    and returns the answer (in process, through httpx's ASGI transport)."""

    def __init__(self) -> None:
        sys.path.insert(0, str(REPO / "examples"))
        from imaging_service.errors import install_error_handlers

        self.app = FastAPI()
        install_error_handlers(self.app, retry_after=5)
        self._raised: list[BaseException] = []

        @self.app.get("/raise")
        async def boom() -> None:
            raise self._raised[-1]

    def answer(self, exc: BaseException) -> httpx.Response:
        self._raised.append(exc)

        async def call() -> httpx.Response:
            # raise_app_exceptions=False: Starlette re-raises an unhandled error after
            # answering it (for the server's log); the answer is what a client sees.
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                return await http.get("/raise")

        return anyio.run(call)


@pytest.fixture(scope="module")
def table_client() -> TableClient:
    return TableClient()


@pytest.mark.parametrize("cls", SDK_ERRORS, ids=lambda c: c.__name__)
def test_every_sdk_error_gets_the_status_of_its_kind(table_client: TableClient,
                                                     cls: type[rs.ResidencyError]) -> None:
    response = table_client.answer(_instance(cls))
    detail = response.json()["detail"]
    status = response.status_code
    if issubclass(cls, REFUSALS):
        assert status == 451
        assert detail["reasons"] and isinstance(detail["unblock_with"], list)
    elif issubclass(cls, UNAVAILABLE):
        assert status == 503 and response.headers["retry-after"] == "5"
    elif issubclass(cls, rs.ObjectNotFound):
        assert status == 404
    elif issubclass(cls, rs.UnknownLocation):
        assert status == 400  # a transfer's destination: the caller's input
    elif issubclass(cls, OPERATOR_INPUT):
        assert status == 500  # the operator's map or settings, not the caller's input
    elif issubclass(cls, rs.InputError):
        assert status == 400
    else:
        assert status in (409, 410, 500)
    assert detail["kind"] == cls.__name__
    if status >= 500 or status in (404, 410):  # messages naming paths, buckets or keys
        assert SECRET not in response.text
    else:
        assert SECRET in detail["message"]  # 4xx and 451 messages name the fix
    _no_traceback(response)


def test_a_bug_is_a_500_without_a_traceback(table_client: TableClient) -> None:
    response = table_client.answer(KeyError(SECRET))
    assert response.status_code == 500
    assert response.json()["detail"]["error"] == "internal_error"
    assert SECRET not in response.text
    _no_traceback(response)


def test_a_task_groups_single_failure_is_answered_as_itself(
        table_client: TableClient) -> None:
    group = ExceptionGroup("put", [_instance(rs.BackendUnavailable)])
    response = table_client.answer(group)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
