"""The chaos run: JOBS jobs through the HTTP API of a local stack of its own while faults keep
happening, then every job checked against what it should be.

Content is anchored first (registered: OK; never registered: FAIL; revoked: FAIL with
`onchain.revoked`). Jobs (verify and proof, inline and presigned uploads) name the RPC fault
proxy as their `rpcUrl`, with a path of their own (`/c/<marker>`) that the proxy ignores: the
marker finds a job by listing when its submission got no answer. The stack's `IPFS_GATEWAY` is
the gateway fault proxy. After the last submission the faults stop; jobs that failed with a
transient code after all their receives are counted, then redriven and retried until they
complete, so that a job is lost only when it never settles at all.

Talks to the stack through its public surfaces only: the HTTP API, the work queue URLs of its
endpoints (every `*queue_url` but the dead-letter and upload-events queues, so a second work
queue is one more URL), the database for the history rows, and the stack's process handles.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
import psycopg
import requests

from devstack.anchoring import Anchored, anchor, new_funded_key, revoke_content
from tests.bench._common import BenchStack, bench_stack, load_line, say
from tests.chaos.faults import FaultProxy, Injector, send_copy

API_KEY = "chaos-api-key"
JOBS = "/api/verification-jobs"
SETTLED = ("completed", "failed")
TRANSIENT_CODES = {"MANIFEST_FETCH_FAILED", "DNS_RESOLUTION_FAILED", "RPC_UNAVAILABLE", "RPC_ERROR",
                   "STORAGE_UNAVAILABLE", "DATABASE_UNAVAILABLE", "QUEUE_UNAVAILABLE", "INTERNAL_ERROR",
                   "DEAD_LETTERED"}
HTTP_TIMEOUT_SECONDS = 3  # the workers' timeout for RPC and gateway calls; a stall outlasts it
# Fast retries (as the integration suite's stack) so that a job's three receives fit in a fault.
APP_ENV = {"RETRY_BASE_SECONDS": "1", "HTTP_TIMEOUT_SECONDS": str(HTTP_TIMEOUT_SECONDS), "STUCK_QUEUED_SECONDS": "5",
           "RESULT_CACHE_SECONDS": "0"}  # every job reads chain and gateway itself, through the faults
VISIBILITY_SECONDS = "10"
KINDS = {"registered": "OK", "unregistered": "FAIL", "revoked": "FAIL"}


@dataclass
class Content:
    kind: str  # registered, unregistered, revoked
    data: bytes
    anchored: Anchored


@dataclass
class Submission:
    """One job the client meant to create, and what came of its requests."""

    content: Content
    job_type: str  # verify, proof
    upload: str  # inline, presigned
    markers: list[str] = field(default_factory=list)  # one per attempt whose answer never came
    job_id: str | None = None
    orphaned_upload: bool = False  # accepted without an answer: no upload URL to send the file to

    @property
    def expected(self) -> str:
        return KINDS[self.content.kind]


@dataclass
class Tally:
    """What the clients went through, for the table."""

    unanswered: int = 0  # requests that got no answer (API killed mid-request, or timed out)
    found_by_listing: int = 0  # of those, the ones that had been accepted
    refused_503: int = 0  # "try again" answers while a dependency was down
    server_errors: Counter[str] = field(default_factory=Counter)  # other 5xx, by status and code
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class Client:
    """The HTTP API as a careful client uses it: a request that got no answer is not repeated
    blindly (it may have been accepted) but repeated under a new marker, and the old marker is
    looked up by listing later; `503` (nothing was changed) is repeated as it is."""

    def __init__(self, api_url: str, rpc_proxy_url: str, registry: str, tally: Tally) -> None:
        self.api_url, self.rpc_proxy_url, self.registry, self.tally = api_url, rpc_proxy_url, registry, tally
        self.local = threading.local()
        self.in_flight = 0  # requests waiting for the API's answer
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.headers["x-api-key"] = API_KEY
        return self.local.session

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response | None:
        """The answer, or None when the request got none. Refused connections (the API is
        restarting) and 503s are waited out: they did nothing."""
        kwargs.setdefault("timeout", 30)
        while True:
            try:
                with self._lock:
                    self.in_flight += 1
                try:
                    response = self.session.request(method, self.api_url + path, **kwargs)
                finally:
                    with self._lock:
                        self.in_flight -= 1
            except requests.ConnectionError as exc:
                if "Connection refused" in str(exc) or "NewConnectionError" in str(exc):
                    time.sleep(0.5)
                    continue
                self.tally.add("unanswered")
                return None
            except requests.Timeout:
                self.tally.add("unanswered")
                return None
            if response.status_code in (429, 503):
                self.tally.add("refused_503")
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status_code >= 500:
                code = _json(response).get("code", "")
                with self.tally.lock:
                    self.tally.server_errors[f"{response.status_code} {code}".strip()] += 1
                return None
            return response

    def submit(self, submission: Submission) -> None:
        """Create the job, under a fresh marker per attempt, until an answer says it exists."""
        while submission.job_id is None:
            marker = uuid.uuid4().hex
            target = {"registryAddress": self.registry, "manifestURI": submission.content.anchored.manifest_uri,
                      "rpcUrl": f"{self.rpc_proxy_url}/c/{marker}"}
            if submission.upload == "inline":
                response = self.request("POST", f"{JOBS}/{submission.job_type}", data=target,
                                        files={"file": ("content.txt", submission.content.data, "text/plain")})
                expected_status = 202
            else:
                response = self.request("POST", f"{JOBS}/uploads", json={
                    **target, "type": submission.job_type, "filename": "content.txt", "contentType": "text/plain",
                    "size": len(submission.content.data)})
                expected_status = 201
            if response is None:
                submission.markers.append(marker)
                continue
            if response.status_code != expected_status:
                raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
            body = response.json()
            if submission.upload == "presigned":
                self._upload(body["upload"], submission.content.data)
            submission.job_id = body["jobId"]

    @staticmethod
    def _upload(upload: dict[str, Any], data: bytes) -> None:
        """The presigned POST straight to the bucket (fields first, file last), retried: S3
        takes the same object again."""
        for attempt in range(5):
            try:
                response = requests.post(upload["url"], data=upload["fields"],
                                         files={"file": ("content.txt", data, "text/plain")}, timeout=30)
                if response.status_code < 300:
                    return
            except requests.RequestException:
                pass
            time.sleep(1 + attempt)
        raise RuntimeError("the presigned upload failed five times")

    def all_jobs(self) -> dict[str, dict[str, Any]]:
        """Every job of the stack by id, through the listing (newest first, 100 a page)."""
        jobs: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            response = self.request("GET", JOBS, params={"limit": 100, "offset": offset})
            if response is None:
                continue
            page = response.json()["jobs"]
            jobs.update((job["id"], job) for job in page)
            if len(page) < 100:
                return jobs
            offset += 100


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# --- the run -----------------------------------------------------------------------------------

def work_queue_urls(endpoints: dict[str, Any]) -> list[str]:
    """The stack's work queues, one per job type: every queue but the dead-letter queues and the
    upload-events queue (and its dead-letter queue)."""
    return [url for name, url in endpoints.items()
            if name.endswith("queue_url") and "dead_letter" not in name and not name.startswith("upload_events")]


def anchor_contents(endpoints: dict[str, Any], per_kind: int) -> list[Content]:
    """Fresh content of each kind on the stack's chain and IPFS node (directly, no faults)."""
    creator = new_funded_key(endpoints["rpc_url"], endpoints["funded_private_key"])
    contents = []
    for kind in KINDS:
        for i in range(per_kind):
            data = f"chaos {kind} {i} {uuid.uuid4()}".encode()
            anchored = anchor(data, rpc_url=endpoints["rpc_url"], registry=endpoints["registry_address"],
                              ipfs_api_url=endpoints["ipfs_api_url"], creator_key=creator,
                              chain_id=endpoints["chain_id"], register=kind != "unregistered")
            if kind == "revoked":
                revoke_content(endpoints["rpc_url"], endpoints["registry_address"], creator, anchored.content_hash)
            contents.append(Content(kind, data, anchored))
    return contents


