"""Answers asked of a provider once per process: the bucket-location check on open."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class AskedOnce(Generic[T]):
    """What each key (e.g. ``(endpoint, bucket)``) answered, asked once per process;
    thread-safe. Errors (missing bucket, refused, unreachable) are not cached: the next
    caller asks again."""

    def __init__(self) -> None:
        self._answers: dict[Hashable, T] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, ask: Callable[[], T]) -> T:
        """The cached answer for ``key``, or ``ask()``'s (stored when it returns)."""
        answer = self._answers.get(key)
        if answer is not None:
            return answer
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one request per key, however many threads open it at once
            answer = self._answers.get(key)
            if answer is None:
                answer = ask()
                self._answers[key] = answer
        return answer
