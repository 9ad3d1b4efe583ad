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

A run folder may come from elsewhere (a colleague's zipped sweep), so nothing here follows a
symbolic link: `.lock` is opened with O_NOFOLLOW, and one that is not a regular file (a link,
a FIFO, a folder) leaves the run alone (LockRefused) rather than write through it or swap it
for a file of ours, which two processes could not do without racing each other for the lock.
Once the lock is held, links at the names Hydra then writes with plain open() (`.hydra/` and
its files, the job's `*.log`) are removed, their targets untouched.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import stat
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlp_sweep.errors import MlpSweepError
from mlp_sweep.run.record import HYDRA_DIR

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# No link followed; O_NONBLOCK so that opening a FIFO planted at the name cannot hang.
_NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK

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


class LockRefused(RunLocked):
    """Something in the folder would have us write through a link or into a non-file (a
    `.lock` that is not a regular file; a link at a name Hydra writes that cannot be removed):
    the run is left alone, as one another process trains is, and nothing there is written."""

    def __init__(self, run_dir: Path, path: Path, what: str) -> None:
        self.run_dir, self.holder = run_dir, Holder(None, None, None)
        MlpSweepError.__init__(
            self, f"{path} is {what}; left alone here (delete it to train this run)"
        )


def _kind(path: Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "not a lock file"
    if stat.S_ISLNK(mode):
        return "a symbolic link, not a lock file"
    return "a folder, not a lock file" if stat.S_ISDIR(mode) else "not a regular file"


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
    path = key / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise LockRefused(key, path, _kind(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, say (O_RDWR opens one on Linux)
        os.close(fd)
        raise LockRefused(key, path, _kind(path))
    os.set_blocking(fd, True)
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
    try:
        _drop_hydra_links(key)
    except LockRefused:
        release(key)
        raise


def _drop_hydra_links(folder: Path) -> None:
    """Remove the links at the names Hydra writes into a job's folder with open(), which
    follows them (its run_job, right after the launcher takes this lock: .hydra/ and its
    config.yaml, hydra.yaml, overrides.yaml; the job's <name>.log). The lock makes this process
    the folder's one writer, so nothing of ours is a link there; a link's target is untouched."""
    hydra = folder / HYDRA_DIR
    found = [hydra, *folder.glob("*.log")]
    if hydra.is_dir() and not hydra.is_symlink():
        found += hydra.glob("*")
    for path in found:
        if not path.is_symlink():
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as err:  # left there, Hydra would write through it
            raise LockRefused(
                folder, path, f"a symbolic link that cannot be removed ({err.strerror})"
            ) from None
        log.warning("%s: a symbolic link where Hydra writes; removed", path)


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
    return os.open(
        path, (os.O_RDONLY if sys.platform.startswith("linux") else os.O_RDWR) | _NOFOLLOW
    )


def holder(run_dir: Path) -> Holder | None:
    """Who holds run_dir's lock now (this process included), or None when nobody does."""
    key = _key(run_dir)
    if key in _held:
        return _read_holder(_held[key])
    try:
        fd = _open(key / LOCK_FILE)
    except OSError:  # no lock file: nobody ever trained here (or a link, which none of ours is)
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, a folder: no lock of ours either
            return None
        pid = _locked_by_other(fd)
        if pid is None:
            return None
        found = _read_holder(fd)
        # The kernel's pid is right for a local holder; the file's names another host's.
        return found if found.pid is not None else Holder(pid, None, None)
    finally:
        os.close(fd)
