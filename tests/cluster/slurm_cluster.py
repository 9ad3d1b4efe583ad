#!/usr/bin/env python3
"""A real one-node SLURM cluster, with accounting, on 127.0.0.1, for tests and CI.

Everything lives under one work directory: configs, munge key, MariaDB datadir,
spool/state folders, logs, sockets and one pid file per daemon.  Nothing is
installed or started system-wide, so two clusters in two work directories can
run side by side (each gets its own free ports and its own munge socket).

    python tests/cluster/slurm_cluster.py up DIR     # prints `export SLURM_CONF=...`
    python tests/cluster/slurm_cluster.py down DIR

The Debian packages are installed by .ci/install-slurm.sh.  Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAME = "mlpsweep"
PARTITION = "debug"
NODE_NAME = "localhost"
START_TIMEOUT_S = 60.0
# The daemons are stopped in this order: consumers before what they depend on.
STOP_ORDER = ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")
# argv[0] basenames a pid file may legitimately point at; anything else is a
# stale pid file whose pid was reused, and must not be signalled.
PROGRAMS: dict[str, tuple[str, ...]] = {
    "munged": ("munged",),
    "mariadbd": ("mariadbd", "mysqld"),
    "slurmdbd": ("slurmdbd",),
    "slurmctld": ("slurmctld",),
    "slurmd": ("slurmd",),
}
# Daemons live in /usr/sbin, which a non-root PATH often lacks.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
# sun_path is 108 bytes on Linux; keep a margin for the suffixes daemons add.
MAX_SOCKET_PATH = 100
SHOW_CLUSTERS = ("sacctmgr", "-n", "-P", "show", "cluster", "format=cluster")


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Where each file of one cluster lives under its work directory."""

    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def dbd_conf(self) -> Path:
        # slurmdbd has no -f option: it reads slurmdbd.conf beside $SLURM_CONF.
        return self.etc / "slurmdbd.conf"

    @property
    def munge_key(self) -> Path:
        return self.etc / "munge.key"

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def db_dir(self) -> Path:
        return self.root / "mariadb"

    @property
    def db_data(self) -> Path:
        return self.db_dir / "data"

    @property
    def db_socket(self) -> Path:
        return self.db_dir / "mariadbd.sock"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    def pid_file(self, daemon: str) -> Path:
        return self.pids / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.logs / f"{daemon}.log"

    def client_env(self) -> dict[str, str]:
        """What a Slurm client (sbatch, sacct, submitit) needs to reach this cluster."""
        return {"SLURM_CONF": str(self.slurm_conf)}


@dataclass(frozen=True)
class Ports:
    slurmctld: int
    slurmd: int
    slurmdbd: int


# --------------------------------------------------------------------------- public API


def available() -> str | None:
    """None when every needed program is installed, else a one-line reason."""
    needed = [
        "munged",
        "slurmctld",
        "slurmd",
        "slurmdbd",
        "mariadb-install-db",
        "sbatch",
        "sacct",
        "sacctmgr",
        "scancel",
        "squeue",
        "sinfo",
    ]
    missing = [name for name in needed if _which(name) is None]
    if _which("mariadbd") is None and _which("mysqld") is None:
        missing.append("mariadbd")
    if missing:
        return f"SLURM cluster programs missing: {', '.join(missing)} (run .ci/install-slurm.sh)"
    return None


def start(workdir: Path) -> dict[str, str]:
    """Bring a cluster up under workdir; return the client environment variables.

    On any failure every daemon started so far is stopped again before raising.
    """
    reason = available()
    if reason is not None:
        raise RuntimeError(reason)
    layout = Layout(Path(workdir).resolve())
    running = [d for d in STOP_ORDER if _read_live_pid(layout, d) is not None]
    if running:
        raise RuntimeError(f"cluster already running in {layout.root} ({', '.join(running)})")
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        _prepare(layout, deadline)
        _start_munged(layout, deadline)
        _start_mariadbd(layout, deadline)
        ports = _free_ports(3)
        _write_configs(layout, Ports(*ports))
        _start_slurm_daemons(layout, deadline)
    except BaseException as exc:
        stop(layout.root)
        if isinstance(exc, Exception):
            message = f"SLURM cluster failed to start: {exc}\n{_log_tails(layout)}"
            raise RuntimeError(message) from exc
        raise
    return layout.client_env()


