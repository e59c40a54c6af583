"""Throughput of the verification pipeline against the same work done in-process.

    python -m tests.bench.bench_pipeline [--jobs 200] [--concurrency 8] [--workers 4] [--cache both|on|off] [--attach]

1. Anchors a few distinct small files on the stack's dev chain and IPFS node.
2. Submits N verify jobs through the HTTP API (multipart, file inline) from C client threads,
   timing each request (enqueue latency), then waits until every job has finished. Completion
   latency and throughput come from the jobs' server-side timestamps (createdAt, startedAt,
   completedAt), so the polling interval does not distort them.
3. Runs the same N verifications in-process, without API, storage, queue or database:
   `sha256_stream` of the file and `verify_hash` against the same chain and IPFS node, on C
   threads, in a fresh process of their own (like the runner, it does not share a GIL with the
   IPFS node, which our own stack serves from this process); and prints pipeline
   throughput as a fraction of that. The same threads inside this process are measured too.

Every job must finish `completed` with result status OK; anything else ends the run with
exit status 1. Figures go to stdout, progress to stderr. No timing is asserted.

The whole run is made twice by default (`--cache both`), on two fresh stacks: with the result
cache off (`RESULT_CACHE_SECONDS=0`), then on (60 s, the default). The jobs cycle through a few
files, so with the cache on most of them are repeats. Every job names a counting JSON-RPC proxy
in front of the dev chain as its `rpcUrl`, and the dev IPFS node counts its gateway reads, so each
round prints the RPC calls and gateway reads per job; the in-process verifier goes through the
same proxy (it never uses the cache: it is the verification core alone).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

from chalicelib.config import load_settings
from chalicelib.verification import sha256_stream, verify_hash
from devstack.anchoring import Anchored, anchor, new_funded_key
from devstack.stack import PROJECT_ROOT
from internetid_cli.api import ApiClient, Target
from internetid_cli.config import content_type_for

from tests.integration.deepchain import DeepChainProxy
from devstack.postgres import LOG_FILE_NAME as POSTGRES_LOG
from tests.bench.counting import RequestCounter, TransactionCounter, Transactions
from tests.bench._common import (
    add_stack_arguments, EMULATORS,
    BenchStack, alive, bench_stack, cpu_seconds, load_line, parse_time, percentile, runner_log_records, say, spread,
)

JOBS_PATH = "/api/verification-jobs"
RUNNER = "runner (workers)"
FINISHED = ("completed", "failed")
PAGE = 100


@dataclass(frozen=True)
class Item:
    path: Path
    anchored: Anchored


CACHE_SECONDS = {"off": "0", "on": "60"}


@dataclass(frozen=True)
class Calls:
    """What a run asked of the chain and the IPFS gateway."""

    rpc: int  # JSON-RPC requests (batch members one by one)
    rpc_round_trips: int  # HTTP requests to the RPC node
    gateway: int | None  # gateway reads; None when the IPFS node is not ours (attached)


class CallCounter:
    """Counts the calls of one run: the RPC proxy's, and the dev IPFS node's gateway reads."""

    def __init__(self, stack: BenchStack, proxy: DeepChainProxy) -> None:
        self.stack, self.proxy = stack, proxy
        self._gateway_before = 0

    def start(self) -> None:
        self.proxy.reset()
        self._gateway_before = self.stack.ipfs.gateway_reads if self.stack.ipfs else 0

    def read(self) -> Calls:
        counts = self.proxy.counts
        gateway = self.stack.ipfs.gateway_reads - self._gateway_before if self.stack.ipfs else None
        return Calls(counts.calls, counts.round_trips, gateway)


@dataclass
class Round:
    cache: str
    wall: float
    pipeline_jobs_per_s: float
    inprocess_jobs_per_s: float
    bench_process_jobs_per_s: float
    calls: Calls
    jobs: int

    @property
    def ratio(self) -> float:
        return self.pipeline_jobs_per_s / self.inprocess_jobs_per_s


def make_items(stack: BenchStack, directory: Path, count: int, size: int) -> list[Item]:
    endpoints = stack.endpoints
    creator = new_funded_key(endpoints["rpc_url"], endpoints["funded_private_key"])
    items = []
    for i in range(count):
        data = os.urandom(size)
        path = directory / f"bench-{i}.bin"
        path.write_bytes(data)
        anchored = anchor(data, rpc_url=endpoints["rpc_url"], registry=endpoints["registry_address"],
                          ipfs_api_url=endpoints["ipfs_api_url"], creator_key=creator,
                          chain_id=endpoints["chain_id"])
        items.append(Item(path, anchored))
    return items


# --- the pipeline ----------------------------------------------------------------------------

FLOWS = ("verify", "proof", "upload")  # inline verify, inline proof, verify through a presigned POST


def submit_all(stack: BenchStack, items: list[Item], jobs: int, concurrency: int,
               api_key: str | None, rpc_url: str | None, flow: str = "verify") -> tuple[list[str], list[float]]:
    """Submit `jobs` jobs of `flow` from `concurrency` threads; job ids and per-request latencies (s)
    (for an upload: creating it and posting the file)."""
    local = threading.local()
    registry = stack.endpoints["registry_address"]

    def submit(i: int) -> tuple[str, float]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = ApiClient(stack.api_url, api_key=api_key)
        item = items[i % len(items)]
        target = Target(registry_address=registry, manifest_uri=item.anchored.manifest_uri, rpc_url=rpc_url)
        content_type = content_type_for(item.path.name)
        started = time.perf_counter()
        if flow == "upload":
            created = client.create_upload("verify", target, item.path.name, content_type, item.path.stat().st_size)
            client.upload_file(created["upload"], item.path, content_type)
            job_id = created["jobId"]
        else:
            job_id = client.submit_inline(flow, item.path, target, content_type).job_id
        elapsed = time.perf_counter() - started
        if job_id is None:
            raise SystemExit("the API answered in sync mode: no queue is configured")
        return job_id, elapsed

    with ThreadPoolExecutor(concurrency, thread_name_prefix="client") as pool:
        results = list(pool.map(submit, range(jobs)))
    return [job_id for job_id, _ in results], [latency for _, latency in results]


def wait_for_jobs(stack: BenchStack, job_ids: list[str], since: datetime, api_key: str | None,
                  interval: float, timeout: float) -> dict[str, dict[str, Any]]:
    """Finished jobs by id, read from the list endpoint (newest first) every `interval` seconds:
    a page or two per round instead of one request per job."""
    pending, done = set(job_ids), {}
    session = requests.Session()
    if api_key:
        session.headers["x-api-key"] = api_key
    deadline = time.monotonic() + timeout
    while pending:
        offset = 0
        while pending:
            response = session.get(f"{stack.api_url}{JOBS_PATH}", params={"limit": PAGE, "offset": offset}, timeout=60)
            if response.status_code == 401:
                raise SystemExit("the job listing needs the API key: pass --api-key (or set API_KEY)")
            response.raise_for_status()
            page = response.json()["jobs"]
            for job in page:
                if job["id"] in pending and job["status"] in FINISHED:
                    done[job["id"]] = job
                    pending.discard(job["id"])
            if len(page) < PAGE or parse_time(page[-1]["createdAt"]) < since:
                break
            offset += PAGE
        if pending:
            if not alive(stack.runner_pid):
                raise SystemExit(f"the runner (pid {stack.runner_pid}) is gone; see {stack.runner_log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(pending)} of {len(job_ids)} jobs did not finish within {timeout:.0f}s")
            time.sleep(interval)
    return done


def run_pipeline(stack: BenchStack, items: list[Item], args: argparse.Namespace,
                 counter: CallCounter | None = None) -> dict[str, Any]:
    """The jobs through the stack; with a counter, they name its RPC proxy and their calls are counted."""
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    if counter:
        counter.start()
    cpu_before = cpu_seconds(stack.processes)
    started, began_at = time.monotonic(), time.time()
    job_ids, enqueue = submit_all(stack, items, args.jobs, args.concurrency, args.api_key,
                                  counter.proxy.url if counter else None, getattr(args, "flow", "verify"))
    enqueue_wall = time.monotonic() - started
    say(f"  {len(job_ids)} jobs submitted in {enqueue_wall:.1f}s; waiting for them…")
    jobs = wait_for_jobs(stack, job_ids, since, args.api_key, args.poll_interval, args.timeout)
    wall = time.monotonic() - started
    cpu_after = cpu_seconds(stack.processes)
    calls = counter.read() if counter else None

    ordered = [jobs[j] for j in job_ids]
    created = [parse_time(j["createdAt"]) for j in ordered]
    failed = [j for j in ordered if j["status"] != "completed"]
    finished = [j for j in ordered if j["completedAt"]]
    completed_at = [parse_time(j["completedAt"]) for j in finished]
    span = (max(completed_at) - min(created)).total_seconds() if completed_at else float("nan")
    completion = [(parse_time(j["completedAt"]) - parse_time(j["createdAt"])).total_seconds() for j in finished]
    waits = [(parse_time(j["startedAt"]) - parse_time(j["createdAt"])).total_seconds()
             for j in finished if j["startedAt"]]
    service = [(parse_time(j["completedAt"]) - parse_time(j["startedAt"])).total_seconds()
               for j in finished if j["startedAt"]]
    statuses = Counter(_verdict(j.get("result") or {}) or f"job {j['status']}" for j in ordered)

    ids = set(job_ids)
    invocations = [r for r in runner_log_records(stack.runner_log, "runner invocation") if ids & set(r["job_ids"])]
    ended_at = time.time()
    schedules = [r for r in runner_log_records(stack.runner_log, "runner schedule") if began_at <= r["at"] <= ended_at]
    hashed = [r["seconds"] for r in runner_log_records(stack.runner_log, "upload hashed", ids)]
    retry_causes = Counter(f"{r.get('code')}: {r.get('detail') or r.get('error')}"[:160]
                           for r in runner_log_records(stack.runner_log, "transient failure; retry scheduled", ids))
    executed = [r["duration_ms"] / 1000 for r in runner_log_records(stack.runner_log, "job completed", ids)]
    return {
        "wall": wall, "enqueue_wall": enqueue_wall, "span": span, "jobs_per_s": len(job_ids) / span,
        "enqueue": enqueue, "completion": completion, "waits": waits, "service": service,
        "statuses": statuses, "failed": failed, "retried": sum(1 for j in ordered if j.get("retryCount")),
        "hashed": hashed, "executed": executed, "calls": calls, "retry_causes": retry_causes,
        "cached": sum(1 for j in ordered if ((j.get("result") or {}).get("evidence") or {}).get("cached")),
        "cpu": {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
        "invocations": len(invocations), "records": sum(r["records"] for r in invocations),
        # the runner's poll threads outside the handler (receive, delete): what Lambda's event
        # source mapping does on AWS, outside the function; includes the idle polls before each
        "poll_cpu": sum(r["poll_cpu_seconds"] for r in invocations),
        # the sweep and the reconciler, which are functions of their own on AWS
        "schedule_cpu": sum(r["cpu_seconds"] for r in schedules),
    }


def worker_cpu(run: dict[str, Any]) -> tuple[float, float | None]:
    """The runner's CPU seconds in a run, and the same less its poll loop and its schedules: the
    handler's (None when unknown)."""
    total = run["cpu"].get(RUNNER, 0.0)
    return total, (total - run["poll_cpu"] - run["schedule_cpu"]) if run.get("invocations") else None


