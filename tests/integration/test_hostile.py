"""Jobs against hostile nodes and manifest hosts, through the running stack (real HTTP, the
emulator's queues, the event-source runner's worker): each ends with a clear error or a bounded
result, the JSON-RPC calls it cost are printed and bounded, and the worker's peak memory stays
flat. Then what clients read about failures (no provider key from an RPC URL), and control
characters refused before anything is stored.

The hostile nodes pass what they do not spoil on to the dev chain, so the entry a job reads is
the real one of a registration made for the test.
"""
from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from chalicelib.config import Settings
from tests.hostile import drip, gzip_bomb, peak_rss_mib, send_bomb
from tests.integration.conftest import assert_error, aws_client

HUGE_HEAD = 2**40
JOB_WAIT_SECONDS = 180  # bounds how long a broken deadline takes to fail the test
BUDGET = Settings().rpc_call_budget  # the stack runs with the default
PROVIDER_KEY = "k3y-0f-the-provider"


class HostileNode:
    """A JSON-RPC endpoint on loopback with one hostile trait; other calls go to the dev chain.

    Traits: `logs_error` refuses every eth_getLogs; `huge_head` reports head 2**40 (blocks
    with timestamp = number, no logs, entry reads at "latest"); `bomb` answers every POST with
    a gzip bomb; `drip` sends every answer a byte at a time. Not done: TLS, GET."""

    def __init__(self, trait: str, chain_url: str) -> None:
        self.trait, self.chain_url = trait, chain_url
        self.calls = 0  # JSON-RPC calls received (a batch counts each), or POSTs for bomb/drip
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                node.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # callers hang up on purpose
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        if self.trait in ("bomb", "drip"):
            self.calls += 1
            (send_bomb if self.trait == "bomb" else drip)(handler)
            return
        batch = body if isinstance(body, list) else [body]
        self.calls += len(batch)
        answers = [{"jsonrpc": "2.0", "id": r["id"], **self.answer(r["method"], r["params"])} for r in batch]
        data = json.dumps(answers if isinstance(body, list) else answers[0]).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def answer(self, method: str, params: list) -> dict:
        if method == "eth_getLogs":
            if self.trait == "logs_error":
                return {"error": {"code": -32005, "message": "query exceeds the block range limit"}}
            return {"result": []}
        if self.trait == "huge_head":
            if method == "eth_getBlockByNumber":
                number = HUGE_HEAD if params[0] == "latest" else int(params[0], 16)
                return {"result": {"number": hex(number), "hash": "0x" + f"{number:064x}", "timestamp": hex(number)}}
            if method in ("eth_call", "eth_getCode"):
                params = [params[0], "latest"]  # the chain behind has no block 2**40
        upstream = requests.post(self.chain_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                                 timeout=30).json()
        return {k: v for k, v in upstream.items() if k in ("result", "error")}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class DrippingManifestHost:
    """Answers every GET one byte at a time (tests.hostile.drip)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                drip(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# What each job must end as: (status, errorCode or None, whether the proof may hold a tx).
EXPECTED = {
    "logs_error": ("completed", None),  # the registration tx is best-effort: a proof without it
    "huge_head": ("failed", "RPC_LIMIT_EXCEEDED"),  # REGISTRY_START_BLOCK=0 up to 2**40: the budget ends it
    "bomb": ("failed", "RPC_LIMIT_EXCEEDED"),
    "drip": ("failed", "RPC_UNAVAILABLE"),
    "manifest_drip": ("failed", "MANIFEST_FETCH_FAILED"),
}


def test_jobs_against_hostile_nodes_end_bounded_and_the_worker_keeps_its_memory(stack, api, anchored):
    gzip_bomb()  # made before any job starts
    item = anchored(os.urandom(64))
    chain = stack.endpoints["rpc_url"]
    nodes = {trait: HostileNode(trait, chain) for trait in ("logs_error", "huge_head", "bomb", "drip")}
    manifest_host = DrippingManifestHost()
    runner_pid = stack.runner.proc.pid
    peak_before = peak_rss_mib(runner_pid)
    try:
        base = {"registryAddress": stack.endpoints["registry_address"], "contentHash": item.content_hash}
        requests_by_case = {trait: {**base, "manifestURI": item.manifest_uri, "rpcUrl": node.url}
                            for trait, node in nodes.items()}
        requests_by_case["manifest_drip"] = {**base, "manifestURI": manifest_host.url + "/manifest.json", "rpcUrl": chain}
        started = time.monotonic()
        job_ids = {}
        for case, body in requests_by_case.items():
            submitted = api.post("/api/verification-jobs/proof", json=body)
            assert submitted.status_code == 202, submitted.text
            job_ids[case] = submitted.json()["jobId"]
        finished = {case: api.wait_for_job(job_id, timeout=JOB_WAIT_SECONDS) for case, job_id in job_ids.items()}
        elapsed = time.monotonic() - started
    finally:
        for node in nodes.values():
            node.close()
        manifest_host.close()
    growth = peak_rss_mib(runner_pid) - peak_before
    print(f"\nall five jobs finished in {elapsed:.1f} s; the worker's peak memory grew {growth:.1f} MiB")
    for case, job in finished.items():
        calls = nodes[case].calls if case in nodes else "-"
        print(f"  {case:14} {job['status']:9} {str(job['errorCode']):22} attempts {job['retryCount'] + 1}"
              f"  JSON-RPC calls {calls}  error {job['error']!r}")
        assert (job["status"], job["errorCode"]) == EXPECTED[case], job
    assert "tx" not in finished["logs_error"]["result"]
    assert nodes["logs_error"].calls <= BUDGET
    assert nodes["huge_head"].calls == BUDGET  # one attempt (permanent), stopped at the budget
    assert finished["bomb"]["retryCount"] == 0 and nodes["bomb"].calls == 1
    # Dripping hosts are cut at each call's deadline: one call per attempt, three attempts.
    assert finished["drip"]["error"] == "The RPC endpoint did not answer eth_getBlockByNumber in time."
    assert nodes["drip"].calls == Settings().max_retry_attempts
    assert finished["manifest_drip"]["error"] == "Could not fetch the manifest: timed out."
    assert growth < 50  # the bomb inflates to 400 MiB in a reader without a cap


def test_a_job_and_a_sync_answer_never_show_the_rpc_urls_path(stack, api):
    closed = f"http://127.0.0.1:1/v3/{PROVIDER_KEY}"  # nothing listens on port 1
    body = {"registryAddress": stack.endpoints["registry_address"], "contentHash": "0x" + "12" * 32,
            "manifestURI": "ipfs://QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", "rpcUrl": closed}
    fields = {k: v for k, v in body.items() if k != "contentHash"}
    answer = api.post("/api/verify", data=fields, files={"file": ("a.txt", b"a", "text/plain")})
    assert answer.status_code in (422, 502) and PROVIDER_KEY not in answer.text, answer.text
    submitted = api.post("/api/verification-jobs/verify", json=body)
    assert submitted.status_code == 202, submitted.text
    job = api.wait_for_job(submitted.json()["jobId"], timeout=JOB_WAIT_SECONDS)
    assert job["status"] == "failed" and PROVIDER_KEY not in json.dumps({k: job[k] for k in ("error", "result")}), job


def _inline_objects(stack) -> set[str]:
    listed = aws_client(stack, "s3").list_objects_v2(Bucket=stack.endpoints["upload_bucket"], Prefix="inline/")
    return {o["Key"] for o in listed.get("Contents", [])}


@pytest.mark.parametrize("file_name", [b"clip\x00.txt", b"clip\x1b[2J.txt", b"a" * 300])
def test_a_bad_file_name_is_a_400_and_nothing_is_stored(stack, api, file_name):
    boundary = "hostileboundary"
    fields = {"registryAddress": stack.endpoints["registry_address"],
              "manifestURI": "ipfs://QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"}
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'.encode() + file_name
                 + b'"\r\nContent-Type: text/plain\r\n\r\ncontent\r\n' + f"--{boundary}--\r\n".encode())
    before = _inline_objects(stack)
    response = api.post("/api/verification-jobs/verify", data=b"".join(parts),
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_error(response, 400, "VALIDATION_ERROR", "file")
    assert _inline_objects(stack) == before
