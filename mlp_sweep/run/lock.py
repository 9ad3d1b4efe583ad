"""One writer per run folder: an OS lock on `<run_dir>/.lock` while a process trains there.

The lock is a POSIX record lock (fcntl), so the kernel drops it when its process dies: a
SIGKILL, an OOM kill or a lost node never leaves a stale lock behind. The file also says who
holds it (pid, host, since), for the one line another command prints when it backs off.

POSIX locks belong to a process and vanish when that process closes *any* descriptor of the
file, so a process never opens a lock file it holds a second time: `holder()` answers from
`_held` for our own locks. Local disks and NFSv4 (and NFSv3 with lockd) honour these locks;
some shared filesystems do not (Lustre without `-o flock`, or `-o localflock`, where each node
only sees its own locks; sshfs; most FUSE and object-store mounts), and there two nodes can
both believe they hold the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlp_sweep.errors import MlpSweepError

LOCK_FILE = ".lock"

# Our locks, by folder, with the descriptor that holds each (see the module's note).
_held: dict[Path, int] = {}


@dataclass(frozen=True)
class Holder:
    pid: int | None
    host: str | None
    since: str | None

    def __str__(self) -> str:
        where = f" on {self.host}" if self.host else ""
        when = f" since {self.since}" if self.since else ""
        return f"pid {self.pid if self.pid is not None else '?'}{where}{when}"


class RunLocked(MlpSweepError):
    """Another process is training this run folder right now."""

    def __init__(self, run_dir: Path, holder: Holder) -> None:
        self.run_dir, self.holder = run_dir, holder
        super().__init__(f"{run_dir} is being trained by {holder}; left alone here")


def _key(run_dir: Path) -> Path:
    return Path(os.path.abspath(run_dir))


def _read_holder(fd: int) -> Holder:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    return Holder(info.get("pid"), info.get("host"), info.get("since"))


def acquire(run_dir: Path, since: str) -> None:
    """Lock run_dir for this process (creating it if needed), or raise RunLocked.

    Re-entrant: a folder this process already holds stays held.
    """
    key = _key(run_dir)
    if key in _held:
        return
    key.mkdir(parents=True, exist_ok=True)
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EAGAIN):
            os.close(fd)
            raise
        holder = _read_holder(fd)
        os.close(fd)
        raise RunLocked(key, holder) from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _held[key] = fd


def release(run_dir: Path) -> None:
    fd = _held.pop(_key(run_dir), None)
    if fd is not None:
        os.close(fd)  # closing drops the lock; the file stays, naming its last holder


@contextmanager
def holding(run_dir: Path, since: str) -> Iterator[None]:
    """Hold run_dir's lock for the block; a lock taken before the block is left as it was."""
    mine = _key(run_dir) not in _held
    acquire(run_dir, since)
    try:
        yield
    finally:
        if mine:
            release(run_dir)


def _locked_by_other(fd: int) -> int | None:
    """The pid holding a write lock on fd's file, or None; asks without taking the lock."""
    if not sys.platform.startswith("linux"):
        try:  # elsewhere: take it and give it back at once (fd is open for writing: _open)
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EAGAIN):
                return -1
            raise
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    # struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    query = struct.pack("@hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    l_type, _, _, _, l_pid = struct.unpack("@hhqqi4x", answer)
    return None if l_type == fcntl.F_UNLCK else l_pid


def _open(path: Path) -> int:
    """A descriptor to ask about path's lock with. Linux asks the kernel (F_GETLK), which a
    read-only descriptor may do; elsewhere the question takes the lock for an instant, and an
    exclusive lock needs a descriptor open for writing (read-only: EBADF, which would read as
    "locked" and keep a crashed run `running elsewhere` for ever)."""
    return os.open(path, os.O_RDONLY if sys.platform.startswith("linux") else os.O_RDWR)


def holder(run_dir: Path) -> Holder | None:
    """Who holds run_dir's lock now (this process included), or None when nobody does."""
    key = _key(run_dir)
    if key in _held:
        return _read_holder(_held[key])
    try:
        fd = _open(key / LOCK_FILE)
    except OSError:  # no lock file: nobody ever trained here
        return None
    try:
        pid = _locked_by_other(fd)
        if pid is None:
            return None
        found = _read_holder(fd)
        # The kernel's pid is right for a local holder; the file's names another host's.
        return found if found.pid is not None else Holder(pid, None, None)
    finally:
        os.close(fd)