def _verdict(result: dict[str, Any]) -> str | None:
    """A verify result's status, or a proof's verification status."""
    return result.get("status") or (result.get("verification") or {}).get("status")


# --- what a job costs in requests and transactions -------------------------------------------

@dataclass(frozen=True)
class Costs:
    flow: str
    jobs: int
    requests: Counter | None  # S3/SQS requests by name; None when not counted (not moto)
    transactions: Transactions | None  # None when not counted (attached stack)
    invocations: int  # worker invocations that carried the round's jobs


def count_flow(stack: BenchStack, items: list[Item], args: argparse.Namespace, flow: str,
               counter: CallCounter) -> Costs:
    """A short round of `flow` jobs with moto's recorder and Postgres' statement log on; its
    timings are not reported (the logging costs CPU)."""
    own = stack.stack
    requests_counter = RequestCounter(stack.endpoints["aws_endpoint_url"]) \
        if own is not None and stack.endpoints.get("backend") == "moto" else None
    tx_counter = TransactionCounter(stack.endpoints["database_url"], own.postgres.data_dir / POSTGRES_LOG) \
        if own is not None and own.postgres is not None else None
    if tx_counter:
        tx_counter.start()
        time.sleep(0.5)  # the servers' sessions take the new setting at their next command
    if requests_counter:
        requests_counter.start()
    run = run_pipeline(stack, items, argparse.Namespace(**{**vars(args), "jobs": args.count_jobs, "flow": flow}), counter)
    requests_seen = requests_counter.read() if requests_counter else None
    transactions = tx_counter.read() if tx_counter else None
    if run["failed"]:
        raise SystemExit(f"{len(run['failed'])} {flow} jobs of the counting round did not complete")
    return Costs(flow, args.count_jobs, requests_seen, transactions, run["invocations"])


