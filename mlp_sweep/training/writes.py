"""How mlp_sweep writes a file: whole, or appended to, and never through a symbolic link.

Whole (`atomic_file`, `write_bytes_atomic`): a temp file in the same folder, fsync, rename over
the name, fsync of the folder. A reader, or a crash at any instant, sees the old file or the
new one, never half of one; once the call returns the new one survives a power cut (the
rename lives in the folder's own data, hence the folder's fsync). The rename replaces whatever
link stood at the name and leaves its target alone.

Appended (`open_append`; `LogFile`, a logging handler): O_NOFOLLOW, so a link at the name is
never written through; a link, FIFO or device there is first replaced by an empty file of ours.

Folders travel (a colleague's zipped sweep, a shared cache): these rules keep a link planted in
one from turning a write into an overwrite of a file elsewhere. Standard library only, so every
layer can use it (run records, the data cache, the decompressed MNIST files).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()

# Opening for an append: no link followed, and O_NONBLOCK so that a FIFO planted at the name
# fails (ENXIO) instead of blocking the run until someone reads it.
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def fsync_dir(folder: Path) -> None:
    """Make the names just made or renamed in `folder` survive a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as err:  # a filesystem that cannot sync a folder has nothing to do here
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """A file to write `path`'s new content into; it replaces `path` when the block ends
    without an exception (see the module's docstring), and is removed when it raises.

    mode: the file's permissions; None gives what open() would (0666 less the umask).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK if mode is None else mode)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` (atomic_file)."""
    with atomic_file(path, mode) as f:
        f.write(data)


def is_regular(path: Path) -> bool:
    """Whether `path` is a regular file itself (not a link to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def open_append(path: Path) -> int:
    """A descriptor appending to `path` (created if missing) that writes into a regular file
    of ours only: a link, FIFO or device at the name is replaced by an empty file first (the
    link's target untouched). A folder at the name raises IsADirectoryError."""
    for _ in range(3):  # more than one only if something is swapped in while we look
        if os.path.lexists(path) and not is_regular(path):
            write_bytes_atomic(path, b"")
        try:
            fd = os.open(path, _APPEND, 0o666)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENXIO):  # a link, a FIFO: swapped in since
                continue
            raise
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.set_blocking(fd, True)
            return fd
        os.close(fd)
    raise OSError(errno.EEXIST, "not a regular file, and replacing it did not last", str(path))


class LogFile(logging.FileHandler):
    """logging.FileHandler appending to its file through open_append: never through a link."""

    def _open(self) -> io.TextIOWrapper:
        fd = open_append(Path(self.baseFilename))
        return open(fd, "a", encoding=self.encoding, errors=self.errors)  # noqa: SIM115
