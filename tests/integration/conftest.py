"""The real local stack for end-to-end tests: emulator with the infra template, Postgres, dev
chain with both registries, dev IPFS node, `chalice local` and the event-source runner.

Started once per session per backend, with fast retry settings (1 s backoff base, 10 s
visibility) so that retry and crash scenarios finish in seconds.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from devstack.anchoring import Anchored, anchor, new_funded_key
from devstack.stack import ManagedProcess, Stack, StackOptions, free_port

API_KEY = "test-api-key"
FAST_SETTINGS = {
    "RETRY_BASE_SECONDS": "1",
    "API_KEY": API_KEY,
    "STUCK_QUEUED_SECONDS": "3",
    "HTTP_TIMEOUT_SECONDS": "5",
}


def _backends() -> list[str]:
    chosen = os.environ.get("E2E_BACKENDS", "moto,localstack")
    return [b.strip() for b in chosen.split(",") if b.strip()]


@pytest.fixture(scope="session", params=_backends())
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    backend = request.param
    # Not pytest's tmp_path: pytest makes its base 0700, which locks out the unprivileged user
    # that embedded Postgres runs as when the tests run as root.
    work_dir = Path(tempfile.mkdtemp(prefix=f"iid-stack-{backend}-"))
    options = StackOptions(
        backend=backend,
        work_dir=work_dir,
        workers=4,
        schedule_interval_seconds=2,
        app_env=FAST_SETTINGS,
        template_parameters={"VisibilityTimeoutSeconds": "10"},
    )
    with Stack(options) as running:
        yield running
    shutil.rmtree(work_dir, ignore_errors=True)


class Api:
    """A requests session bound to the stack's API URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def wait_for_job(self, job_id: str, until: Callable[[dict], bool] | None = None,
                     timeout: float = 60.0) -> dict:
        """Poll a job until `until(job)` (default: finished), returning the last job seen."""
        until = until or (lambda job: job["status"] in ("completed", "failed"))
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/api/verification-jobs/{job_id}").json()
            if until(job) or time.monotonic() > deadline:
                return job
            time.sleep(0.1)


@pytest.fixture(scope="session")
def api(stack: Stack) -> Api:
    return Api(stack.endpoints["api_url"])


@pytest.fixture(scope="session")
def creator_key(stack: Stack) -> str:
    return new_funded_key(stack.endpoints["rpc_url"], stack.endpoints["funded_private_key"])


@pytest.fixture(scope="session")
def anchored(stack: Stack, creator_key: str) -> Callable[..., Anchored]:
    """Anchor bytes on the stack's chain and IPFS node; registry defaults to the first layout."""
    endpoints = stack.endpoints

    def make(data: bytes, registry: str | None = None, **kwargs: Any) -> Anchored:
        return anchor(
            data,
            rpc_url=endpoints["rpc_url"],
            registry=registry or endpoints["registry_address"],
            ipfs_api_url=endpoints["ipfs_api_url"],
            creator_key=kwargs.pop("creator_key", creator_key),
            chain_id=endpoints["chain_id"],
            **kwargs,
        )

    return make


@pytest.fixture
def db(stack: Stack) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack.endpoints["database_url"], autocommit=True) as conn:
        yield conn


@contextmanager
def extra_api(stack: Stack, env_overrides: dict[str, str | None], work_dir: Path) -> Iterator[Api]:
    """A second `chalice local` on the same services with other settings (None removes one)."""
    env = {k: v for k, v in {**stack.env, **env_overrides}.items() if v is not None}
    port = free_port()
    process = ManagedProcess(f"api-{port}", stack.api_argv(port), env, work_dir, True)
    process.start()
    try:
        extra = Api(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while not _answers(extra.base_url + "/api/health"):
            assert process.alive() and time.monotonic() < deadline, f"extra API did not start: {process.log_path}"
            time.sleep(0.2)
        yield extra
    finally:
        process.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code in (200, 503)
    except requests.RequestException:
        return False


def history_rows(db: psycopg.Connection, job_id: str) -> int:
    return db.execute("SELECT count(*) FROM verifications WHERE job_id = %s", (job_id,)).fetchone()[0]


def form(target: dict[str, str], data: bytes, name: str = "file.txt",
         content_type: str = "text/plain") -> dict[str, Any]:
    """requests kwargs for a multipart submission."""
    return {"data": target, "files": {"file": (name, data, content_type)}}
