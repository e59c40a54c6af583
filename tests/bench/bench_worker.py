"""CPU per job of the verify worker's handler alone, and (with --profile) where it goes.

    python -m tests.bench.bench_worker [--jobs 100] [--rounds 3] [--batch-size 10] [--profile]

Starts a quiet local stack whose runner polls nothing, submits `--jobs` inline verify jobs
through the HTTP API, receives their messages from SQS in batches of `--batch-size`, and calls
`app.process_verification_job` in this process with the event Lambda would send, as the runner
does, then deletes the batch. Only the handler calls are measured, so the figure is what the
function spends on AWS (no polling, no schedules, no client):
- process CPU per job: all of this process while the handler runs, which includes the dev IPFS
  node's serving of one manifest per job (the stack runs it in this process);
- the jobs' threads: the batch's kept job threads and the calling thread, by their own CPU clocks
  (a batch of one runs on the calling thread), so without the IPFS node.

With `--profile`, one more round of `--jobs` x 3 runs under py-spy (not a project dependency: it
is used when `py-spy` is on PATH or in the environment's bin/), sampling only the thread that
holds the GIL, and the samples are sorted into the rooms of the job's path (first match wins).
Every job must end `OK`; exit status 1 otherwise. No timing is asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from devstack.anchoring import anchor, new_funded_key
from devstack.runner import LambdaContext, sqs_event
from devstack.stack import Stack, StackOptions
from internetid_cli.api import ApiClient, Target

from tests.bench._common import load_line, say

# Where a sample of the job's path was, by a frame anywhere in its stack; first match wins.
ROOMS = (
    ("S3 GET of the upload (boto3)", ("Storage.stream_object", "Storage._found")),
    ("SHA-256 of the upload", ("sha256_stream",)),
    ("JSON-RPC: head, code and entry (HTTP, checks, parsing)", ("pin_block", "read_entry")),
    ("manifest fetch (HTTP) and parsing", ("fetch_manifest",)),
    ("signer recovery", ("recover_signer",)),
    ("RPC client set-up (session, address check, Web3)", ("connected (chalicelib", "connect (chalicelib")),
    ("checks, result, evidence", ("verify_hash", "_gather_evidence")),
    ("database: start_attempt", ("start_attempt",)),
    ("database: complete_job (result, history, cache)", ("complete_job",)),
    ("database: pool and other", ("psycopg",)),
    ("logs (Powertools)", ("Logger.info", "Logger.warning", "logging/__init__")),
    ("metrics (embedded format, flushed per job)", ("job_finished", "flush_metrics")),
    ("heartbeat and alarms", ("_heartbeat", "alarms.py")),
    ("dev IPFS node serving manifests (this process only)", ("socketserver.py",)),
    ("the rest (event parsing, threads, stacks py-spy cut short)", ("",)),
)


class Harness:
    """The stack, the anchored files, and the app's verify handler in this process."""

    def __init__(self, stack: Stack, batch_size: int, files: int = 8) -> None:
        self.stack, self.batch_size = stack, batch_size
        ep = stack.endpoints
        creator = new_funded_key(ep["rpc_url"], ep["funded_private_key"])
        self.items = []
        for i in range(files):
            data = os.urandom(4096)
            path = stack.options.work_dir / f"bench-{i}.bin"
            path.write_bytes(data)
            self.items.append((path, anchor(data, rpc_url=ep["rpc_url"], registry=ep["registry_address"],
                                            ipfs_api_url=ep["ipfs_api_url"], creator_key=creator,
                                            chain_id=ep["chain_id"])))
        self.client = ApiClient(ep["api_url"])
        self.job_ids: list[str] = []
        os.environ.update({**stack.env, **stack.options.app_env})
        import app  # after the environment: the settings are read on import

        import boto3
        self.app, self.sqs = app, boto3.client("sqs")
        self.queue_url = self.sqs.get_queue_url(QueueName=app.settings().queue_name)["QueueUrl"]
        self.queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def submit(self, jobs: int) -> None:
        registry = self.stack.endpoints["registry_address"]
        for i in range(jobs):
            path, anchored = self.items[i % len(self.items)]
            target = Target(registry_address=registry, manifest_uri=anchored.manifest_uri, rpc_url=None)
            self.job_ids.append(self.client.submit_inline("verify", path, target, "application/octet-stream").job_id)

    def outcomes(self) -> Counter:
        """Every submitted job's status and result status, read through the API."""
        session = requests.Session()
        counts: Counter = Counter()
        for job_id in self.job_ids:
            job = session.get(f"{self.stack.endpoints['api_url']}/api/verification-jobs/{job_id}", timeout=30).json()
            counts[f"{job['status']} {(job.get('result') or {}).get('status')}"] += 1
        return counts

    def receive(self, jobs: int) -> list[list[dict[str, Any]]]:
        batches: list[list[dict[str, Any]]] = []
        while sum(map(len, batches)) < jobs:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(self.batch_size, jobs - sum(map(len, batches))),
                WaitTimeSeconds=1, AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
            if messages:
                batches.append(messages)
        return batches

    def run(self, batches: list[list[dict[str, Any]]]) -> tuple[float, float]:
        """Process and job-thread CPU seconds of the handler calls; then the batches are deleted."""
        process, threads = time.process_time(), _job_threads_cpu()
        for messages in batches:
            self.app.process_verification_job(sqs_event(messages, self.queue_arn), LambdaContext("bench-worker"))
        cpu = time.process_time() - process, _job_threads_cpu() - threads
        for messages in batches:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        return cpu


