"""The real local stack for end-to-end tests: emulator with the infra template, Postgres, dev
chain with both registries, dev IPFS node, `chalice local` and the event-source runner.

Started once per session per backend, with fast retry settings (1 s backoff base, 10 s
visibility) so that retry and crash scenarios finish in seconds.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from devstack.anchoring import Anchored, anchor, new_funded_key
from devstack.emulator import Emulator
from devstack.process import PortReservation
from devstack.stack import ManagedProcess, Stack, StackOptions

API_KEY = "test-api-key"
FAST_SETTINGS = {
    "RETRY_BASE_SECONDS": "1",
    "API_KEY": API_KEY,
    "STUCK_QUEUED_SECONDS": "3",
    "HTTP_TIMEOUT_SECONDS": "5",
    # Short leases (renewed every second) so that a paused or killed worker's job comes back soon.
    "LEASE_SECONDS": "3",
    # The suite's stack reads the chain afresh for every result (its tests change the chain and
    # verify again); the result cache's own tests run a lane with the cache on.
    "RESULT_CACHE_SECONDS": "0",
}


def _backends() -> list[str]:
    chosen = os.environ.get("E2E_BACKENDS", "moto,localstack")
    return [b.strip() for b in chosen.split(",") if b.strip()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The stack fixture's LocalStack copies carry the `localstack` marker (`-m localstack` selects
    them; `make test` runs them beside the rest). A test marked `emulator_neutral` checks what the
    emulator takes no part in (the chain, the gateways, the database, the API's own answers): it
    runs on the first backend only, and its copies for the other backends are deselected (the
    summary counts them), not skipped."""
    for item in items:
        if getattr(item, "callspec", None) is not None and item.callspec.params.get("stack") == "localstack":
            item.add_marker(pytest.mark.localstack)
    first = _backends()[0] if _backends() else None
    dropped = [item for item in items if item.get_closest_marker("emulator_neutral")
               and getattr(item, "callspec", None) is not None
               and item.callspec.params.get("stack", first) != first]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


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

    def __init__(self, base_url: str, log_path: Path | None = None) -> None:
        self.base_url = base_url
        self.log_path = log_path  # the API process's log, for the APIs a test starts itself
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
        """Poll a job until `until(job)` (default: finished) and return it; fail the test when
        that state does not come within `timeout`."""
        return wait_for(lambda: self.get(f"/api/verification-jobs/{job_id}").json(),
                        until or (lambda job: job["status"] in ("completed", "failed")),
                        timeout, f"job {job_id}")

    def stats(self) -> dict:
        return self.get("/api/verification-jobs/stats").json()


def wait_for(fetch: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 60.0,
             what: str = "the awaited state") -> Any:
    """Call `fetch` until `until(value)` holds and return that value; an AssertionError naming
    `what` and the last value when it does not hold within `timeout`. Tests wait on states;
    the timeout only bounds how long a broken behaviour takes to fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:.0f}s; last seen: {value!r}")
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
    reservation = PortReservation()  # held until the process ends, so no one takes the port first
    port = reservation.port
    process = ManagedProcess(f"api-{port}", stack.api_argv(port), env, work_dir, True)
    process.start()
    try:
        extra = Api(f"http://127.0.0.1:{port}", process.log_path)
        deadline = time.monotonic() + 60
        while not _answers(extra.base_url + "/api/health"):
            assert process.alive() and time.monotonic() < deadline, f"extra API did not start: {process.log_path}"
            time.sleep(0.2)
        yield extra
    finally:
        process.stop()
        reservation.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code in (200, 503)
    except requests.RequestException:
        return False


def history_rows(db: psycopg.Connection, job_id: str) -> int:
    return db.execute("SELECT count(*) FROM verifications WHERE job_id = %s", (job_id,)).fetchone()[0]


def attempts(db: psycopg.Connection, job_id: str) -> int:
    """How many deliveries started the job (took its lease)."""
    return db.execute("SELECT attempts FROM verification_jobs WHERE id = %s", (job_id,)).fetchone()[0]


def lease_expiry(db: psycopg.Connection, job_id: str) -> Any:
    """When the job's lease runs out (None when no worker holds it)."""
    return db.execute("SELECT lease_expires_at FROM verification_jobs WHERE id = %s", (job_id,)).fetchone()[0]


def history_row(db: psycopg.Connection, job_id: str) -> dict[str, Any] | None:
    """A job's row of the verifications history table, as stored."""
    return db.cursor(row_factory=dict_row).execute(
        "SELECT file_hash, manifest_uri, registry_address, creator, recovered, status, chain_id"
        " FROM verifications WHERE job_id = %s", (job_id,)).fetchone()