def print_costs(costs: list[Costs]) -> None:
    print("  per job, from submit to completed (counting rounds; moto's recorder, Postgres' statement log):")
    for cost in costs:
        print(f"    {cost.flow} ({cost.jobs} jobs)")
        if cost.requests is not None:
            served = {name: n for name, n in cost.requests.items() if name != "moto-api"}
            total = sum(served.values())
            print(f"      S3/SQS requests     {total / cost.jobs:5.2f}   "
                  + ", ".join(f"{name} {n / cost.jobs:.2f}" for name, n in sorted(served.items(), key=lambda kv: -kv[1])))
            receives = served.get("SQS ReceiveMessage", 0)
            print(f"        less the runner's receives (its polling: the event source mapping's on AWS) "
                  f"{(total - receives) / cost.jobs:.2f}; with one receive per invocation instead "
                  f"{(total - receives + cost.invocations) / cost.jobs:.2f} ({cost.invocations} invocations)")
        else:
            print("      S3/SQS requests     not counted (moto's recorder only)")
        tx = cost.transactions
        if tx is not None:
            print(f"      DB transactions     worker {tx.side('worker') / cost.jobs:.2f}, API {tx.side('api') / cost.jobs:.2f}, "
                  f"other {tx.by_name.get('other', 0) / cost.jobs:.2f}; statements {tx.statements / cost.jobs:.2f}")
            print("        " + ", ".join(f"{name} {n / cost.jobs:.2f}" for name, n in sorted(tx.by_name.items(), key=lambda kv: -kv[1])))


