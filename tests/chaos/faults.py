"""The faults of the chaos run: an HTTP fault proxy (in front of the chain's JSON-RPC endpoint and
of the IPFS gateway) and an injector that, at random times, kills the runner, kills the API,
restarts PostgreSQL, turns a proxy bad for a while, and sends copies of queued messages.

The proxy forwards GET and POST to its upstream and, while a fault is on, refuses (closes the
connection unanswered), stalls (holds the request past the workers' HTTP timeout, then closes),
answers 503, or is slow (forwards after a delay). What it does not do: TLS, chunked request
bodies, streaming (answers are read whole before they are relayed), keep-alive to the client.
"""
from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from devstack.postgres import start_postgres
from devstack.stack import Stack

from tests.loopback import send

PASS, REFUSE, STALL, ERROR, SLOW = "pass", "refuse", "stall", "5xx", "slow"


class FaultProxy:
    """`url` forwards to `upstream` (set once the stack runs) unless a fault `mode` is on."""

    def __init__(self, name: str, stall_seconds: float, slow_seconds: float) -> None:
        self.name, self.stall_seconds, self.slow_seconds = name, stall_seconds, slow_seconds
        self.upstream: str | None = None
        self.mode = PASS
        self.requests_faulted = 0
        self._lock = threading.Lock()
        self._session = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # refused and stalled callers hang up
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        mode = self.mode
        if mode != PASS:
            with self._lock:
                self.requests_faulted += 1
        if mode == REFUSE or self.upstream is None:
            handler.close_connection = True
            return
        if mode == STALL:
            time.sleep(self.stall_seconds)
            handler.close_connection = True
            return
        if mode == ERROR:
            send(handler, 503, b'{"error": "injected fault"}', "application/json")
            return
        if mode == SLOW:
            time.sleep(self.slow_seconds)
        path = handler.path if self.name == "gateway" else ""  # JSON-RPC: the job's URL path is only its marker
        try:
            upstream = self._session.request(handler.command, self.upstream + path, data=body or None, timeout=60,
                                             headers={"Content-Type": handler.headers.get("Content-Type", "")})
        except requests.RequestException:
            handler.close_connection = True
            return
        send(handler, upstream.status_code, upstream.content, upstream.headers.get("Content-Type", ""))

    def close(self) -> None:
        self.mode = PASS
        self._httpd.shutdown()
        self._httpd.server_close()
        self._session.close()


@dataclass
class Injector:
    """Acts at random times until `stop()`: one fault at a time, each kind at most once per
    `min_interval` seconds for process kills (the stack's supervisor gives up on a child that
    exits more than five times a minute). `counts` tells what was done, by kind."""

    stack: Stack
    rpc: FaultProxy
    gateway: FaultProxy
    sqs: Any
    work_queue_urls: list[str]
    recent_jobs: Callable[[], list[str]]  # ids of jobs accepted lately, for copies of their messages
    api_busy: Callable[[], bool]  # whether a client waits for an answer now (the API is killed then)
    gap_seconds: tuple[float, float] = (2.0, 8.0)
    fault_seconds: tuple[float, float] = (2.0, 6.0)
    min_interval: float = 15.0
    seed: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    copies_sent: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._stopping = threading.Event()
        self._last: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, name="chaos-injector", daemon=True)
        self.kinds: dict[str, Callable[[], None]] = {
            "runner SIGKILL": self._kill_runner,
            "API SIGKILL": self._kill_api,
            "PostgreSQL restart": self._restart_postgres,
            "RPC refuses": lambda: self._proxy_fault(self.rpc, REFUSE),
            "RPC stalls": lambda: self._proxy_fault(self.rpc, STALL),
            "RPC answers 5xx": lambda: self._proxy_fault(self.rpc, ERROR),
            "gateway fails": lambda: self._proxy_fault(self.gateway, ERROR),
            "gateway slow": lambda: self._proxy_fault(self.gateway, SLOW),
            "queue copies": self._copy_messages,
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=120)
        self.rpc.mode = self.gateway.mode = PASS

    def _loop(self) -> None:
        while not self._stopping.wait(self._random.uniform(*self.gap_seconds)):
            now = time.monotonic()
            ready = [kind for kind in self.kinds
                     if kind not in PROCESS_KILLS or now - self._last.get(kind, -1e9) >= self.min_interval]
            kind = self._random.choice(ready)
            self._last[kind] = now
            self.kinds[kind]()
            self.counts[kind] += 1

    # --- the faults --------------------------------------------------------------------------

    def _kill_runner(self) -> None:
        self.stack.runner.signal(signal.SIGKILL)  # the supervisor starts a new one

    def _kill_api(self) -> None:
        """Kill the API while a request is in flight, when one comes within 5 s: that request
        gets no answer. The supervisor starts the API again."""
        deadline = time.monotonic() + 5
        while not self.api_busy() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.stack.api.signal(signal.SIGKILL)

    def _restart_postgres(self) -> None:
        """Stop PostgreSQL (fast shutdown ends every session) and start it again on its port."""
        old = self.stack.postgres
        old.stop()
        self.stack.postgres = start_postgres(old.data_dir, port=old.port)

    def _proxy_fault(self, proxy: FaultProxy, mode: str) -> None:
        proxy.mode = mode
        self._stopping.wait(self._random.uniform(*self.fault_seconds))
        proxy.mode = PASS

    def _copy_messages(self) -> None:
        """Receive a batch from each work queue and send raw copies of it back: the copies are
        duplicates now, and the received originals come back late, after their visibility
        timeout. The runner usually takes a message first, so copies of the messages of a few
        jobs accepted lately go in too, twice each."""
        for url in self.work_queue_urls:
            received = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in received.get("Messages", []):
                self.sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
                self.copies_sent += 1
        recent = self.recent_jobs()
        for job_id in self._random.sample(recent, min(5, len(recent))):
            for _ in range(2):
                send_copy(self.sqs, self._random.choice(self.work_queue_urls), job_id)
                self.copies_sent += 1


PROCESS_KILLS = {"runner SIGKILL", "API SIGKILL", "PostgreSQL restart"}


def send_copy(sqs: Any, queue_url: str, job_id: str) -> None:
    """A late copy of a job's message, as SQS's at-least-once delivery may make long after."""
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"jobId": job_id}))
