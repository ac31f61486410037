"""The local store's file system, walked from descriptors and never through a link.

:class:`DataRoot` is the one way the local store (:mod:`.local`) and its keyring
(:mod:`.local_keys`) reach anything below the data root. The root is resolved once
(``os.path.realpath``) by the store; below it every directory is opened one component at
a time from its parent's descriptor (``openat`` with ``O_NOFOLLOW | O_DIRECTORY``,
``mkdirat`` to create), files are opened with ``O_NOFOLLOW`` in their directory's
descriptor, and a link met on the way raises :class:`~residency_sdk.errors.UnsafePath`
naming it, before any byte is read or written through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from residency_sdk._fsflags import (
    CREATE_FLAGS,
    DIR_FLAGS,
    O_CLOEXEC,
    O_DIRECTORY,
    O_NOFOLLOW,
    READ_FLAGS,
)
from residency_sdk.errors import IntegrityError, UnsafePath

try:  # POSIX: serialise across processes too
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# Every path below the root is opened relative to its parent directory's descriptor and
# never through a symbolic link (O_NOFOLLOW); O_NONBLOCK keeps a planted FIFO from
# blocking a reader (it has no effect on regular files).
LOCK_FLAGS = os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC
FD_WALK = bool(O_NOFOLLOW and O_DIRECTORY and os.open in os.supports_dir_fd
               and os.scandir in os.supports_fd)
"""Whether this system can walk without following links (the local store needs it)."""
_LINK_HINT = ("remove the link; residency-sdk never follows links in its data root, so "
              "nothing was read or written through it")


def fsync_dir(fd: int) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a directory be fsynced
        os.fsync(fd)


def _read_at(dir_fd: int, name: str, shown: str) -> tuple[bytes, os.stat_result]:
    """The whole content of the regular file ``name`` in ``dir_fd`` (opened without
    following a link: a link raises ``OSError(ELOOP)``, which the caller classifies;
    anything but a regular file, such as a planted FIFO, raises IntegrityError naming
    ``shown``)."""
    fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"{shown} in the local data root is not a regular file")
        parts = []
        left = st.st_size
        while left > 0:
            part = os.read(fd, left)
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts), st
    finally:
        os.close(fd)


def write_private_at(dir_fd: int, name: str, data: bytes) -> None:
    """Create the file ``name`` (0600, never through a link) in ``dir_fd`` with ``data``,
    fsynced."""
    fd = os.open(name, CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class DataRoot:
    """The resolved data root ``root``. ``where`` arguments are the path components
    from the root to the directory at hand (``(location, bucket, ...)``), for naming a
    refused link."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def unsafe(self, parts: Sequence[str]) -> UnsafePath:
        """The error for the symbolic link at ``<root>/<parts...>``."""
        return UnsafePath(f"{'/'.join(parts)} in the local data root {self.root} is a "
                          f"symbolic link: {_LINK_HINT}")

    def refuse_link(self, exc: OSError, dir_fd: int, name: str,
                    where: Sequence[str]) -> None:
        """Raise :class:`UnsafePath` if opening ``name`` in ``dir_fd`` failed because it
        is a symbolic link (``ELOOP``, or ``ENOTDIR`` with ``O_DIRECTORY``)."""
        if isinstance(exc, FileNotFoundError):
            return
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise self.unsafe((*where, name)) from None

    def read(self, dir_fd: int, name: str,
             where: Sequence[str]) -> tuple[bytes, os.stat_result]:
        """The content and status of the regular file ``name`` in ``dir_fd``; a link
        raises :class:`UnsafePath`, anything else not a regular file IntegrityError,
        absence ``FileNotFoundError``."""
        try:
            return _read_at(dir_fd, name, "/".join((*where, name)))
        except OSError as exc:
            self.refuse_link(exc, dir_fd, name, where)
            raise

    @contextlib.contextmanager
    def locked(self, dir_fd: int, name: str, where: Sequence[str]) -> Iterator[None]:
        """Hold an exclusive ``flock`` on the lock file ``name`` in ``dir_fd`` (made
        0600; a link is refused): it serialises processes, callers serialise their own
        threads."""
        try:
            fd = os.open(name, LOCK_FLAGS, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            self.refuse_link(exc, dir_fd, name, where)
            raise
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _open_root(self, *, create: bool) -> int | None:
        for attempt in (0, 1):
            try:
                return os.open(self.root, DIR_FLAGS)
            except FileNotFoundError:
                if not create or attempt:
                    if create:
                        raise
                    return None
            except OSError:
                if os.path.islink(self.root):
                    raise UnsafePath(
                        f"the local data root {self.root} became a symbolic link after the "
                        f"store resolved it: {_LINK_HINT}") from None
                raise
            os.makedirs(self.root, exist_ok=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def open_at(self, parent: int, name: str, where: tuple[str, ...], *,
                create: bool) -> int | None:
        """The directory ``name`` in ``parent`` (made 0700 if ``create``), never through a
        link; ``None`` when it is absent and not created (or is a plain file)."""
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            self.refuse_link(exc, parent, name, where)
            if not create and exc.errno == errno.ENOTDIR:
                return None  # a stray file where a directory belongs: nothing stored there
            raise
        with contextlib.suppress(FileExistsError):  # made concurrently (or a link: below)
            os.mkdir(name, 0o700, dir_fd=parent)
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            self.refuse_link(exc, parent, name, where)
            raise

    def walk_from(self, fd: int, parts: Sequence[str], where: tuple[str, ...], *,
                  create: bool) -> int | None:
        """A new descriptor of ``parts`` below the directory ``fd`` (which stays open)."""
        if not parts:
            return os.dup(fd)
        current = fd
        try:
            for name in parts:
                child = self.open_at(current, name, where, create=create)
                if current != fd:
                    os.close(current)
                current = fd
                if child is None:
                    return None
                current = child
                where = (*where, name)
            found, current = current, fd
            return found
        finally:
            if current != fd:
                os.close(current)

    def open_dir(self, parts: Sequence[str], *, create: bool) -> int | None:
        """A descriptor of ``<root>/<parts...>``, walked without following a link."""
        root = self._open_root(create=create)
        if root is None:
            return None
        try:
            return self.walk_from(root, parts, (), create=create)
        finally:
            os.close(root)

    @contextlib.contextmanager
    def opened(self, parts: Sequence[str]) -> Iterator[int | None]:
        """:meth:`open_dir` of an existing directory (None when absent), closed after."""
        fd = self.open_dir(parts, create=False)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)