# --- the same work without the queue ---------------------------------------------------------

VERIFIER = "in-process verifier (own process)"
MARKER = "BENCH-VERIFIER "


def verify_spec(stack: BenchStack, items: list[Item], rpc_url: str) -> dict[str, Any]:
    endpoints = stack.endpoints
    return {
        "rpc_url": rpc_url, "ipfs_gateway_url": endpoints["ipfs_gateway_url"],
        "registry": endpoints["registry_address"],
        "items": [[str(item.path), item.anchored.manifest_uri] for item in items],
    }


def verify_many(spec: dict[str, Any], jobs: int, concurrency: int) -> Counter:
    """What a worker does for a job, minus storage, queue and database: hash the file, verify
    the hash against the chain and the manifest. Result statuses counted."""
    settings = load_settings({
        "RPC_URL": spec["rpc_url"], "IPFS_GATEWAY": spec["ipfs_gateway_url"],
        "ALLOW_PRIVATE_NETWORKS": "true", "REGISTRY_START_BLOCK": "0",
    })
    items = spec["items"]

    def verify(i: int) -> str:
        path, manifest_uri = items[i % len(items)]
        with open(path, "rb") as handle:
            file_hash = sha256_stream(handle)
        return verify_hash(file_hash, manifest_uri, spec["registry"], settings.rpc_url, settings)["status"]

    with ThreadPoolExecutor(concurrency, thread_name_prefix="inproc") as pool:
        return Counter(pool.map(verify, range(jobs)))


