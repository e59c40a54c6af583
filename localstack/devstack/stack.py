"""The whole local stack in one object: emulator with the infra template applied, Postgres,
dev chain with the registries, dev IPFS node, the API under `chalice local`, and the
event-source runner, both supervised. `make up` and the integration tests start the very same thing.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from devstack.anvil import DEFAULT_CHAIN_ID, Anvil
from devstack.emulator import Emulator, start_emulator
from devstack.ipfs import DevIpfsNode
from devstack.postgres import EmbeddedPostgres, start_postgres
from devstack.process import PROJECT_ROOT, ManagedProcess, PortReservation, Supervisor, free_port

__all__ = ["PROJECT_ROOT", "ManagedProcess", "Stack", "StackOptions", "free_port"]
log = logging.getLogger("devstack")


@dataclass
class StackOptions:
    backend: str = "moto"
    work_dir: Path = PROJECT_ROOT / ".stack"
    api_port: int = 0  # 0: a free port, held for the API (and its restarts) while the stack runs
    workers: int = 8  # Lambda-like concurrency of the worker; measured best on 2 cores (tests/bench)
    schedule_interval_seconds: float = 10.0
    # Settings for the API and the workers on top of the stack's own (e.g. RETRY_BASE_SECONDS).
    app_env: dict[str, str] = field(default_factory=dict)
    # Template parameters; local runs use a short visibility timeout so crashed jobs come back soon.
    template_parameters: dict[str, str] = field(default_factory=lambda: {"VisibilityTimeoutSeconds": "30"})
    quiet: bool = True  # children log to files under work_dir/logs instead of the terminal
    chain_id: int = DEFAULT_CHAIN_ID


class Stack:
    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.emulator: Emulator | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.chain: Anvil | None = None
        self.ipfs: DevIpfsNode | None = None
        self.api: ManagedProcess | None = None
        self.runner: ManagedProcess | None = None
        self.supervisor: Supervisor | None = None
        self.endpoints: dict[str, Any] = {}
        self.env: dict[str, str] = {}
        self._api_port: PortReservation | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Stack":
        opts = self.options
        logs = opts.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            self._start_services()
            log.info("services up in %.1fs", time.monotonic() - started)
            port = int(self.endpoints["api_url"].rsplit(":", 1)[1])
            self.api = ManagedProcess("api", self.api_argv(port), self.env, logs, opts.quiet)
            self.runner = ManagedProcess("runner", self.runner_argv(), self.env, logs, opts.quiet)
            self.api.start()
            self._wait_for_api()
            # After the API is up: the two would only share the two cores importing the app.
            self.runner.start()
            self.supervisor = Supervisor([self.api, self.runner])
            self.supervisor.start()
        except BaseException:
            self.stop()
            raise
        self._write_endpoints()
        log.info("API healthy in %.1fs", time.monotonic() - started)
        return self

    def _start_services(self) -> None:
        """Emulator, database and chain start side by side; each needs only itself."""
        opts = self.options
        self.ipfs = DevIpfsNode()
        self.ipfs.start()
        with ThreadPoolExecutor(3, thread_name_prefix="devstack-start") as pool:
            aws = pool.submit(self._start_emulator)
            database = pool.submit(self._start_database)
            chain = pool.submit(self._start_chain)
            outputs, database_url, registries = aws.result(), database.result(), chain.result()
        if opts.api_port:
            api_port = opts.api_port
        else:
            self._api_port = PortReservation()
            api_port = self._api_port.port
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
            # Every local client is 127.0.0.1: the rate limit stays off unless asked for.
            "RATE_LIMIT_PER_MINUTE": os.environ.get("RATE_LIMIT_PER_MINUTE") or "0",
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
            "proof_queue_url": outputs["ProofQueueUrl"],
            "proof_dead_letter_queue_url": outputs["ProofDeadLetterQueueUrl"],
            "large_queue_url": outputs["LargeQueueUrl"],
            "large_dead_letter_queue_url": outputs["LargeDeadLetterQueueUrl"],
            "upload_events_queue_url": outputs["UploadEventsQueueUrl"],
            "upload_events_dead_letter_queue_url": outputs["UploadEventsDeadLetterQueueUrl"],
        }

    def _start_emulator(self) -> dict[str, str]:
        self.emulator = start_emulator(self.options.backend, self.options.work_dir)
        return self.emulator.apply_template(self.options.template_parameters)

    def _start_database(self) -> str:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            self.postgres = start_postgres(self.options.work_dir / "pgdata")
            database_url = self.postgres.url
        from chalicelib.db.migrate import migrate

        migrate(database_url)
        return database_url

    def _start_chain(self) -> dict[str, str]:
        self.chain = Anvil(self.options.chain_id, log_dir=self.options.work_dir / "logs").start()
        return self.chain.deploy_registries()

    @staticmethod
    def api_argv(port: int) -> list[str]:
        """`chalice local` for this project, on loopback, with the `local` stage (no deployed settings)."""
        chalice = str(Path(sys.executable).parent / "chalice")
        return [chalice, "local", "--host", "127.0.0.1", "--port", str(port), "--stage", "local", "--no-autoreload"]

    @staticmethod
    def runner_argv() -> list[str]:
        """The event-source runner for this project, with the settings of its environment."""
        return [sys.executable, "-m", "devstack.runner", "--project-dir", str(PROJECT_ROOT)]

    def _wait_for_api(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.endpoints['api_url']}/api/health"
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.api.alive():
                raise RuntimeError(f"the API process exited; see {self.api.log_path}")
            try:
                response = requests.get(url, timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except requests.RequestException as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"the API did not become healthy in {timeout}s ({last}); see {self.api.log_path}")

    def _write_endpoints(self) -> None:
        path = self.options.work_dir / "endpoints.json"
        path.write_text(json.dumps(self.endpoints, indent=2) + "\n")

    def restart_runner(self) -> None:
        """Start a fresh runner now (the supervisor would also do it once it sees the old one dead)."""
        self.runner.restart()

    def stop(self) -> None:
        if self.supervisor:
            self.supervisor.stop()
        for child in (self.runner, self.api):
            if child:
                child.stop()
        if self._api_port:
            self._api_port.close()
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
