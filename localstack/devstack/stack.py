"""The whole local stack in one object: emulator with the infra template applied, Postgres,
dev chain with the registries, dev IPFS node, the API under `chalice local`, and the
event-source runner. `make up` and the integration tests start the very same thing.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from devstack.anvil import DEFAULT_CHAIN_ID, Anvil
from devstack.emulator import start_emulator
from devstack.ipfs import DevIpfsNode
from devstack.postgres import start_postgres

log = logging.getLogger("devstack")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class StackOptions:
    backend: str = "moto"
    work_dir: Path = PROJECT_ROOT / ".stack"
    api_port: int = 0
    workers: int = 8  # Lambda-like concurrency of the worker; measured best on 2 cores (tests/bench)
    schedule_interval_seconds: float = 10.0
    # Settings for the API and the workers on top of the stack's own (e.g. RETRY_BASE_SECONDS).
    app_env: dict[str, str] = field(default_factory=dict)
    # Template parameters; local runs use a short visibility timeout so crashed jobs come back soon.
    template_parameters: dict[str, str] = field(default_factory=lambda: {"VisibilityTimeoutSeconds": "30"})
    quiet: bool = True  # children log to files under work_dir/logs instead of the terminal
    chain_id: int = DEFAULT_CHAIN_ID


class ManagedProcess:
    """A child process with its own process group and log file, stopped with its children."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, quiet: bool) -> None:
        self.name, self.argv, self.env, self.quiet = name, argv, env, quiet
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab") if self.quiet else None
        self.proc = subprocess.Popen(
            self.argv, cwd=PROJECT_ROOT, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT if self._log else None, start_new_session=True,
        )

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
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

    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)


class Stack:
    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.emulator: Any = None
        self.postgres: Any = None
        self.chain: Anvil | None = None
        self.ipfs: DevIpfsNode | None = None
        self.api: ManagedProcess | None = None
        self.runner: ManagedProcess | None = None
        self.endpoints: dict[str, Any] = {}
        self.env: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Stack":
        opts = self.options
        logs = opts.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            self._start_services()
            port = int(self.endpoints["api_url"].rsplit(":", 1)[1])
            self.api = ManagedProcess("api", self.api_argv(port), self.env, logs, opts.quiet)
            self.api.start()
            self.runner = ManagedProcess("runner", self._runner_argv(), self.env, logs, opts.quiet)
            self.runner.start()
            self._wait_for_api()
        except BaseException:
            self.stop()
            raise
        self._write_endpoints()
        return self

    def _start_services(self) -> None:
        opts = self.options
        started = time.monotonic()
        # moto runs as its own process: its state is per process, so a second emulator in the
        # same process (tests do that) would share it; and it keeps moto off this process's core.
        extra = {"in_process": False} if opts.backend == "moto" else {}
        self.emulator = start_emulator(opts.backend, opts.work_dir, **extra)
        outputs = self.emulator.apply_template(opts.template_parameters)
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            self.postgres = start_postgres(opts.work_dir / "pgdata")
            database_url = self.postgres.url
        from chalicelib.db.migrate import migrate

        migrate(database_url)
        self.chain = Anvil(opts.chain_id, log_dir=opts.work_dir / "logs").start()
        registries = self.chain.deploy_registries()
        self.ipfs = DevIpfsNode()
        self.ipfs.start()
        api_port = opts.api_port or free_port()
        self.env = {
            **os.environ,
            **self.emulator.aws_env(),
            **self.emulator.app_env(),  # bucket and queues, from the template's outputs
            "DATABASE_URL": database_url,
            "RPC_URL": self.chain.rpc_url,
            "IPFS_GATEWAY": self.ipfs.gateway_url,
            "ALLOW_PRIVATE_NETWORKS": "true",
            "REGISTRY_START_BLOCK": "0",
            "RUNNER_WORKERS": str(opts.workers),
            # The runner's worker threads share one process, hence one pool: a connection each.
            "DATABASE_POOL_MAX": str(max(opts.workers, 4)),
            "SCHEDULE_INTERVAL_SECONDS": str(opts.schedule_interval_seconds),
            "PYTHONUNBUFFERED": "1",
            **opts.app_env,
        }
        self.endpoints = {
            "api_url": f"http://127.0.0.1:{api_port}",
            "aws_endpoint_url": self.emulator.endpoint_url,
            "rpc_url": self.chain.rpc_url,
            "chain_id": self.chain.chain_id,
            "registry_address": registries["ContentRegistry"],
            "registry_addresses": registries,
            "ipfs_api_url": self.ipfs.api_url,
            "ipfs_gateway_url": self.ipfs.gateway_url,
            "database_url": database_url,
            "funded_private_key": self.chain.funded_private_keys[0],
            "backend": opts.backend,
            "upload_bucket": outputs["UploadBucketName"],
            "queue_url": outputs["QueueUrl"],
            "dead_letter_queue_url": outputs["DeadLetterQueueUrl"],
            "upload_events_queue_url": outputs["UploadEventsQueueUrl"],
        }
        log.info("services up in %.1fs", time.monotonic() - started)

    @staticmethod
    def api_argv(port: int) -> list[str]:
        """`chalice local` for this project, on loopback, with the `local` stage (no deployed settings)."""
        chalice = str(Path(sys.executable).parent / "chalice")
        return [chalice, "local", "--host", "127.0.0.1", "--port", str(port), "--stage", "local", "--no-autoreload"]

    def _runner_argv(self) -> list[str]:
        return [sys.executable, "-m", "devstack.runner", "--project-dir", str(PROJECT_ROOT)]

    def _wait_for_api(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.endpoints['api_url']}/api/health"
        last = "no answer"
        while time.monotonic() < deadline:
            for child in (self.api, self.runner):
                if not child.alive():
                    raise RuntimeError(f"the {child.name} process exited; see {child.log_path}")
            try:
                response = requests.get(url, timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except requests.RequestException as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError(f"the API did not become healthy in {timeout}s ({last}); see {self.api.log_path}")

    def _write_endpoints(self) -> None:
        path = self.options.work_dir / "endpoints.json"
        path.write_text(json.dumps(self.endpoints, indent=2) + "\n")

    def restart_runner(self) -> None:
        """Start a fresh runner (after a test killed the old one mid-job)."""
        self.runner.stop()
        self.runner.start()

    def stop(self) -> None:
        for child in (self.runner, self.api):
            if child:
                child.stop()
        for service in (self.ipfs, self.chain, self.postgres, self.emulator):
            if service:
                try:
                    service.stop()
                except Exception:
                    log.exception("stopping %s failed", type(service).__name__)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