def run_in_own_process(stack: BenchStack, items: list[Item], jobs: int, concurrency: int,
                       counter: CallCounter) -> dict[str, Any]:
    """The verifications in a fresh process of their own, as a Lambda would run them: its GIL is
    not shared with the dev IPFS node (which lives in this process)."""
    spec = {**verify_spec(stack, items, counter.proxy.url), "jobs": jobs, "concurrency": concurrency}
    child = subprocess.Popen([sys.executable, "-m", "tests.bench.bench_pipeline", "--verifier"],
                             cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdin.write(json.dumps(spec) + "\n")
        child.stdin.flush()
        if _protocol_line(child) != "ready":  # imported, and warmed up with `concurrency` verifications
            raise SystemExit("the in-process verifier did not start")
        processes = {**stack.processes, VERIFIER: child.pid}
        counter.start()
        cpu_before = cpu_seconds(processes)
        child.stdin.write("go\n")
        child.stdin.flush()
        outcome = json.loads(_protocol_line(child))
        cpu_after = cpu_seconds(processes)  # the child waits for us before it exits
        calls = counter.read()
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    return {"wall": outcome["wall"], "jobs_per_s": jobs / outcome["wall"], "statuses": Counter(outcome["statuses"]),
            "calls": calls, "cpu": {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}}


def _protocol_line(child: subprocess.Popen) -> str:
    for line in child.stdout:
        if line.startswith(MARKER):
            return line[len(MARKER):].strip()
    raise SystemExit(f"the in-process verifier exited ({child.wait()})")


def verifier_main() -> int:
    """The child side of run_in_own_process (stdin: spec, then "go"; stdout: marked lines)."""
    spec = json.loads(sys.stdin.readline())
    verify_many(spec, min(spec["concurrency"], spec["jobs"]), spec["concurrency"])
    print(MARKER + "ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    statuses = verify_many(spec, spec["jobs"], spec["concurrency"])
    wall = time.monotonic() - started
    print(MARKER + json.dumps({"wall": wall, "statuses": statuses}), flush=True)
    sys.stdin.read()  # until the parent has read our CPU time and closes the pipe
    return 0


def run_in_bench_process(stack: BenchStack, items: list[Item], jobs: int, concurrency: int,
                         rpc_url: str) -> dict[str, Any]:
    """The verifications on threads of this process (which also serves the IPFS node of our own
    stack: they share one GIL)."""
    spec = verify_spec(stack, items, rpc_url)
    cpu_before = cpu_seconds(stack.processes)
    started = time.monotonic()
    statuses = verify_many(spec, jobs, concurrency)
    elapsed = time.monotonic() - started
    cpu_after = cpu_seconds(stack.processes)
    return {"wall": elapsed, "jobs_per_s": jobs / elapsed, "statuses": statuses,
            "cpu": {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}}


# --- output ----------------------------------------------------------------------------------

def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:8.1f}"


def print_cpu(cpu: dict[str, float], wall: float, jobs: int) -> None:
    total = sum(cpu.values())
    print(f"  CPU seconds by process over {wall:.1f}s wall (100% = one core), and per job:")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<36} {seconds:7.1f} s  {100 * seconds / wall:5.0f}%  {1000 * seconds / jobs:6.1f} ms/job")
    print(f"    {'total':<36} {total:7.1f} s  {100 * total / wall:5.0f}%  {1000 * total / jobs:6.1f} ms/job"
          f"   (of {100 * (os.cpu_count() or 1)}%)")


def print_calls(calls: Calls, jobs: int) -> None:
    gateway = f"{calls.gateway / jobs:.2f}" if calls.gateway is not None else "not counted (attached stack)"
    print(f"  RPC calls per job         {calls.rpc / jobs:.2f} ({calls.rpc_round_trips / jobs:.2f} HTTP round trips)")
    print(f"  gateway reads per job     {gateway}")


