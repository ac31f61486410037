"""Streaming in and out of the service: an upload is never held whole in memory.

- :func:`study_body` turns a request into :class:`StudyBody`: the study's bytes as they
  arrive (the raw body, or the ``file`` field of a ``multipart/form-data`` body, parsed
  incrementally), with its size and SHA-256 computed and its size limit enforced on the
  way. Downloads and the bodies sent to the model are the async store's
  ``iter_bytes``: one chunk read at a time in a worker thread.

Memory per upload stays at a few chunks whatever the study's size.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncIterator

from fastapi import HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

FILE_FIELD = "file"


class StudyBody:
    """An uploaded study as an async iterable of chunks, hashed and counted as it goes.

    :meth:`start` waits for the first bytes (so an empty upload is refused before
    anything is stored); iterating yields them and the rest. When the body turns out to
    be unacceptable while it is being stored (past ``limit`` bytes: ``413``; a malformed
    multipart body: ``400``) the iteration raises, so the store's ``put`` fails and keeps
    nothing, and :attr:`problem` holds the answer to give the client (the store may
    report the failure as its own error)."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self._first = b""
        self._hash = hashlib.sha256()
        self.size = 0
        """Bytes received so far."""
        self.problem: HTTPException | None = None
        """Why the body was refused while it was being read, if it was."""

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes received so far (the whole study once iterated)."""
        return self._hash.hexdigest()

    async def start(self) -> bool:
        """Wait for the first bytes; False when the body is empty."""
        async for chunk in self._chunks:
            if chunk:
                self._first = chunk
                return True
        return False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Passed on as the server reads them (~64 KiB): the async store's pipe already
        # gathers what its adapter reads, so regrouping here would only add a buffer.
        try:
            first, self._first = self._first, b""
            self._count(first)
            yield first
            async for chunk in self._chunks:
                self._count(chunk)
                yield chunk
        except HTTPException as exc:
            self.problem = exc
            raise

    def _count(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise too_large(self._limit)
        self._hash.update(chunk)


async def study_body(request: Request, limit: int) -> StudyBody:
    """The study in ``request`` (raw body or multipart field ``file``), started.

    Refused before anything is stored: ``413`` when ``Content-Length`` already says it is
    too large, ``400`` when the body is empty or a multipart body has no ``file`` field."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    content_type = request.headers.get("content-type", "")
    chunks = (_multipart_file(request, content_type)
              if content_type.startswith("multipart/form-data") else request.stream())
    body = StudyBody(chunks, limit)
    if not await body.start():
        raise HTTPException(400, detail={"error": "empty_study",
                                         "message": "the study is empty: send the DICOM bytes"})
    return body


def too_large(limit: int) -> HTTPException:
    """The ``413`` answer for a study over ``limit`` bytes."""
    return HTTPException(413, detail={"error": "study_too_large",
                                      "message": f"studies are limited to {limit} bytes"})


class _FilePart:
    """Callbacks of the incremental multipart parser: collects the ``file`` field's bytes
    as they are parsed, skips every other part."""

    def __init__(self) -> None:
        self.data: deque[bytes] = deque()
        self.found = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._in_file = False

    def callbacks(self) -> dict[str, object]:
        return {"on_part_begin": self._part_begin, "on_header_field": self._field,
                "on_header_value": self._value, "on_header_end": self._header_end,
                "on_part_data": self._data, "on_part_end": self._part_end}

    def _part_begin(self) -> None:
        self._in_file = False

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self._header_value))
            # Only the first ``file`` part is the study; a second one is ignored.
            if options.get(b"name") == FILE_FIELD.encode() and not self.found:
                self._in_file = self.found = True
        self._header_field.clear()
        self._header_value.clear()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and end > start:
            self.data.append(data[start:end])

    def _part_end(self) -> None:
        self._in_file = False


async def _multipart_file(request: Request, content_type: str) -> AsyncIterator[bytes]:
    """The bytes of the ``file`` field of a ``multipart/form-data`` request, parsed as the
    body arrives (Starlette's ``request.form()`` would spool the whole file first)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise HTTPException(400, detail={"error": "bad_multipart",
                                         "message": "multipart/form-data without a boundary"})
    part = _FilePart()
    parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            while part.data:
                yield part.data.popleft()
        parser.finalize()
    except MultipartParseError as exc:
        raise HTTPException(400, detail={"error": "bad_multipart",
                                         "message": f"malformed multipart body: {exc}"}) from None
    while part.data:
        yield part.data.popleft()
    if not part.found:
        raise HTTPException(400, detail={"error": "no_file",
                                         "message": "multipart upload needs a 'file' field"})

