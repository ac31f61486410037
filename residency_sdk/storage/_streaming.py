"""Stream helpers shared by the cloud adapters: hash while reading, report progress.

Nothing here buffers a whole object: each read is hashed and passed on.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from residency_sdk.errors import StorageError

ProgressCallback = Callable[[int], None]


class Hasher(Protocol):
    """The subset of the hashlib interface the adapters use."""

    def update(self, data: bytes | memoryview, /) -> Any: ...

    def digest(self) -> bytes: ...


class NullHasher:
    """A hasher that hashes nothing (when the SDK already verifies the same checksum)."""

    def update(self, data: bytes | memoryview, /) -> None:
        pass

    def digest(self) -> bytes:
        return b""


class Digester:
    """Hashes a byte stream (whole, and per ``part_size`` slice) off the I/O thread.

    Small updates are hashed inline; from the first large one on, hashing moves to one
    background thread fed through a bounded queue, so it overlaps with network I/O on
    another core (hashlib releases the GIL on large buffers) while the order of updates
    is kept and at most ``depth`` chunks wait in memory.
    """

    _BACKGROUND_FROM = 1024 * 1024

    def __init__(self, hasher: Hasher, *, part_size: int | None = None,
                 part_hasher: Callable[[], Hasher] | None = None, depth: int = 4) -> None:
        self.hasher = hasher
        self.part_digests: list[bytes] = []
        self._part_size = part_size if part_hasher else None
        self._part_hasher = part_hasher
        self._current: Hasher | None = None
        self._in_part = 0
        self._depth = depth
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._finished = False

    def update(self, data: bytes) -> None:
        """Feed the next bytes of the stream."""
        if self._thread is None and len(data) < self._BACKGROUND_FROM:
            self._consume(data)
            return
        if self._thread is None:
            self._queue = queue.Queue(maxsize=self._depth)
            self._thread = threading.Thread(target=self._run, name="residency-digest",
                                            daemon=True)
            self._thread.start()
        assert self._queue is not None
        self._queue.put(data)

    def _run(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._consume(data)
                except BaseException as exc:  # surfaced by finish()
                    self._error = exc

    def _consume(self, data: bytes) -> None:
        self.hasher.update(data)
        if not self._part_size or not self._part_hasher:
            return
        view = memoryview(data)
        while view:
            if self._current is None:
                self._current = self._part_hasher()
                self._in_part = 0
            take = min(len(view), self._part_size - self._in_part)
            self._current.update(view[:take])
            self._in_part += take
            view = view[take:]
            if self._in_part == self._part_size:
                self.part_digests.append(self._current.digest())
                self._current = None

    def finish(self) -> None:
        """Wait for every queued update and close the last part."""
        if self._finished:
            return
        self._finished = True
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
        if self._current is not None:
            self.part_digests.append(self._current.digest())
            self._current = None

    def close(self) -> None:
        """Stop the background thread without waiting for a result (on errors)."""
        if self._thread is not None and self._queue is not None and not self._finished:
            self._finished = True
            self._error = self._error or StorageError("digest abandoned")
            self._queue.put(None)


class HashingReader(io.RawIOBase):
    """A forward-only reader that hashes everything read from ``source``.

    Hashing runs through a :class:`Digester` (per ``part_size`` slice too, since an S3
    multipart checksum is a hash of the parts' hashes). ``tell()`` reports bytes consumed
    so SDKs that check "stream at position 0" accept it; seeking is refused so nobody can
    re-read behind our back. Call :meth:`digest` (or :meth:`finish_parts`) after the upload.
    """

    def __init__(self, source: BinaryIO, hasher: Hasher, *,
                 progress: ProgressCallback | None = None, part_size: int | None = None,
                 part_hasher: Callable[[], Hasher] | None = None) -> None:
        super().__init__()
        self._source = source
        self.digester = Digester(hasher, part_size=part_size, part_hasher=part_hasher)
        self.hasher = hasher
        self._progress = progress
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else (
            self.position + offset if whence == os.SEEK_CUR else -1)
        if target != self.position:
            raise io.UnsupportedOperation("HashingReader is forward-only")
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            # Callers asking for "everything" still get bounded chunks from us.
            chunks = []
            while chunk := self.read(8 * 1024 * 1024):
                chunks.append(chunk)
            return b"".join(chunks)
        data = self._source.read(size)
        if not data:
            return b""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StorageError(f"upload source returned {type(data).__name__}, expected bytes: "
                               "open files in binary mode ('rb')")
        data = bytes(data)
        self.digester.update(data)
        self.position += len(data)
        if self._progress is not None:
            self._progress(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def finish_parts(self) -> list[bytes]:
        """Wait for the hashing to finish; every part's digest."""
        self.digester.finish()
        return self.digester.part_digests

    def digest(self) -> bytes:
        """Wait for the hashing to finish; the whole stream's digest."""
        self.digester.finish()
        return self.hasher.digest()

    def close(self) -> None:
        self.digester.close()
        super().close()


def as_binary_stream(data: bytes | BinaryIO) -> BinaryIO:
    """``bytes`` as a stream; a binary file object unchanged; anything else refused."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(data))
    if hasattr(data, "read"):
        return data
    raise StorageError(f"cannot store a {type(data).__name__}: pass bytes or a binary file "
                       "object opened with 'rb'")


def start_position(stream: BinaryIO) -> int | None:
    """The stream's current offset if it can be rewound for a retry, else None."""
    try:
        if stream.seekable():
            return stream.tell()
    except (OSError, ValueError, AttributeError):
        return None
    return None


def sha256() -> Hasher:
    """A fresh SHA-256 hasher."""
    return hashlib.sha256()


def md5() -> Hasher:
    """A fresh MD5 hasher (Azure's Content-MD5 integrity check, not a security use)."""
    return hashlib.md5(usedforsecurity=False)


class VerifyingReader(io.RawIOBase):
    """A reader over an iterator of byte chunks that hashes as it goes and, at the end of
    the stream, calls ``verify(digester)`` (which raises on a mismatch).

    Reads may return fewer bytes than asked (raw-stream semantics) rather than copy
    chunks together; nothing beyond one chunk is buffered.
    """

    def __init__(self, chunks: Any, hasher: Hasher, verify: Callable[[Digester], None],
                 *, on_close: Callable[[], None] | None = None, part_size: int | None = None,
                 part_hasher: Callable[[], Hasher] | None = None) -> None:
        super().__init__()
        self._iter = iter(chunks)
        self._buffer = memoryview(b"")
        self._chunk = b""  # the bytes object self._buffer views
        self._done = False
        self._verify = verify
        self._on_close = on_close
        self.digester = Digester(hasher, part_size=part_size, part_hasher=part_hasher)

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        for chunk in self._iter:
            if chunk:
                data = bytes(chunk)
                self.digester.update(data)
                self._chunk = data
                self._buffer = memoryview(data)
                return True
        if not self._done:
            self._done = True
            self.digester.finish()
            self._verify(self.digester)
        return False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [bytes(self._buffer)]
            self._buffer = memoryview(b"")
            while self._fill():
                parts.append(bytes(self._buffer))
                self._buffer = memoryview(b"")
            return b"".join(parts)
        if not self._buffer and not self._fill():
            return b""
        out = self._buffer[:size]
        self._buffer = self._buffer[size:]
        # A whole chunk is handed over as is; only partial reads copy.
        return self._chunk if len(out) == len(self._chunk) else out.tobytes()

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.digester.close()
            if self._on_close is not None:
                self._on_close()
        super().close()


class HashingSink(io.BytesIO):
    """An in-memory sink that hashes what is written to it in stream order, whatever the
    order of the writes.

    A parallel range download seeks to where each range belongs and writes it there
    (one writer at a time); a range that arrives before the ones in front of it waits,
    referenced rather than copied, until the gap is filled. Hashing runs through a
    :class:`Digester`, on its own thread. :meth:`digest` raises when the writes left a
    gap or covered a range twice (bytes that cannot be verified).
    """

    def __init__(self, hasher: Hasher) -> None:
        super().__init__()
        self.digester = Digester(hasher)
        self._hashed = 0
        self._waiting: dict[int, bytes] = {}

    def write(self, data: Any, /) -> int:
        offset = self.tell()
        written = super().write(data)
        piece = data if isinstance(data, bytes) else bytes(data)
        if offset != self._hashed:
            if offset < self._hashed or offset in self._waiting:
                raise StorageError(f"bytes at offset {offset} were written twice: the "
                                   "download cannot be verified")
            self._waiting[offset] = piece
            return written
        self._feed(piece)
        while (following := self._waiting.pop(self._hashed, None)) is not None:
            self._feed(following)
        return written

    def _feed(self, piece: bytes) -> None:
        self.digester.update(piece)
        self._hashed += len(piece)

    def digest(self) -> bytes:
        """Wait for the hashing to finish; the digest of everything written."""
        self.digester.finish()
        if self._waiting or self._hashed != self.seek(0, os.SEEK_END):
            raise StorageError(f"the download left a gap at offset {self._hashed}: it "
                               "cannot be verified")
        return self.digester.hasher.digest()

    def close(self) -> None:
        self.digester.close()
        super().close()
