"""Jobs against hostile nodes and manifest hosts, through the running stack (real HTTP, the
emulator's queues, the event-source runner's worker): each ends with a clear error or a bounded
result, the JSON-RPC calls it cost are printed and bounded, and the worker's peak memory stays
flat. Then what clients read about failures (no provider key from an RPC URL), and control
characters refused before anything is stored.

The hostile chains are the dev chain behind a proxy that spoils one thing, so the entry a job
reads is the real one of a registration made for the test.
"""
from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chalicelib.config import Settings
from tests.hostile import drip, gzip_bomb, peak_rss_mib, send_bomb
from tests.integration.conftest import assert_error, aws_client
from tests.integration.deepchain import DeepChainProxy

pytestmark = pytest.mark.emulator_neutral  # hostile nodes and clients: the chain, gateways and the API's answers

HUGE_HEAD = 2**40
JOB_WAIT_SECONDS = 180  # bounds how long a broken deadline takes to fail the test
BUDGET = Settings().rpc_call_budget  # the stack runs with the default
PROVIDER_KEY = "k3y-0f-the-provider"


class HostileChain(DeepChainProxy):
    """The dev chain behind a proxy with one hostile trait: `logs_error` refuses every
    eth_getLogs; `huge_head` reports head 2**40 (its blocks have timestamp = number and no
    logs; the entry is read at the real head)."""

    def __init__(self, upstream: str, trait: str) -> None:
        super().__init__(upstream)
        self.trait = trait

    def _result(self, method: str, params: list[Any]) -> Any:
        if method == "eth_getLogs":
            if self.trait == "logs_error":
                raise RuntimeError("query exceeds the block range limit")  # a JSON-RPC error answer
            return []
        if self.trait == "huge_head":
            if method == "eth_getBlockByNumber":
                number = HUGE_HEAD if params[0] == "latest" else int(params[0], 16)
                return {"number": hex(number), "hash": "0x" + f"{number:064x}", "timestamp": hex(number)}
            if method in ("eth_call", "eth_getCode"):
                params = [params[0], "latest"]  # the chain behind has no block 2**40
        return super()._result(method, params)


class Misbehaving:
    """Answers every request (GET or POST: a manifest host or an RPC node) with a gzip bomb
    (`bomb`) or one byte at a time (`drip`); `requests_seen` counts them. Not done: TLS."""

    def __init__(self, trait: str) -> None:
        self.requests_seen = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                host.requests_seen += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                (send_bomb if trait == "bomb" else drip)(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # callers hang up on purpose
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# What each job must end as: (status, errorCode).
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
    proxies = {trait: HostileChain(chain, trait) for trait in ("logs_error", "huge_head")}
    hosts = {trait: Misbehaving(trait) for trait in ("bomb", "drip", "manifest_drip")}
    runner_pid = stack.runner.proc.pid
    base = {"registryAddress": stack.endpoints["registry_address"], "contentHash": item.content_hash,
            "manifestURI": item.manifest_uri}
    # One ordinary proof first, so that loading the verification core (web3, eth_account: about
    # 45 MiB) is not counted as what the hostile answers cost.
    warm = api.post("/api/verification-jobs/proof", json={**base, "rpcUrl": chain})
    assert warm.status_code == 202, warm.text
    assert api.wait_for_job(warm.json()["jobId"], timeout=JOB_WAIT_SECONDS)["status"] == "completed"
    peak_before = peak_rss_mib(runner_pid)
    try:
        cases = {case: {**base, "rpcUrl": server.url} for case, server in {**proxies, **hosts}.items()}
        cases["manifest_drip"] = {**base, "manifestURI": hosts["manifest_drip"].url + "/manifest.json", "rpcUrl": chain}
        started = time.monotonic()
        job_ids = {}
        for case, body in cases.items():
            submitted = api.post("/api/verification-jobs/proof", json=body)
            assert submitted.status_code == 202, submitted.text
            job_ids[case] = submitted.json()["jobId"]
        finished = {case: api.wait_for_job(job_id, timeout=JOB_WAIT_SECONDS) for case, job_id in job_ids.items()}
        elapsed = time.monotonic() - started
    finally:
        for server in (*proxies.values(), *hosts.values()):
            server.close()
    growth = peak_rss_mib(runner_pid) - peak_before
    calls = {**{case: p.counts.calls for case, p in proxies.items()},
             **{case: h.requests_seen for case, h in hosts.items()}}
    print(f"\nall five jobs finished in {elapsed:.1f} s; the worker's peak memory grew {growth:.1f} MiB")
    for case, job in finished.items():
        print(f"  {case:14} {job['status']:9} {str(job['errorCode']):22} attempts {job['retryCount'] + 1}"
              f"  requests {calls[case]}  error {job['error']!r}")
        assert (job["status"], job["errorCode"]) == EXPECTED[case], job
    assert "tx" not in finished["logs_error"]["result"] and calls["logs_error"] <= BUDGET
    assert calls["huge_head"] == BUDGET  # one attempt (permanent), stopped at the budget
    assert finished["bomb"]["retryCount"] == 0 and calls["bomb"] == 1
    # Dripping hosts are cut at each call's deadline: one request per attempt, three attempts.
    assert finished["drip"]["error"] == "The RPC endpoint did not answer eth_getBlockByNumber in time."
    assert calls["drip"] == calls["manifest_drip"] == Settings().max_retry_attempts
    assert finished["manifest_drip"]["error"] == "Could not fetch the manifest: timed out."
    assert growth < 25  # the bomb inflates to 400 MiB in a reader without a cap; capped, about 5


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