def print_round(number: int, stack: BenchStack, args: argparse.Namespace, cache: str, app_env: dict[str, str],
                pipe: dict[str, Any], inproc: dict[str, Any], here: dict[str, Any]) -> None:
    settings = "".join(f", {name}={value}" for name, value in sorted(app_env.items()))
    print(f"\n=== round {number}, cache {cache}: {args.jobs} jobs, {args.concurrency} client threads, "
          f"runner workers {stack.workers if stack.workers is not None else 'unknown'}{settings} ===")
    print(f"  {load_line()}")
    print("pipeline (HTTP API -> S3 + Postgres + SQS -> runner workers)")
    print(f"  jobs                      {args.jobs}")
    print(f"  wall time                 {pipe['wall']:.2f} s (enqueue phase {pipe['enqueue_wall']:.2f} s)")
    print(f"  throughput                {pipe['jobs_per_s']:.2f} jobs/s "
          f"({args.jobs} / {pipe['span']:.2f} s from first createdAt to last completedAt)")
    print(f"  enqueue latency     p50 {ms(pipe['enqueue'], 50)} ms   p99 {ms(pipe['enqueue'], 99)} ms")
    print(f"  completion latency  p50 {ms(pipe['completion'], 50)} ms   p99 {ms(pipe['completion'], 99)} ms"
          "   (completedAt - createdAt)")
    print(f"    queued              p50 {ms(pipe['waits'], 50)} ms   p99 {ms(pipe['waits'], 99)} ms"
          "   (startedAt - createdAt)")
    print(f"    in the worker       p50 {ms(pipe['service'], 50)} ms   p99 {ms(pipe['service'], 99)} ms"
          "   (completedAt - startedAt)")
    if pipe["executed"]:
        print(f"      verification      p50 {ms(pipe['executed'], 50)} ms   p99 {ms(pipe['executed'], 99)} ms"
              "   (worker log: job completed duration_ms)")
    if pipe["hashed"]:
        print(f"      S3 read + sha256  p50 {ms(pipe['hashed'], 50)} ms   p99 {ms(pipe['hashed'], 99)} ms"
              "   (worker log: upload hashed)")
    if stack.workers and pipe["service"]:
        mean_service = sum(pipe["service"]) / len(pipe["service"])
        print(f"  worker-side bound         {stack.workers / mean_service:.2f} jobs/s "
              f"({stack.workers} workers / mean {mean_service * 1000:.0f} ms in the worker)")
    print(f"  results                   {dict(sorted(pipe['statuses'].items()))}; jobs retried: {pipe['retried']}; "
          f"served from the result cache: {pipe['cached']}")
    for cause, count in pipe["retry_causes"].most_common():
        print(f"    retried ({count}): {cause}")
    print_calls(pipe["calls"], args.jobs)
    if pipe["invocations"]:
        print(f"  worker invocations        {1000 * pipe['invocations'] / args.jobs:.0f} per 1,000 jobs "
              f"({pipe['records'] / pipe['invocations']:.2f} records per invocation)")
    print_cpu(pipe["cpu"], pipe["wall"], args.jobs)
    print("in-process, in a process of its own (sha256_stream + verify_hash; same files, chain and IPFS node)")
    print(f"  wall time                 {inproc['wall']:.2f} s")
    print(f"  throughput                {inproc['jobs_per_s']:.2f} jobs/s")
    print(f"  results                   {dict(sorted(inproc['statuses'].items()))}")
    print_calls(inproc["calls"], args.jobs)
    print_cpu(inproc["cpu"], inproc["wall"], args.jobs)
    here_where = "shares its GIL with the IPFS node" if not stack.attached else "IPFS node elsewhere"
    print(f"in-process, on threads of the benchmark process ({here_where})")
    print(f"  wall time                 {here['wall']:.2f} s")
    print(f"  throughput                {here['jobs_per_s']:.2f} jobs/s")
    print(f"  results                   {dict(sorted(here['statuses'].items()))}")
    ratio = pipe["jobs_per_s"] / inproc["jobs_per_s"]
    print(f"pipeline / in-process       {ratio:.2f} ({100 * ratio:.0f}%; goal >= 60%)   "
          f"against the benchmark-process variant: {pipe['jobs_per_s'] / here['jobs_per_s']:.2f}")
    print_cpu_bound(pipe, inproc, args.jobs)
    total, handler = worker_cpu(pipe)
    verifier = inproc["cpu"].get(VERIFIER, 0.0) / args.jobs
    print(f"worker CPU per job          {1000 * total / args.jobs:.1f} ms, {total / args.jobs / verifier:.2f}x the "
          f"in-process verifier's {1000 * verifier:.1f} ms (goal <= 1.3x)")
    if handler is not None:
        print(f"  the handler's share       {1000 * handler / args.jobs:.1f} ms, {handler / args.jobs / verifier:.2f}x "
              f"(less, by thread CPU time, the poll threads' CPU outside the handler, "
              f"{1000 * pipe['poll_cpu'] / args.jobs:.1f} ms per job: Lambda's event source mapping on AWS; "
              f"and the schedules', {1000 * pipe['schedule_cpu'] / args.jobs:.1f} ms per job: functions of their own)")


def print_cpu_bound(pipe: dict[str, Any], inproc: dict[str, Any], jobs: int) -> None:
    """What the cores allow: every process of the run shares them, so the pipeline cannot beat
    cores / (its CPU per job, all processes together), whatever its concurrency."""
    cores = os.cpu_count() or 1
    pipe_cpu, inproc_cpu = sum(pipe["cpu"].values()) / jobs, sum(inproc["cpu"].values()) / jobs
    emulator = sum(seconds for name, seconds in pipe["cpu"].items() if name in EMULATORS) / jobs
    bound, bound_without = cores / pipe_cpu, cores / (pipe_cpu - emulator)
    print(f"  the CPU bound             {1000 * pipe_cpu:.1f} ms of CPU per job for the pipeline, all processes "
          f"(in-process: {1000 * inproc_cpu:.1f}); on {cores} cores at most {bound:.1f} jobs/s = "
          f"{bound / inproc['jobs_per_s']:.2f} of in-process; less the emulator's {1000 * emulator:.1f} ms "
          f"(AWS's machines, not ours): {bound_without:.1f} jobs/s = {bound_without / inproc['jobs_per_s']:.2f}")