def stop(workdir: Path) -> None:
    """Cancel all jobs, then stop every daemon of the cluster under workdir.

    Idempotent: missing or stale pid files are fine.  Only processes named by this
    cluster's pid files, or jobs/steps carrying this cluster's SLURM_CONF, are signalled.
    """
    layout = Layout(Path(workdir).resolve())
    if _read_live_pid(layout, "slurmctld") is not None:
        _cancel_all_jobs(layout)
    # Job processes outlive slurmd (linuxproc tracking): kill them before it goes.
    _kill_job_processes(layout)
    for daemon in STOP_ORDER:
        _stop_daemon(layout, daemon)
    _kill_job_processes(layout)


# --------------------------------------------------------------------------- setup


def _prepare(layout: Layout, deadline: float) -> None:
    """Create the folders, the munge key and the MariaDB datadir (once)."""
    for folder in (layout.etc, layout.state, layout.spool, layout.logs, layout.pids):
        folder.mkdir(parents=True, exist_ok=True)
    # munged refuses a socket folder that others cannot traverse (o+x) or can write.
    layout.munge_dir.mkdir(parents=True, exist_ok=True)
    layout.munge_dir.chmod(0o711)
    # Grant tables are skipped (see _start_mariadbd): only the owner may reach the socket.
    layout.db_dir.mkdir(parents=True, exist_ok=True)
    layout.db_dir.chmod(0o700)
    for path in (layout.munge_socket, layout.db_socket):
        if len(str(path)) > MAX_SOCKET_PATH:
            raise RuntimeError(f"work directory too deep for a unix socket: {path}")
    if not layout.munge_key.exists():
        _write_private(layout.munge_key, secrets.token_bytes(1024))
    if not (layout.db_data / "mysql").is_dir():
        _init_mariadb(layout, deadline)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (munged and slurmdbd insist on it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def _mariadb_options(layout: Layout) -> list[str]:
    """Options shared by mariadb-install-db and mariadbd: a small, private server."""
    return [
        "--no-defaults",  # never read /etc/mysql: this server is ours alone
        f"--datadir={layout.db_data}",
        f"--user={_user()}",
        "--skip-name-resolve",
        # Small InnoDB files and growth steps keep the datadir (and its creation)
        # cheap: ~30 MB instead of ~90 MB once slurmdbd has made its tables.
        "--innodb-log-file-size=8M",
        "--innodb-autoextend-increment=4",
        "--innodb-buffer-pool-size=32M",
    ]


def _init_mariadb(layout: Layout, deadline: float) -> None:
    layout.db_data.mkdir(parents=True, exist_ok=True)
    _run(
        [_program("mariadb-install-db"), *_mariadb_options(layout), "--skip-test-db"],
        timeout=max(1.0, deadline - time.monotonic()),
        log=layout.log_file("mariadb-install-db"),
    )


def _write_configs(layout: Layout, ports: Ports) -> None:
    layout.slurm_conf.write_text(_slurm_conf(layout, ports))
    # slurmdbd refuses a config readable by others, or not owned by SlurmUser.
    _write_private(layout.dbd_conf, _slurmdbd_conf(layout, ports).encode())


def _slurm_conf(layout: Layout, ports: Ports) -> str:
    node = _node_hardware()
    user = _user()
    # A non-root slurmd can only run jobs as its own user, but it works.
    slurmd_user = "root" if os.getuid() == 0 else user
    munge = f"socket={layout.munge_socket}"
    lines = [
        f"ClusterName={CLUSTER_NAME}",
        # Never depend on the machine's hostname or on DNS.
        f"SlurmctldHost={NODE_NAME}(127.0.0.1)",
        f"SlurmctldPort={ports.slurmctld}",
        f"SlurmdPort={ports.slurmd}",
        *_listen_params(),
        f"SlurmUser={user}",
        f"SlurmdUser={slurmd_user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo={munge}",
        # No cgroups: track processes through /proc, no task binding, no usage sampling.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",  # memory is not a consumable: jobs share the node
        "SchedulerType=sched/backfill",
        # Schedule soon after submits and after jobs end (defaults: 30 s and 60 s).
        "SchedulerParameters=bf_interval=1,sched_interval=2,sched_min_interval=100000",
        # Seconds from SIGTERM to SIGKILL (default 30).  A cancelled or timed-out
        # job gets SIGKILL max(KillWait, 5) s after SIGTERM: slurmd's own floor.
        "KillWait=2",
        "MinJobAge=30",  # finished jobs leave scontrol soon; sacct keeps them
        "ReturnToService=2",
        "InactiveLimit=0",
        "MailProg=/bin/true",
        "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=127.0.0.1",
        f"AccountingStoragePort={ports.slurmdbd}",
        # For slurmdbd connections, the "password" is the munge socket to use.
        f"AccountingStoragePass={layout.munge_socket}",
        f"StateSaveLocation={layout.state}",
        f"SlurmdSpoolDir={layout.spool}",
        f"SlurmctldPidFile={layout.pid_file('slurmctld')}",
        f"SlurmdPidFile={layout.pid_file('slurmd')}",
        f"SlurmctldLogFile={layout.log_file('slurmctld')}",
        f"SlurmdLogFile={layout.log_file('slurmd')}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"NodeName={NODE_NAME} NodeAddr=127.0.0.1 NodeHostname={NODE_NAME} {node} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={NODE_NAME} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "# Generated by tests/cluster/slurm_cluster.py\n" + "\n".join(lines) + "\n"


def _listen_params() -> list[str]:
    """Keep slurmctld and slurmd off other interfaces where that is safe.

    With NoInAddrAny, Slurm binds to the address the machine's *hostname*
    resolves to, not to NodeAddr or SlurmctldHost.  That is 127.0.0.1 only when
    the hostname maps there (as in many containers); elsewhere (often a LAN
    address, or 127.0.1.1 on Debian) clients dialling 127.0.0.1 would find
    nothing, so listen on all addresses instead: every RPC still needs a
    credential from this cluster's own munge key.  slurmdbd ignores the setting.
    """
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        return []
    if addresses == {"127.0.0.1"}:
        return ["CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"]
    return []


def _slurmdbd_conf(layout: Layout, ports: Ports) -> str:
    lines = [
        "AuthType=auth/munge",
        f"AuthInfo=socket={layout.munge_socket}",
        f"DbdHost={NODE_NAME}",
        # Where clients reach slurmdbd; it still listens on all addresses (Slurm
        # 22.05 has no way to bind it to one), munge-authenticated like the rest.
        "DbdAddr=127.0.0.1",
        f"DbdPort={ports.slurmdbd}",
        f"SlurmUser={_user()}",
        f"PidFile={layout.pid_file('slurmdbd')}",
        f"LogFile={layout.log_file('slurmdbd')}",
        "DebugLevel=info",
        "StorageType=accounting_storage/mysql",
        # "localhost" makes the MySQL client use the unix socket named by
        # $MYSQL_UNIX_PORT (set when slurmdbd starts): no TCP port for MariaDB.
        "StorageHost=localhost",
        "StorageUser=slurm",  # any name: the server skips grant tables
        "StorageLoc=slurm_acct_db",
    ]
    return "# Generated by tests/cluster/slurm_cluster.py\n" + "\n".join(lines) + "\n"


def _node_hardware() -> str:
    """CPUs, topology and memory as slurmd itself detects them (`slurmd -C`).

    Declaring exactly what slurmd reports keeps the node from being drained as
    having less than configured.
    """
    out = _run([_program("slurmd"), "-C"], timeout=15).stdout
    first = out.splitlines()[0]
    fields = dict(re.findall(r"(\w+)=(\S+)", first))
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    return " ".join(f"{key}={fields[key]}" for key in keys if key in fields)


def _free_ports(count: int) -> list[int]:
    """Ports the kernel says are free on 127.0.0.1 now.

    All sockets stay bound until every port is chosen, so the ports differ; the
    kernel hands out ephemeral ports in turn, so a second cluster gets others.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --------------------------------------------------------------------------- daemons


def _start_munged(layout: Layout, deadline: float) -> None:
    pid = _spawn(
        layout,
        "munged",
        [
            _program("munged"),
            "--foreground",
            f"--socket={layout.munge_socket}",
            f"--key-file={layout.munge_key}",
            f"--pid-file={layout.pid_file('munged')}",
            f"--log-file={layout.log_file('munged')}",
            f"--seed-file={layout.munge_dir / 'munged.seed'}",
            # munged refuses a key, log or socket below a group- or world-writable
            # folder (a CI workspace, a shared /tmp); --force makes that a warning.
            "--force",
        ],
    )
    _wait_for("munged socket", deadline, layout.munge_socket.exists, ("munged", pid))


def _start_mariadbd(layout: Layout, deadline: float) -> None:
    pid = _spawn(
        layout,
        "mariadbd",
        [
            _program("mariadbd") if _which("mariadbd") else _program("mysqld"),
            *_mariadb_options(layout),
            f"--socket={layout.db_socket}",
            f"--pid-file={layout.pid_file('mariadbd')}",
            f"--log-error={layout.log_file('mariadbd')}",
            # Unix socket only, no TCP at all; the socket's folder is private to
            # this user, so skipping grant tables (no users, no passwords) is safe.
            "--skip-networking",
            "--skip-grant-tables",
        ],
    )
    _wait_for("mariadbd socket", deadline, layout.db_socket.exists, ("mariadbd", pid))


def _start_slurm_daemons(layout: Layout, deadline: float) -> None:
    conf = str(layout.slurm_conf)
    pid = _spawn(layout, "slurmdbd", [_program("slurmdbd"), "-D"])
    _wait_for("slurmdbd", deadline, lambda: _sacctmgr_answers(layout), ("slurmdbd", pid))
    _register_cluster(layout)
    _spawn(layout, "slurmctld", [_program("slurmctld"), "-D", "-f", conf])
    pid = _spawn(layout, "slurmd", [_program("slurmd"), "-D", "-f", conf, "-N", NODE_NAME])
    _wait_for("node idle", deadline, lambda: _node_state(layout) == "idle", ("slurmd", pid))
    _wait_for("sacct", deadline, lambda: _client(layout, ["sacct", "-n", "-X"]).returncode == 0)


def _daemon_env(layout: Layout) -> dict[str, str]:
    env = dict(os.environ)
    env.update(layout.client_env())
    env["MYSQL_UNIX_PORT"] = str(layout.db_socket)  # read by slurmdbd's MySQL client
    return env


def _spawn(layout: Layout, daemon: str, argv: list[str]) -> int:
    """Start one daemon in the foreground of its own session; record and return its pid.

    Foreground mode gives us the true pid at once; a new session keeps a
    terminal's Ctrl-C or hang-up away from it.  The daemons write the same pid
    into the same pid file themselves, some by unlinking it first, so a start-up
    wait watches the returned pid, never the file.
    """
    log = layout.logs / f"{daemon}.out"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_daemon_env(layout),
            cwd=layout.root,
            start_new_session=True,
        )
    layout.pid_file(daemon).write_text(f"{proc.pid}\n")
    return proc.pid


def _stop_daemon(layout: Layout, daemon: str, grace_s: float = 10.0) -> None:
    pid = _read_live_pid(layout, daemon)
    if pid is not None:
        _terminate(pid, grace_s)
    layout.pid_file(daemon).unlink(missing_ok=True)


def _terminate(pid: int, grace_s: float) -> None:
    """SIGTERM, wait up to grace_s, then SIGKILL and wait for the end."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            if not _alive(pid):
                return
            time.sleep(0.05)
    raise RuntimeError(f"process {pid} survived SIGKILL")


def _read_live_pid(layout: Layout, daemon: str) -> int | None:
    """The pid in the daemon's pid file, if that process is alive and is that daemon.

    The daemons rewrite the pid file we wrote at spawn (truncate, then write), so a read can
    land between the two and find it empty: read again for a moment before concluding.
    """
    pid = None
    for _ in range(20):
        try:
            pid = int(layout.pid_file(daemon).read_text().split()[0])
            break
        except FileNotFoundError:
            return None
        except (OSError, ValueError, IndexError):
            time.sleep(0.05)
    if pid is None:
        return None
    if not _alive(pid) or _program_name(pid) not in PROGRAMS[daemon]:
        return None
    return pid


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie.

    Reaps it first if it is our child; a zombie whose parent is someone else
    (e.g. an init that never reaps) has exited all the same.
    """
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _program_name(pid: int) -> str:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return ""
    return os.path.basename(argv0.decode(errors="replace"))


# --------------------------------------------------------------------------- jobs


def _cancel_all_jobs(layout: Layout, timeout_s: float = 20.0) -> None:
    """scancel every job in the partition and wait (bounded) until none is left."""
    _client(layout, ["scancel", f"--partition={PARTITION}"])
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        squeue = _client(layout, ["squeue", "-h", "-o", "%i"])
        if squeue.returncode != 0 or not squeue.stdout.strip():
            return
        time.sleep(0.25)


def _kill_job_processes(layout: Layout) -> None:
    """SIGKILL slurmstepd and job processes of this cluster that are still around.

    They are recognised by $SLURM_CONF in their environment: slurmd passes its
    own environment to slurmstepd, and jobs inherit the submitter's.
    """
    marker = f"SLURM_CONF={layout.slurm_conf}".encode()
    spared = _ancestors(os.getpid())
    for pid in _all_pids():
        if pid in spared:
            continue
        environ = _environ(pid)
        if marker not in environ:
            continue
        is_step = _program_name(pid).startswith("slurmstepd") or _comm(pid) == "slurmstepd"
        is_job = b"SLURM_JOB_ID" in b"\0".join(e.split(b"=", 1)[0] for e in environ)
        if is_step or is_job:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _ancestors(pid: int) -> set[int]:
    """pid and its parents: never kill the process running stop() or its callers."""
    found = set()
    while pid > 0 and pid not in found:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


# --------------------------------------------------------------------------- readiness


def _sacctmgr_answers(layout: Layout) -> bool:
    """slurmdbd is up and reaches MariaDB."""
    return _client(layout, SHOW_CLUSTERS).returncode == 0


def _register_cluster(layout: Layout) -> None:
    """Add the cluster to the accounting database unless it is already there.

    slurmctld only sends job records to slurmdbd for a registered cluster.
    """
    shown = _client(layout, SHOW_CLUSTERS)
    if CLUSTER_NAME in shown.stdout.split():
        return
    added = _client(layout, ["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME])
    if added.returncode != 0:
        raise RuntimeError(f"sacctmgr add cluster failed: {added.stdout}{added.stderr}")


def _node_state(layout: Layout) -> str:
    result = _client(layout, ["sinfo", "-h", "-n", NODE_NAME, "-o", "%T"])
    return result.stdout.strip() if result.returncode == 0 else ""


def _wait_for(
    what: str,
    deadline: float,
    ready: Callable[[], bool],
    daemon: tuple[str, int] | None = None,
) -> None:
    """Poll ready() until it is true; fail early if the daemon (name, pid) it waits on died."""
    while True:
        if ready():
            return
        if daemon is not None and not _alive(daemon[1]):
            raise RuntimeError(f"{daemon[0]} exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {START_TIMEOUT_S:.0f} s waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- helpers


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def _program(name: str) -> str:
    path = _which(name)
    if path is None:
        raise RuntimeError(f"{name} not found (run .ci/install-slurm.sh)")
    return path


def _client(
    layout: Layout, argv: Sequence[str], timeout: float = 15
) -> subprocess.CompletedProcess[str]:
    """Run a Slurm client command against this cluster; never raises on failure."""
    env = dict(os.environ)
    env.update(layout.client_env())
    try:
        return subprocess.run(
            [_program(argv[0]), *argv[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(list(argv), 124, "", f"timed out: {exc}")


def _run(
    argv: Sequence[str], timeout: float, log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a setup command; raise with its output if it fails."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    output = result.stdout + result.stderr
    if log is not None:
        log.write_text(output)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {output}")
    return result


def _log_tails(layout: Layout, lines: int = 15) -> str:
    """The last lines of every log, to explain a failed start."""
    parts = []
    for log in sorted(layout.logs.glob("*")) if layout.logs.is_dir() else []:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            parts.append(f"--- {log}\n" + "\n".join(tail))
    return "\n".join(parts)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    if args.action == "up":
        for key, value in start(args.workdir).items():
            print(f"export {key}={shlex.quote(value)}")
    else:
        stop(args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