def _job_threads_cpu() -> float:
    """CPU seconds of the calling thread and of the batches' kept job threads, by their clocks."""
    from chalicelib import batches

    threads = [threading.main_thread()]
    pool = getattr(batches._containers, "pool", None)
    if pool is not None:
        threads += list(pool._threads)
    return sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident)) for t in threads if t.ident)


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def profile(harness: Harness, jobs: int, out: Path) -> tuple[Counter, float]:
    """Samples by room, and the process CPU per job of the profiled round."""
    harness.submit(jobs)
    batches = harness.receive(jobs)
    spy = subprocess.Popen([py_spy(), "record", "--pid", str(os.getpid()), "--rate", "250", "--gil",
                            "--nonblocking", "--format", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    process, _ = harness.run(batches)
    spy.send_signal(signal.SIGINT)
    spy.wait(timeout=60)
    rooms: Counter = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            rooms[next(name for name, frames in ROOMS if any(f in stack for f in frames))] += int(count)
    return rooms, process / jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--batch-size", type=int, default=10, help="records per invocation, WORKER_BATCH_SIZE (default 10)")
    parser.add_argument("--profile", action="store_true", help="one more round under py-spy, by room")
    args = parser.parse_args(argv)
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy)")
    work_dir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    report = sys.stdout  # the figures; the app's own logs and metrics (stdout, as on Lambda) go to a file
    sys.stdout = open(work_dir / "worker.log", "w", buffering=1)

    def show(line: str) -> None:
        print(line, file=report, flush=True)

    say("starting a local stack (moto, embedded Postgres, dev chain, dev IPFS node; the runner polls nothing)…")
    stack = Stack(StackOptions(work_dir=work_dir, workers=0, schedule_interval_seconds=3600, app_env={
        "RESULT_CACHE_SECONDS": "0", "WORKER_BATCH_SIZE": str(args.batch_size),
        "DATABASE_POOL_MAX": str(max(args.batch_size, 4))})).start()
    try:
        harness = Harness(stack, args.batch_size)
        say("warm-up: 20 jobs (loads the verification core)…")
        harness.submit(20)
        harness.run(harness.receive(20))
        show(f"\n=== the verify handler in-process: {args.jobs} jobs per round, batches of {args.batch_size} ===")
        show(f"  {load_line()}")
        for number in range(1, args.rounds + 1):
            harness.submit(args.jobs)
            batches = harness.receive(args.jobs)
            process, threads = harness.run(batches)
            show(f"  round {number}: {len(batches)} invocations; CPU per job {1000 * process / args.jobs:5.2f} ms "
                 f"(process), {1000 * threads / args.jobs:5.2f} ms (the jobs' threads)")
        if args.profile:
            rooms, per_job = profile(harness, 3 * args.jobs, work_dir / "py-spy.txt")
            total = sum(rooms.values())
            show(f"  where it goes ({total} samples of the GIL-holding thread; ms from the profiled round's "
                 f"{1000 * per_job:.2f} ms of process CPU per job, py-spy's own cost included):")
            for name, _ in ROOMS:
                show(f"    {100 * rooms[name] / total:5.1f}%  {1000 * per_job * rooms[name] / total:5.2f} ms  {name}")
        outcomes = harness.outcomes()
        show(f"  results                   {dict(sorted(outcomes.items()))}")
    finally:
        stack.stop()
    return 0 if set(outcomes) == {"completed OK"} else 1


if __name__ == "__main__":
    sys.exit(main())
