"""The stack's child processes: loopback ports held for them until they bind, each child in its
own process group with a log file, and a supervisor that starts a dead child again, the way
Lambda's poller survives a crashed invocation, until a child keeps dying.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO

log = logging.getLogger("devstack")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nothing listens on at this moment (for addresses meant to be dead)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortReservation:
    """A loopback port held by a bound, never-listening socket with SO_REUSEADDR.

    While it is held the kernel hands the port to no other ``bind(port 0)`` nor outgoing
    connection, yet a child that binds it with SO_REUSEADDR (as HTTPServer, werkzeug, PostgreSQL
    and LocalStack's gateway do) gets it: so the port cannot be lost between choosing it and the
    child's bind. Close it once the child listens, or keep it to restart the child on the port.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()


class ManagedProcess:
    """A child process with its own process group and log file, stopped with its children."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 quiet: bool = True) -> None:
        self.name, self.argv, self.env, self.quiet = name, argv, env, quiet
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.RLock()  # start/stop/restart against the supervisor
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        with self.lock:
            self._log = open(self.log_path, "ab") if self.quiet else None
            self.proc = subprocess.Popen(
                self.argv, cwd=PROJECT_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT if self._log else None, start_new_session=True,
            )

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        with self.lock:
            if self.proc and self.proc.poll() is None:
                self.signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.signal(signal.SIGKILL)
                    self.proc.wait(timeout)
            if self._log:
                self._log.close()
                self._log = None

    def restart(self) -> None:
        with self.lock:
            self.stop()
            self.start()

    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)


class Supervisor:
    """Starts a child again when it exits; gives up when one exits more than ``max_restarts``
    times within ``window_seconds`` (then ``failed`` is set and ``failure`` says which and where
    its log is)."""

    def __init__(self, children: list[ManagedProcess], max_restarts: int = 5, window_seconds: float = 60.0,
                 interval_seconds: float = 0.2) -> None:
        self.children = children
        self.max_restarts, self.window_seconds, self.interval_seconds = max_restarts, window_seconds, interval_seconds
        self.failed = threading.Event()
        self.failure: str | None = None
        self._stopping = threading.Event()
        self._exits = {child.name: deque[float]() for child in children}
        self._thread = threading.Thread(target=self._watch, name="devstack-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _watch(self) -> None:
        while not self._stopping.wait(self.interval_seconds):
            for child in self.children:
                with child.lock:
                    if self._stopping.is_set() or child.proc is None or child.alive():
                        continue
                    if not self._restart(child):
                        return

    def _restart(self, child: ManagedProcess) -> bool:
        code = child.proc.returncode if child.proc else None
        exits, now = self._exits[child.name], time.monotonic()
        exits.append(now)
        while exits and now - exits[0] > self.window_seconds:
            exits.popleft()
        if len(exits) > self.max_restarts:
            self.failure = (f"the {child.name} process exited {len(exits)} times within "
                            f"{self.window_seconds:.0f}s (last exit code {code}); giving up: see {child.log_path}")
            log.error(self.failure)
            self.failed.set()
            return False
        log.warning("the %s process exited with code %s; starting it again (log: %s)", child.name, code, child.log_path)
        child.restart()
        return True