def verdict(job: dict[str, Any]) -> tuple[str | None, bool | None]:
    """(status OK/WARN/FAIL, onchain.revoked) of a completed job's verify result or proof."""
    result = job.get("result") or {}
    status = result.get("status") or (result.get("verification") or {}).get("status")
    return status, (result.get("onchain") or {}).get("revoked")


def wait_settled(client: Client, ids: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    """The jobs once all of `ids` are completed or failed, or when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 15
    while True:
        jobs = client.all_jobs()
        pending = [i for i in ids if jobs.get(i, {}).get("status") not in SETTLED]
        if not pending or time.monotonic() > deadline:
            return jobs
        if time.monotonic() > next_report:
            next_report += 15
            say(f"  waiting for {len(pending)} jobs: {dict(Counter(jobs.get(i, {}).get('status') for i in pending))}")
        time.sleep(1)


def history_counts(database_url: str) -> Counter[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT job_id::text, count(*) FROM verifications GROUP BY job_id").fetchall()
    return Counter({job_id: count for job_id, count in rows})


def queues_drained(sqs: Any, urls: list[str], timeout: float) -> None:
    """Wait until the work queues hold nothing, visible, in flight or delayed."""
    deadline = time.monotonic() + timeout
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
    while time.monotonic() < deadline:
        attributes = [sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"] for url in urls]
        if all(int(a.get(n, 0)) == 0 for a in attributes for n in names):
            return
        time.sleep(1)


def redrive_and_retry(client: Client, failed: list[str]) -> tuple[int, int]:
    """Move the dead-letter queue back, then retry each job still failed; returns (messages
    redriven, jobs retried)."""
    moved = 0
    while True:
        response = client.request("POST", f"{JOBS}/dead-letter/redrive")
        if response is None:
            continue
        body = response.json()
        moved += body["moved"]
        # API.md promises `remaining`; until the API answers it, an empty batch ends the loop.
        if body.get("remaining", body["moved"]) == 0:
            break
    retried = 0
    for job_id in failed:
        response = client.request("POST", f"{JOBS}/{job_id}/retry")
        if response is not None and response.status_code == 202:
            retried += 1
    return moved, retried


@dataclass
class Outcome:
    jobs: int
    lost: int
    duplicated: int
    wrong: int
    lines: list[str]

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.wrong == 0


def _with_unanswered(client: Client, submissions: list[Submission],
                     tally: Tally) -> tuple[list[Submission], list[Submission]]:
    """The jobs to check: every submission's, plus those of attempts that got no answer but had
    been accepted (found by their marker); and apart, the accepted presigned uploads whose client
    never got the upload URL (they can only expire)."""
    listed = client.all_jobs()
    by_marker = {job["rpcUrl"].rsplit("/", 1)[1]: job for job in listed.values() if job.get("rpcUrl")}
    found = [Submission(s.content, s.job_type, s.upload, job_id=by_marker[m]["id"],
                        orphaned_upload=s.upload == "presigned" and by_marker[m]["status"] == "awaiting_upload")
             for s in submissions for m in s.markers if m in by_marker]
    tally.found_by_listing = len(found)
    return [s for s in submissions + found if not s.orphaned_upload], [s for s in found if s.orphaned_upload]


def chaos(stack: BenchStack, rpc: FaultProxy, gateway: FaultProxy, jobs: int, clients: int, rate: float,
          seed: int, settle_seconds: float) -> Outcome:
    endpoints = stack.endpoints
    rng = random.Random(seed)
    sqs = boto3.client("sqs", endpoint_url=endpoints["aws_endpoint_url"], region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    queues = work_queue_urls(endpoints)
    rpc.upstream, gateway.upstream = endpoints["rpc_url"], endpoints["ipfs_gateway_url"]
    contents = anchor_contents(endpoints, per_kind=max(2, min(10, jobs // 50)))
    submissions: list[Submission] = []  # appended in the order the clients start them
    planned = [Submission(rng.choice(contents), rng.choice(["verify", "proof"]), rng.choice(["inline", "presigned"]))
                   for _ in range(jobs)]
    tally = Tally()
    client = Client(endpoints["api_url"], rpc.url, endpoints["registry_address"], tally)
    injector = Injector(stack.stack, rpc, gateway, sqs, queues,
                        recent_jobs=lambda: [s.job_id for s in submissions[-40:] if s.job_id],
                        api_busy=lambda: client.in_flight > 0, seed=seed)

    say(f"{jobs} jobs, {len(contents)} anchored contents, {clients} clients; faults on")
    started = time.monotonic()
    injector.start()
    try:
        def paced(numbered: tuple[int, Submission]) -> None:
            """Submissions spread over the run at `rate` a second, so that faults meet them."""
            time.sleep(max(0.0, started + numbered[0] / rate - time.monotonic()))
            submissions.append(numbered[1])
            client.submit(numbered[1])

        with ThreadPoolExecutor(clients, thread_name_prefix="chaos-client") as pool:
            list(pool.map(paced, enumerate(planned)))
        submitted_at = time.monotonic()
        say(f"submitted in {submitted_at - started:.0f}s; faults so far: {dict(injector.counts)}")
        tracked, orphaned = _with_unanswered(client, submissions, tally)
        ids = {s.job_id for s in tracked}
        # Faults go on while the jobs are worked on, until every one has settled once.
        first = wait_settled(client, ids, settle_seconds)
    finally:
        injector.stop()
    first_settled_at = time.monotonic()
    say(f"settled once {first_settled_at - submitted_at:.0f}s after the last submission; faults off: "
        f"{dict(injector.counts)}")
    failed_first = Counter(first[i].get("errorCode") or "?" for i in ids if first.get(i, {}).get("status") == "failed")
    retries_first = sum(first[i].get("retryCount", 0) for i in ids if i in first)

    # Faults are over: whatever failed on a transient code must now complete.
    redriven = retried = 0
    final = first
    for _ in range(3):
        again = [i for i in ids if final.get(i, {}).get("status") == "failed"
                 and final[i].get("errorCode") in TRANSIENT_CODES]
        if not again:
            break
        moved, retried_now = redrive_and_retry(client, again)
        redriven, retried = redriven + moved, retried + retried_now
        final = wait_settled(client, ids, settle_seconds)
    settled_at = time.monotonic()

    # Late copies of every completed job's message; nothing may change and no row may be added.
    snapshot = {i: final[i] for i in ids if final.get(i, {}).get("status") == "completed"}
    for n, job_id in enumerate(snapshot):
        send_copy(sqs, queues[n % len(queues)], job_id)
    queues_drained(sqs, queues, settle_seconds)
    after = client.all_jobs()
    rows = history_counts(endpoints["database_url"])

    lost = [i for i in ids if after.get(i, {}).get("status") not in SETTLED]
    changed = [i for i in snapshot if {k: v for k, v in after[i].items() if k != "updatedAt"}
               != {k: v for k, v in snapshot[i].items() if k != "updatedAt"}]
    duplicated = {i for i in ids if rows[i] > 1} | set(changed)
    wrong: list[str] = []
    for submission in tracked:
        job = after.get(submission.job_id, {})
        if job.get("status") != "completed":
            if job.get("status") == "failed":
                wrong.append(submission.job_id)  # failed after the faults were over, or on a permanent code
            continue
        status, revoked = verdict(job)
        if status != submission.expected or rows[submission.job_id] != 1 \
                or (submission.content.kind == "revoked") != bool(revoked):
            wrong.append(submission.job_id)

    elapsed = settled_at - started
    completed = sum(1 for i in ids if after.get(i, {}).get("status") == "completed")
    lines = [
        f"jobs submitted                  {len(submissions)} (verify {sum(s.job_type == 'verify' for s in submissions)}, "
        f"proof {sum(s.job_type == 'proof' for s in submissions)}; inline {sum(s.upload == 'inline' for s in submissions)}, "
        f"presigned {sum(s.upload == 'presigned' for s in submissions)})",
        "content                         " + ", ".join(f"{k} {sum(s.content.kind == k for s in submissions)}" for k in KINDS),
        f"requests without an answer      {tally.unanswered} (accepted, found by listing: {tally.found_by_listing}; "
        f"orphaned uploads, never given their URL: {len(orphaned)})",
        f"'try again' answers (503/429)   {tally.refused_503}",
        f"other 5xx answers               {sum(tally.server_errors.values())} {dict(tally.server_errors) or ''}".rstrip(),
        f"jobs tracked                    {len(ids)}",
        f"completed                       {completed}",
        f"failed under faults, by code    {sum(failed_first.values())} {dict(failed_first) or ''}".rstrip(),
        f"  afterwards: redriven from the dead-letter queue {redriven}, retried {retried}",
        f"lost (never settled)            {len(lost)}",
        f"duplicated                      {len(duplicated)} (history rows > 1: {sum(rows[i] > 1 for i in ids)}; "
        f"result changed after completion: {len(changed)})",
        f"wrong                           {len(wrong)}",
        "faults injected                 " + (", ".join(f"{k} {v}" for k, v in sorted(injector.counts.items())) or "none"),
        f"  requests faulted at proxies   RPC {rpc.requests_faulted}, gateway {gateway.requests_faulted}; "
        f"queue copies sent {injector.copies_sent}, late copies after completion {len(snapshot)}",
        f"retries (receives after a transient failure) {retries_first}",
        f"time to submit                  {submitted_at - started:.1f}s",
        f"time to settle after last submission {first_settled_at - submitted_at:.1f}s "
        f"(with redrive: {settled_at - submitted_at:.1f}s)",
        f"throughput                      {completed / elapsed:.1f} jobs/s over {elapsed:.0f}s",
    ]
    for name, values in (("lost", lost), ("duplicated", sorted(duplicated)), ("wrong", wrong)):
        for job_id in values[:10]:
            job = after.get(job_id, {})
            lines.append(f"  {name}: {job_id} {job.get('status')} {job.get('errorCode')} {verdict(job)} rows={rows[job_id]}")
    return Outcome(len(ids), len(lost), len(duplicated), len(wrong), lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "1000")))
    parser.add_argument("--clients", type=int, default=4, help="concurrent API clients (default 4)")
    parser.add_argument("--rate", type=float, default=5.0, help="submissions a second (default 5)")
    parser.add_argument("--workers", type=int, default=8, help="runner worker threads (default 8, as make up)")
    parser.add_argument("--backend", choices=["moto", "localstack"], default="moto")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "0")) or None)
    parser.add_argument("--settle-seconds", type=float, default=600.0,
                        help="how long jobs may take to settle before they count as lost (default 600)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    rpc = FaultProxy("rpc", stall_seconds=HTTP_TIMEOUT_SECONDS + 2, slow_seconds=1.5)
    gateway = FaultProxy("gateway", stall_seconds=HTTP_TIMEOUT_SECONDS + 2, slow_seconds=1.5)
    try:
        with bench_stack(attach=False, workers=args.workers, backend=args.backend, api_key=API_KEY,
                         app_env={**APP_ENV, "IPFS_GATEWAY": gateway.url},
                         template_parameters={"VisibilityTimeoutSeconds": VISIBILITY_SECONDS,
                                              "UploadEventsVisibilityTimeoutSeconds": VISIBILITY_SECONDS},
                         schedule_interval_seconds=2) as stack:
            outcome = chaos(stack, rpc, gateway, args.jobs, args.clients, args.rate, seed, args.settle_seconds)
    finally:
        rpc.close()
        gateway.close()
    print(f"chaos run, seed {seed}, backend {args.backend}, {args.workers} runner workers; {load_line()}")
    print("\n".join(outcome.lines))
    print(f"{outcome.jobs} jobs, {outcome.lost} lost, {outcome.duplicated} duplicated, {outcome.wrong} wrong", flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