def check(pipe: dict[str, Any], inproc: dict[str, Any], here: dict[str, Any], jobs: int) -> list[str]:
    problems = []
    if pipe["failed"]:
        sample = "; ".join(f"{j['id']}: {j['status']} {j.get('errorCode')} {j.get('error')}" for j in pipe["failed"][:5])
        problems.append(f"{len(pipe['failed'])} pipeline jobs did not complete: {sample}")
    if pipe["statuses"].get("OK", 0) != jobs:
        problems.append(f"pipeline results are not all OK: {dict(pipe['statuses'])}")
    for name, run in (("in-process", inproc), ("in-process (benchmark process)", here)):
        if run["statuses"].get("OK", 0) != jobs:
            problems.append(f"{name} results are not all OK: {dict(run['statuses'])}")
    return problems


def run_pass(args: argparse.Namespace, cache: str, app_env: dict[str, str], files_dir: Path) -> tuple[list[Round], list[str]]:
    """Warm-up, counting rounds and measured rounds on one stack: our own with the given settings
    (`cache` names them), or the attached one."""
    rounds: list[Round] = []
    problems: list[str] = []
    with bench_stack(attach=args.attach, workers=args.workers, backend=args.backend, api_key=args.api_key,
                     app_env=app_env, runner_log=args.runner_log) as stack:
        proxy = DeepChainProxy(stack.endpoints["rpc_url"])
        counter = CallCounter(stack, proxy)
        try:
            say(f"anchoring {args.files} files of {args.file_size} bytes…")
            directory = files_dir / f"pass-{len(list(files_dir.iterdir()))}"
            directory.mkdir()
            items = make_items(stack, directory, args.files, args.file_size)
            if args.warmup:
                say(f"warm-up: {args.warmup} jobs through the pipeline and in-process…")
                warm = argparse.Namespace(**{**vars(args), "jobs": args.warmup})
                run_pipeline(stack, items, warm, counter)
                run_in_bench_process(stack, items, args.warmup, args.concurrency, proxy.url)
            costs = []
            for flow in filter(None, args.count_flows.split(",")):
                say(f"{cache}: counting the requests and transactions of {args.count_jobs} {flow} jobs…")
                costs.append(count_flow(stack, items, args, flow, counter))
            for number in range(1, args.rounds + 1):
                say(f"round {number}, cache {cache}: pipeline…")
                pipe = run_pipeline(stack, items, args, counter)
                say(f"round {number}, cache {cache}: in-process…")
                inproc = run_in_own_process(stack, items, args.jobs, args.concurrency, counter)
                here = run_in_bench_process(stack, items, args.jobs, args.concurrency, proxy.url)
                print_round(number, stack, args, cache, app_env, pipe, inproc, here)
                if costs:
                    print_costs(costs)
                sys.stdout.flush()
                problems += check(pipe, inproc, here, args.jobs)
                rounds.append(Round(cache, pipe["wall"], pipe["jobs_per_s"], inproc["jobs_per_s"],
                                    here["jobs_per_s"], pipe["calls"], args.jobs))
        finally:
            proxy.close()
    return rounds, problems


