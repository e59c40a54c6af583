"""Embedded PostgreSQL 16 from the `pgserver` wheel (no system install), on loopback TCP.

pgserver's own `PostgresServer` listens on a unix socket only (`-h ""`), so this drives the
wheel's `initdb` and `pg_ctl` itself: any client can use `postgresql://postgres@127.0.0.1:<port>/postgres`.
Authentication is `trust` (local development only: never expose it beyond loopback).

As root it runs the way pgserver does: as the unprivileged `pgserver` user, who owns the data
directory, with the directories above it made traversable (o+rx). They must stay so: not under
pytest's `tmp_path`, whose base each session resets to 0700 (use `tempfile.mkdtemp()`).

    pg = start_postgres(Path(".stack/pgdata")); ... pg.url ...; pg.stop()
"""
from __future__ import annotations

import atexit
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from devstack.process import PortReservation

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DB_USER = "postgres"
DB_NAME = "postgres"
SYSTEM_USER = "pgserver"  # the unprivileged account pgserver itself uses when run as root
LOG_FILE_NAME = "postgres.log"


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        # importing pgserver computes a runtime directory and warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH  # the wheel's bin/ directory

    return Path(POSTGRES_BIN_PATH)


def _run(exe: str, args: list[str], *, user: str | None, cwd: Path, timeout: float) -> None:
    """Run one of the wheel's programs; RuntimeError with its output on failure. The output goes
    to a temporary file, not a pipe: `pg_ctl start` leaves a daemon behind that would hold it."""
    cmd = [str(_bin_dir() / exe), *args]
    identity: dict[str, object] = {}
    if user is not None:  # switch uid, gid and supplementary groups, not just the uid
        import pwd

        entry = pwd.getpwnam(user)
        identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    with tempfile.TemporaryFile("w+") as out:
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                  cwd=str(cwd), timeout=timeout, check=False, **identity)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{exe} timed out after {timeout}s: {shlex.join(cmd)}") from exc
        if proc.returncode != 0:
            out.seek(0)
            raise RuntimeError(f"{exe} failed with exit code {proc.returncode}: {shlex.join(cmd)}\n{out.read()}")


def _postmaster_pid(data_dir: Path) -> int | None:
    """The pid in postmaster.pid when it is a live postgres serving `data_dir`, else None.

    A pid file naming a dead process, or a live process that is something else (pid reuse
    after a crash or reboot), is stale: it is removed so that postgres can start again.
    """
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0].strip())
    except (FileNotFoundError, IndexError, ValueError, PermissionError):
        return None
    import psutil  # a dependency of pgserver

    try:
        proc = psutil.Process(pid)
        ours = proc.status() != psutil.STATUS_ZOMBIE and "postgres" in proc.name() \
            and str(data_dir) in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        ours = False
    if ours:
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def _prepare_for_system_user(data_dir: Path) -> str:
    """Let the unprivileged `pgserver` account run the binaries and own the data directory."""
    import pwd
    import stat

    _bin_dir()  # imports pgserver quietly
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    bin_dir = _bin_dir()
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bin_dir, read | execute)
    ensure_folder_permissions(bin_dir.parent / "lib", read)
    if (bin_dir.parent / "share").exists():
        ensure_folder_permissions(bin_dir.parent / "share", read)
    entry = pwd.getpwnam(SYSTEM_USER)
    if data_dir.stat().st_uid != entry.pw_uid or data_dir.stat().st_gid != entry.pw_gid:
        shutil.chown(data_dir, entry.pw_uid, entry.pw_gid)
        for path in data_dir.rglob("*"):
            os.lchown(path, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server started by `start_postgres`, listening on `host:port`."""

    data_dir: Path
    host: str
    port: int
    system_user: str | None = None
    user: str = DB_USER
    database: str = DB_NAME
    startup_seconds: float = 0.0
    _stopped: bool = field(default=False, repr=False)
    _owner_pid: int = field(default_factory=os.getpid, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def pid(self) -> int | None:
        return _postmaster_pid(self.data_dir)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown: open sessions are ended). Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self._stop_at_exit)
        pid = _postmaster_pid(self.data_dir)
        if pid is None:
            return
        try:
            _run("pg_ctl", ["-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
                 user=self.system_user, cwd=self.data_dir, timeout=timeout + 10)
        except RuntimeError:
            logger.warning("pg_ctl stop failed; killing postmaster %s", pid, exc_info=True)
            try:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
            except ProcessLookupError:
                pass

    def _stop_at_exit(self) -> None:
        if os.getpid() == self._owner_pid:  # not in a forked child that exits normally
            self.stop()


def start_postgres(
    data_dir: Path | str,
    *,
    port: int | None = None,
    host: str = DEFAULT_HOST,
    server_settings: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> EmbeddedPostgres:
    """Start PostgreSQL on `host:port` with its cluster in `data_dir` (created on first use).

    `port=None` picks a free port, held until the server binds it. `server_settings` are extra
    `-c name=value` options, e.g. `{"fsync": "off"}` for throwaway test clusters. A server left running in `data_dir` by an
    earlier process that died without stopping it is stopped first. The server is stopped when
    this interpreter exits, unless `stop()` was called before.
    """
    t0 = time.monotonic()
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    system_user = _prepare_for_system_user(data_dir) if os.geteuid() == 0 else None
    os.chmod(data_dir, 0o700)  # postgres refuses a group/world-readable data directory

    if not (data_dir / "PG_VERSION").exists():
        _run("initdb", ["-D", str(data_dir), "-U", DB_USER, "--auth=trust", "--encoding=UTF8",
                        "--locale=C", "--no-sync", "--no-instructions"],
             user=system_user, cwd=data_dir, timeout=timeout)

    leftover = _postmaster_pid(data_dir)
    if leftover is not None:
        logger.warning("stopping a PostgreSQL server (pid %s) left running in %s", leftover, data_dir)
        EmbeddedPostgres(data_dir, host, 0, system_user).stop()

    options = ["-h", host, "-k", ""]  # TCP on loopback only, no unix socket
    for name, value in (server_settings or {}).items():
        options += ["-c", f"{name}={value}"]
    # A port of our choosing is held until the server listens on it (postgres binds with SO_REUSEADDR).
    reservation = PortReservation(host) if port is None else None
    chosen = reservation.port if reservation else port
    try:
        _run("pg_ctl", ["-D", str(data_dir), "-l", str(data_dir / LOG_FILE_NAME), "-w", "-t", str(int(timeout)),
                        "-o", shlex.join([*options, "-p", str(chosen)]), "start"],
             user=system_user, cwd=data_dir, timeout=timeout + 10)
    except RuntimeError as exc:
        log_file = data_dir / LOG_FILE_NAME
        log_tail = log_file.read_text(errors="replace").splitlines()[-30:] if log_file.exists() else []
        raise RuntimeError(f"{exc}\n--- server log ---\n" + "\n".join(log_tail)) from exc
    finally:
        if reservation:
            reservation.close()
    server = EmbeddedPostgres(data_dir, host, chosen, system_user,
                              startup_seconds=time.monotonic() - t0)
    atexit.register(server._stop_at_exit)
    logger.info("PostgreSQL started at %s in %.2fs", server.url, server.startup_seconds)
    return server
