"""A JSON Lines audit sink, for shipping the trail to an existing log pipeline.

Each line is one event with its own chain fields, so the file verifies on its own::

    {"seq":1,"prev_hash":"000…","hash":"…","mac":null,"event":{…canonical event…}}

The ``event`` object is the canonical JSON byte for byte (it is always the last member),
so a pipeline can index it as JSON while :func:`verify_jsonl` hashes the exact text.
Appends from several threads and processes are serialised with an exclusive ``flock``.
A JSON Lines file has no identity (its first line's ``prev_hash`` is 64 zeros) and no
head record: it is a copy for a pipeline, not the evidence. Protect it with the pipeline's
own retention, and keep the SQLite or PostgreSQL log (with anchors) as the record.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from residency_sdk.audit.chain import (
    GENESIS,
    HMAC_KEY_ENV,
    canonical,
    coerce_key,
    link_hash,
    link_mac,
)
from residency_sdk.audit.store import Row
from residency_sdk.audit.verify import (
    ChainBreak,
    VerifyResult,
    check_rows,
    unknown_note,
    unknown_outcomes,
)
from residency_sdk.errors import AuditFormatError, AuditLogClosed
from residency_sdk.events import AuditEvent

_EVENT_MARK = ',"event":'
_TAIL_CHUNK = 64 * 1024


class JsonlSink:
    """Append hash-chained events to a JSON Lines file (usable as an audit hook).

    ``fsync=True`` (the default) makes each event durable before :meth:`append` returns.
    """

    def __init__(self, path: str | Path, *, hmac_key: bytes | str | None = None,
                 fsync: bool = True) -> None:
        self.path = Path(path)
        self._key = coerce_key(hmac_key)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = open(self.path, "a+b")  # noqa: SIM115 - kept open

    def append(self, event: AuditEvent, *, durable: bool = True) -> None:
        """Add ``event`` as one line, chained to the file's last line (fsynced unless
        ``durable=False`` or the sink was opened with ``fsync=False``)."""
        payload = canonical(event)
        with self._lock:
            if self._file is None:
                raise AuditLogClosed(f"JSON Lines sink {str(self.path)!r} is closed")
            f = self._file
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                seq, prev = _tail_head(f)
                seq += 1
                digest = link_hash(seq, prev, payload)
                mac = link_mac(self._key, seq, digest) if self._key else None
                head = json.dumps({"seq": seq, "prev_hash": prev, "hash": digest, "mac": mac},
                                  separators=(",", ":"))
                f.seek(0, os.SEEK_END)
                f.write(f"{head[:-1]}{_EVENT_MARK}{payload}}}\n".encode())
                f.flush()
                if self._fsync and durable:
                    os.fsync(f.fileno())
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def flush(self) -> None:
        """Make every line written so far durable (fsync)."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _tail_head(f: IO[bytes]) -> tuple[int, str]:
    """``(seq, hash)`` of the last complete line. A partial last line is an unfinished write
    (the writer died before acknowledging it) and is cut off, so the chain continues."""
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return 0, GENESIS
    pos, tail = end, b""
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        f.seek(pos)
        tail = f.read(step) + tail
        body = tail[:-1] if tail.endswith(b"\n") else tail
        if b"\n" in body or pos == 0:
            break
    if not tail.endswith(b"\n"):
        cut = tail.rfind(b"\n")
        keep = pos + cut + 1 if cut >= 0 else 0
        f.truncate(keep)
        return _tail_head(f)
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    head = json.loads(last[:last.index(_EVENT_MARK.encode())] + b"}")
    return int(head["seq"]), str(head["hash"])


def _rows(lines: Iterator[str], broken: list[ChainBreak]) -> Iterator[Row]:
    for number, line in enumerate(lines, start=1):
        if not line.endswith("\n"):
            broken.append(ChainBreak(number, "partial_line",
                                     "the last line is incomplete (an unfinished write)"))
            return
        try:
            cut = line.index(_EVENT_MARK)
            head = json.loads(line[:cut] + "}")
            yield (int(head["seq"]), line[cut + len(_EVENT_MARK):-2], str(head["prev_hash"]),
                   str(head["hash"]), head.get("mac"))
        except (ValueError, KeyError, TypeError):
            broken.append(ChainBreak(number, "malformed_line",
                                     f"line {number} is not a chained audit record"))
            return


def verify_jsonl(path: str | Path, *, hmac_key: bytes | str | None = None,
                 use_env_key: bool = True) -> VerifyResult:
    """Verify a JSON Lines audit file written by :class:`JsonlSink`."""
    key = coerce_key(hmac_key, use_env=use_env_key)
    p = Path(path)
    if not p.is_file():
        raise AuditFormatError(f"no JSON Lines audit file at {str(p)!r}: check the path")
    line_breaks: list[ChainBreak] = []
    with p.open(encoding="utf-8", newline="") as fh:
        walk = check_rows(_rows(fh, line_breaks), key)
    broken = walk.broken or (line_breaks[0] if line_breaks else None)
    keyed = key is not None or walk.macs_seen
    notes: list[str] = []
    if keyed and key is None:
        notes.append(f"UNVERIFIED: the file's lines carry HMACs that were not checked; set "
                     f"{HMAC_KEY_ENV} to its key")
    unknown = unknown_outcomes(walk)
    note = unknown_note(unknown)
    if note:
        notes.append(note)
    return VerifyResult(path=str(p), keyed=keyed, hmac_checked=key is not None,
                        events=walk.count, head_seq=walk.last_seq, head_hash=walk.last_hash,
                        broken=broken, notes=tuple(notes), outcome_unknown=unknown)