def assert_error(response: requests.Response, status: int, code: str, field: str | None = None) -> dict:
    """The contract's error body: `error` (a message for humans), `code`, and `field` exactly
    when one field is at fault (the message then names it too); nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ({"error", "code", "field"} if field else {"error", "code"}), body
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    if field:
        assert body["field"] == field, body
        assert field in body["error"], body
    return body


def form(target: dict[str, str], data: bytes, name: str = "file.txt",
         content_type: str = "text/plain") -> dict[str, Any]:
    """requests kwargs for a multipart submission."""
    return {"data": target, "files": {"file": (name, data, content_type)}}


def aws_client(stack: Stack, service: str) -> Any:
    """A boto3 client of the stack's emulator."""
    return boto3.client(service, endpoint_url=stack.endpoints["aws_endpoint_url"], region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def queue_depth(sqs: Any, queue_url: str) -> dict[str, int]:
    """A queue's approximate counts: visible, in flight (not visible) and delayed messages."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return {"visible": int(attributes["ApproximateNumberOfMessages"]),
            "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
            "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"])}


EMPTY_QUEUE = {"visible": 0, "in_flight": 0, "delayed": 0}


# --- a gate: a loopback endpoint that holds requests until the test lets them through ---------

Answer = Callable[[BaseHTTPRequestHandler, bytes], None]
HOLD_LIMIT_SECONDS = 120  # a request nobody releases answers after this (no thread hangs forever)


@dataclass
class Arrival:
    """One request waiting at the gate."""

    path: str
    body: bytes
    passage: threading.Event

    def release(self) -> None:
        self.passage.set()


class Gate:
    """An HTTP endpoint on loopback (a manifest URL, an RPC URL) that holds every request until
    the test releases it. While a request is held its caller is provably in the middle of its
    work (a worker inside a job), a state the test can act on (send copies, kill the worker)
    without guessing at timings. `open()` lets held and later requests through at once;
    `answer` (replaceable) writes each response. Not done: TLS, chunked request bodies."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests_seen = 0
        self._holding = True
        self._lock = threading.Lock()
        self._arrivals: queue.Queue[Arrival] = queue.Queue()
        self._passages: list[threading.Event] = []
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                gate._handle(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # callers die mid-request on purpose
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        passage = threading.Event()
        with self._lock:
            self.requests_seen += 1
            if self._holding:
                self._passages.append(passage)
                self._arrivals.put(Arrival(handler.path, body, passage))
            else:
                passage.set()
        passage.wait(HOLD_LIMIT_SECONDS)
        self.answer(handler, body)

    def next_arrival(self, timeout: float = 60.0) -> Arrival:
        """The next request held at the gate; fails the test when none comes within `timeout`."""
        try:
            return self._arrivals.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no request reached the gate {self.url} in {timeout:.0f}s") from None

    def open(self) -> None:
        with self._lock:
            self._holding = False
            for passage in self._passages:
                passage.set()

    def close(self) -> None:
        self.open()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "Gate":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def respond(status: int, body: bytes = b"", content_type: str = "application/json",
            headers: dict[str, str] | None = None) -> Answer:
    """An answer that always sends `status` with `body` (and `headers`)."""
    def answer(handler: BaseHTTPRequestHandler, _request_body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def forward_to(url: str) -> Answer:
    """An answer that passes a JSON-RPC POST on to `url` (the dev chain) and relays its reply."""
    def answer(handler: BaseHTTPRequestHandler, request_body: bytes) -> None:
        upstream = requests.post(url, data=request_body, headers={"Content-Type": "application/json"}, timeout=30)
        respond(upstream.status_code, upstream.content)(handler, request_body)
    return answer


# --- a lane: the infra template deployed a second time, with its own API and runner -----------

@dataclass
class Lane:
    """A second deployment of infra/template.yaml on the stack's emulator (its own bucket, work
    queue, dead-letter queue and upload-events queue) with its own API and event-source runner,
    sharing the stack's database, chain and IPFS node. Queue figures seen through it (depths,
    stats, redrive counts) belong to the test that made it alone. Its schedules (sweeper,
    dead-letter reconciler) run only when asked for: they scan the whole shared database, and
    would re-send other tests' jobs to this lane's queue or forget their files."""

    name: str
    api: Api
    runner: ManagedProcess
    outputs: dict[str, str]
    sqs: Any

    def depth(self) -> dict[str, int]:
        return queue_depth(self.sqs, self.outputs["QueueUrl"])

    def dead_letter_depth(self) -> dict[str, int]:
        return queue_depth(self.sqs, self.outputs["DeadLetterQueueUrl"])

    def send_copy(self, job_id: str) -> None:
        """One more delivery of a job's message, as SQS's at-least-once delivery may make."""
        self.sqs.send_message(QueueUrl=self.outputs["QueueUrl"], MessageBody=json.dumps({"jobId": job_id}))

    def restart_runner(self) -> None:
        self.runner.restart()


NO_SCHEDULE_SECONDS = 7 * 24 * 3600  # a lane's schedules, when not asked for, never come round


@contextmanager
def own_lane(stack: Stack, work_dir: Path, visibility_seconds: int = 10, workers: int = 4,
             schedules: bool = False, env_overrides: dict[str, str] | None = None) -> Iterator[Lane]:
    """A Lane for as long as the block runs; with `schedules`, keep it to one test."""
    name = f"lane-{uuid.uuid4().hex[:8]}"
    emulator = Emulator(stack.endpoints["backend"], stack.endpoints["aws_endpoint_url"])
    parameters = {**stack.options.template_parameters, "QueueName": name, "DeadLetterQueueName": f"{name}-dlq",
                  "VisibilityTimeoutSeconds": str(visibility_seconds)}
    outputs = emulator.apply_template(parameters, stack_name=name)
    env = {**emulator.app_env(), "RUNNER_WORKERS": str(workers), **(env_overrides or {})}
    if not schedules:
        env["SCHEDULE_INTERVAL_SECONDS"] = str(NO_SCHEDULE_SECONDS)
    runner = ManagedProcess(f"runner-{name}", Stack.runner_argv(), {**stack.env, **env}, work_dir, True)
    runner.start()
    try:
        with extra_api(stack, env, work_dir) as lane_api:
            yield Lane(name, lane_api, runner, outputs, aws_client(stack, "sqs"))
    finally:
        runner.stop()
        emulator.client("cloudformation").delete_stack(StackName=name)