def print_summary(rounds: list[Round]) -> None:
    print(f"\n=== {len(rounds)} rounds ===")
    for cache in dict.fromkeys(r.cache for r in rounds):
        mine = [r for r in rounds if r.cache == cache]
        print(f"cache {cache}")
        print(f"  pipeline jobs/s     {spread([r.pipeline_jobs_per_s for r in mine])}")
        print(f"  in-process jobs/s   {spread([r.inprocess_jobs_per_s for r in mine])}")
        print(f"  ratio               {spread([r.ratio for r in mine])}")
        print(f"  in-process jobs/s, benchmark process  {spread([r.bench_process_jobs_per_s for r in mine])}")
        print(f"  RPC calls per job   {spread([r.calls.rpc / r.jobs for r in mine])}")
        if all(r.calls.gateway is not None for r in mine):
            print(f"  gateway reads/job   {spread([r.calls.gateway / r.jobs for r in mine])}")
    by_cache = {cache: [r.pipeline_jobs_per_s for r in rounds if r.cache == cache] for cache in ("on", "off")}
    if by_cache["on"] and by_cache["off"]:
        on, off = (sum(v) / len(v) for v in (by_cache["on"], by_cache["off"]))
        print(f"pipeline throughput, cache on / cache off   {on / off:.2f} ({on:.1f} / {off:.1f} jobs/s, means)")


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """The jobs `run_pipeline` submits, and how it waits for them (bench_peer runs it too)."""
    parser.add_argument("--jobs", type=int, default=200, help="verify jobs per round (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads, and in-process threads (default 8)")
    parser.add_argument("--files", type=int, default=8, help="distinct anchored files the jobs cycle through (default 8)")
    parser.add_argument("--file-size", type=int, default=4096, help="bytes per file (default 4096)")
    parser.add_argument("--warmup", type=int, default=8, help="jobs run and discarded before measuring (default 8)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between job listings (default 2)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the jobs of a round")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_pipeline", description=__doc__.splitlines()[0])
    add_stack_arguments(parser)
    add_workload_arguments(parser)
    parser.add_argument("--rounds", type=int, default=1, help="measure this many times on each stack (default 1)")
    parser.add_argument("--runner-log", help="with --attach: the runner's log file, for the worker's stage times")
    parser.add_argument("--cache", choices=["both", "on", "off"], default="off",
                        help="result cache of our own stack: off (default), on, or off then on")
    parser.add_argument("--batch-sizes", default="1,10",
                        help="WORKER_BATCH_SIZE of our own stack, one stack each (default 1,10)")
    parser.add_argument("--batch-workers", type=int, default=2,
                        help="runner poll threads for batch sizes above 1 (default 2): Lambda runs each invocation "
                             "in a container of its own, the runner as threads of one process, so 8 threads with "
                             "batches of 10 would be 80 jobs on one GIL")
    parser.add_argument("--count-jobs", type=int, default=40, help="jobs per counting round (default 40)")
    parser.add_argument("--count-flows", default=",".join(FLOWS),
                        help=f"flows whose requests and transactions are counted (default {','.join(FLOWS)}; '' for none)")
    parser.add_argument("--app-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the API and the workers of our own stack, e.g. DATABASE_POOL_MAX=8")
    parser.add_argument("--peer", action="store_true",
                        help="then run bench_peer (the original's shape beside this pipeline) with the same workload")
    parser.add_argument("--verifier", action="store_true", help=argparse.SUPPRESS)  # the in-process child
    args = parser.parse_args(argv)
    if args.verifier:
        return verifier_main()
    app_env = dict(item.split("=", 1) for item in args.app_env)
    workers: dict[str, int] = {}
    if args.attach:
        passes = {"as the attached stack is configured": {}}
    else:
        modes = ("off", "on") if args.cache == "both" else (args.cache,)
        passes = {f"cache {mode}, batch {size}": {"RESULT_CACHE_SECONDS": CACHE_SECONDS[mode],
                                                   "WORKER_BATCH_SIZE": size, **app_env}
                  for mode in modes for size in args.batch_sizes.split(",")}
        workers = {label: args.workers if settings["WORKER_BATCH_SIZE"] == "1" else args.batch_workers
                   for label, settings in passes.items()}
        for label, settings in passes.items():  # a database connection for each job running at once
            settings.setdefault("DATABASE_POOL_MAX", str(max(workers[label] * int(settings["WORKER_BATCH_SIZE"]), 4)))

    began = time.monotonic()
    files_dir = Path(tempfile.mkdtemp(prefix="iid-bench-files-"))
    RequestCounter.prepare(files_dir)
    problems: list[str] = []
    rounds: list[Round] = []
    try:
        for cache, settings in passes.items():
            pass_args = argparse.Namespace(**{**vars(args), "workers": workers.get(cache, args.workers)})
            more_rounds, more_problems = run_pass(pass_args, cache, settings, files_dir)
            rounds += more_rounds
            problems += more_problems
    finally:
        shutil.rmtree(files_dir, ignore_errors=True)
    if len(rounds) > 1:
        print_summary(rounds)
    print(f"\nbenchmark wall time (stacks start to stop) {time.monotonic() - began:.1f} s")
    if args.peer:
        from tests.bench import bench_peer

        print("\n=== bench_peer, in the same run ===")
        sys.stdout.flush()
        workload = ["--jobs", str(args.jobs), "--concurrency", str(args.concurrency), "--files", str(args.files),
                    "--file-size", str(args.file_size), "--warmup", str(args.warmup),
                    "--workers", str(args.batch_workers),  # its stack runs the default batches of 10
                    "--backend", args.backend, "--rounds", str(args.rounds)]
        if bench_peer.main(workload) != 0:
            problems.append("bench_peer: some jobs did not come out OK")
    if problems:
        for problem in problems:
            print(f"FAILED: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
