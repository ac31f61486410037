"""The one retry policy every cloud adapter uses (tenacity).

Transient failures (throttling such as 429 or S3 ``SlowDown``/503, other 5xx, timeouts and
connection resets or refusals) are retried with exponential backoff and full jitter,
bounded both in attempts and in total elapsed time. Client errors (4xx other than 408/429)
are never retried: they will not get better by asking again. When the budget is spent the
adapter raises :class:`~residency_sdk.errors.BackendUnavailable` naming the backend, which
is what lets the guarded facade fail over inside the location.

Each cloud SDK ships its own retry layer. Left on, it would multiply with this one
(5 x 5 = 25 attempts and minutes of hidden waiting), so every adapter switches it off:
botocore ``Config(retries={"total_max_attempts": 1, "mode": "standard"})`` (botocore's
``max_attempts`` counts retries, so 1 there would still mean two tries; s3transfer's
download attempts are set to 1 too), google-cloud-storage ``retry=None`` on every call, azure-core
``retry_total=0``. This module is then the only place where waiting happens.

Each retry is logged at WARNING on ``residency_sdk.storage.retry``: the backend, the
operation, the exception's type (never its message, which may carry a URL with a SAS
token or an object key), the attempt and the wait.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from residency_sdk.errors import BackendUnavailable, ReadInterrupted, ResidencyError
from residency_sdk.observability import logger

_log = logger(__name__)

T = TypeVar("T")

#: HTTP statuses worth retrying: request timeout, throttling and server-side failures.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

Classifier = Callable[[BaseException], bool]


def is_transient_status(status: int | None) -> bool:
    """True for HTTP statuses a retry may cure (408, 429, 5xx)."""
    return status is not None and (status in TRANSIENT_STATUSES or 500 <= status <= 599)


def is_transient_os_error(exc: BaseException) -> bool:
    """True for timeouts, resets and refused connections raised by the standard library."""
    return isinstance(exc, (TimeoutError, ConnectionError, socket.timeout))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds of the retry loop.

    ``max_attempts`` counts the first try; ``max_elapsed`` (seconds) stops retrying once
    that much time has passed since the first try; waits are random in
    ``[0, min(max_backoff, initial_backoff * 2**n)]`` (exponential backoff, full jitter).
    """

    max_attempts: int = 5
    max_elapsed: float = 30.0
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def call(self, fn: Callable[[], T], *, backend: str, operation: str,
             transient: Classifier, before_retry: Callable[[], None] | None = None,
             translate: Callable[[BaseException], ResidencyError] | None = None) -> T:
        """Run ``fn``, retrying transient failures; raise BackendUnavailable when exhausted.

        ``transient`` decides whether an exception is worth another attempt; anything else
        propagates at once, through ``translate`` when given (the adapter's mapping of SDK
        errors onto the residency error hierarchy), so no SDK exception escapes.
        ``before_retry`` runs before each new attempt (e.g. rewinding an upload stream).
        """
        if self.max_attempts < 1:
            raise ResidencyError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if translate is not None:
            fn = _translating(fn, transient, translate)

        def _before_sleep(state: RetryCallState) -> None:
            _log_retry(state, backend, operation, self.max_attempts)
            if before_retry is not None:
                before_retry()

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_elapsed),
            wait=wait_random_exponential(multiplier=self.initial_backoff, max=self.max_backoff),
            retry=retry_if_exception(lambda exc: not isinstance(exc, ResidencyError)
                                     and transient(exc)),
            before_sleep=_before_sleep,
            reraise=False,
        )
        try:
            return retrying(fn)
        except RetryError as exc:
            attempt = exc.last_attempt
            last = attempt.exception()
            raise BackendUnavailable(
                f"{backend}: {operation} failed after {attempt.attempt_number} attempt(s) "
                f"({type(last).__name__}: {_short(last)}); the backend is unreachable, "
                "throttling or failing - check its endpoint and health, or use the "
                "location's in-country failover backend"
            ) from last


def _log_retry(state: RetryCallState, backend: str, operation: str, max_attempts: int) -> None:
    if not _log.isEnabledFor(logging.WARNING):
        return
    failed = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    # An operation may name its key ("get 'k'"): only the part before the quote is shown.
    shown = operation.split("'", 1)[0].split('"', 1)[0].strip() or "request"
    error = type(failed).__name__ if failed is not None else "failure"
    _log.warning(
        "%s: %s failed (%s); retrying in %.2f s (attempt %d of %d)", backend, shown, error,
        wait, state.attempt_number, max_attempts,
        extra={"residency": {"backend": backend, "operation": shown, "error": error,
                             "attempt": state.attempt_number, "max_attempts": max_attempts,
                             "wait_seconds": round(wait, 3)}})


def _translating(fn: Callable[[], T], transient: Classifier,
                 translate: Callable[[BaseException], ResidencyError]) -> Callable[[], T]:
    """``fn`` with its permanent (non-transient) SDK errors translated; transient ones are
    left for the retry loop."""

    def guarded() -> T:
        try:
            return fn()
        except ResidencyError:
            raise
        except Exception as exc:
            if transient(exc):
                raise
            raise translate(exc) from exc

    return guarded


class _Interrupted(Exception):
    """Carries a :class:`ReadInterrupted` through the policy, which never retries errors of
    the hierarchy itself (those are final answers of an adapter)."""


def read_whole(open_reader: Callable[[], BinaryIO], policy: RetryPolicy, *, backend: str,
               key: str) -> bytes:
    """Open and read a whole object; when the stream breaks off mid-way, read it again from
    the start (bounded by ``policy``). Nothing partial is ever returned."""
    def read() -> bytes:
        with open_reader() as reader:
            return reader.read()

    return fetch_whole(read, policy, backend=backend, key=key)


def fetch_whole(read: Callable[[], bytes], policy: RetryPolicy, *, backend: str,
                key: str) -> bytes:
    """``read()`` (which fetches and verifies a whole object), called again from the start
    when it raises :class:`ReadInterrupted` (bounded by ``policy``)."""
    def attempt() -> bytes:
        try:
            return read()
        except ReadInterrupted as exc:
            raise _Interrupted(str(exc)) from exc

    return policy.call(attempt, backend=backend, operation=f"get {key!r}",
                       transient=lambda exc: isinstance(exc, _Interrupted))


def _short(exc: BaseException | None, limit: int = 200) -> str:
    text = str(exc) if exc is not None else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


DEFAULT_POLICY = RetryPolicy()
"""The policy adapters use unless given another."""
