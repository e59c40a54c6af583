"""The original service's shape beside this project's pipeline, on the same machine, chain, IPFS
node and Postgres, with the same files: throughput and worker CPU per job of both.

    python -m tests.bench.bench_peer [--jobs 200] [--peer-concurrency 8] [--workers 8] [--rounds 1]

The peer (tests/bench/peer/): Redis from the distribution's packages (`redis-server`, no
persistence), BullMQ, ethers and pg from npm (`npm ci` there on first use). Its Node worker does
the original's verify steps for each job: hash the file from disk, fetch the manifest from the
dev IPFS node's gateway, `verifyMessage`, read `entries` on the registry, write one row to
Postgres. Its producer adds the jobs straight to the queue (as the original's API did after
storing the upload on its own disk) and waits for all of them.

This project's side is `bench_pipeline`'s run: the same jobs through the HTTP API, S3, Postgres
and SQS to the runner's workers, with the result cache off (RESULT_CACHE_SECONDS=0), since the
peer verifies every job afresh.

Printed for each: throughput (jobs / first submission to last completion) and CPU seconds per
job by process. The worker's CPU is the figure to compare (the runner's for ours, the Node
worker's for the peer); the emulator (moto), which stands in for S3 and SQS and on AWS runs on
none of the workers' machines, is shown apart, as are the API, Redis, Postgres and the
benchmark process (clients and the dev IPFS node). Each round first measures every process's
CPU at rest for a few seconds: the runner long-polls SQS even when no job comes (on AWS the
event source mapping does that, outside the function), and the worker figures are also printed
less that rate times the round's wall time. Nothing is asserted; the exit status is 1
when a job of either side does not come out OK.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack.stack import PROJECT_ROOT

from tests.bench._common import add_stack_arguments, EMULATORS, BenchStack, bench_stack, cpu_seconds, load_line, say, spread
from tests.bench.bench_pipeline import (
    RUNNER, Item, add_workload_arguments, make_items, print_cpu, run_pipeline, worker_cpu,
)

PEER_DIR = PROJECT_ROOT / "tests" / "bench" / "peer"
QUEUE_NAME = "verification"
PEER_WORKER = "peer worker (node)"


# --- the peer's processes ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ensure_node_modules() -> None:
    if not (PEER_DIR / "node_modules" / "bullmq").is_dir():
        say("npm ci in tests/bench/peer…")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=PEER_DIR, check=True)


@contextmanager
def redis_server(work_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A Redis of our own on a free loopback port, without persistence; its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install -y redis-server")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(work_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not start (exit status {process.poll()})")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=30)


def peer_env(stack: BenchStack, redis_url: str, concurrency: int) -> dict[str, str]:
    endpoints = stack.endpoints
    return {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": endpoints["database_url"],
            "RPC_URL": endpoints["rpc_url"], "IPFS_GATEWAY": endpoints["ipfs_gateway_url"].rstrip("/"),
            "QUEUE_NAME": QUEUE_NAME, "CONCURRENCY": str(concurrency)}


@contextmanager
def peer_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    log = log_path.open("w")
    process = subprocess.Popen(["node", "worker.mjs"], cwd=PEER_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=log, text=True)
    try:
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"the peer worker did not start: {line!r}; see {log_path}")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def run_peer(stack: BenchStack, items: list[Item], jobs: int, env: dict[str, str],
             processes: dict[str, int]) -> dict[str, Any]:
    """`jobs` jobs through BullMQ to the Node worker; wall time, statuses and CPU by process."""
    registry = stack.endpoints["registry_address"]
    payload = {"jobs": [{"filePath": str(items[i % len(items)].path), "registryAddress": registry,
                         "manifestURI": items[i % len(items)].anchored.manifest_uri} for i in range(jobs)]}
    cpu_before = cpu_seconds(processes)
    done = subprocess.run(["node", "producer.mjs"], cwd=PEER_DIR, env=env, input=json.dumps(payload),
                          capture_output=True, text=True, timeout=900)
    cpu_after = cpu_seconds(processes)
    if done.returncode != 0:
        raise SystemExit(f"the peer's producer failed:\n{done.stderr}")
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    cpu["peer producer (node, whole life)"] = outcome["cpu"]
    return {"wall": outcome["wall"], "jobs_per_s": jobs / outcome["wall"], "statuses": outcome["statuses"],
            "failed": outcome["failed"], "cpu": cpu}


def rest_rates(processes: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds per second of each process while no job runs: the runner's idle long polls
    (on AWS the event source mapping polls, not the function), moto's answers to them."""
    before = cpu_seconds(processes)
    time.sleep(seconds)
    after = cpu_seconds(processes)
    return {name: (after[name] - before.get(name, 0.0)) / seconds for name in after}


# --- output ------------------------------------------------------------------------------------

def worker_cpu_per_job(cpu: dict[str, float], name: str, jobs: int) -> float:
    return 1000 * cpu.get(name, 0.0) / jobs


def net_of_rest(run: dict[str, Any], rates: dict[str, float], name: str, jobs: int) -> float:
    """CPU ms per job of `name` less what it burns at rest over the same wall time."""
    return 1000 * max(run["cpu"].get(name, 0.0) - rates.get(name, 0.0) * run["wall"], 0.0) / jobs


def print_side(title: str, run: dict[str, Any], jobs: int, worker: str, rates: dict[str, float]) -> None:
    """Throughput, then CPU per job: the worker, the emulator apart, then the rest."""
    print(title)
    print(f"  throughput                {run['jobs_per_s']:.2f} jobs/s ({jobs} / {run['span']:.2f} s)")
    print(f"  results                   {dict(sorted(run['statuses'].items()))}")
    print(f"  worker CPU per job        {worker_cpu_per_job(run['cpu'], worker, jobs):.1f} ms ({worker}); "
          f"less its CPU at rest ({1000 * rates.get(worker, 0.0):.0f} ms/s): {net_of_rest(run, rates, worker, jobs):.1f} ms")
    if run.get("invocations"):
        handler = worker_cpu(run)[1]
        print(f"  the handler's share       {1000 * handler / jobs:.1f} ms (less, by thread CPU time, its poll "
              f"threads' {1000 * run['poll_cpu'] / jobs:.1f} ms and its schedules' {1000 * run['schedule_cpu'] / jobs:.1f} ms "
              f"per job; {1000 * run['invocations'] / jobs:.0f} invocations per 1,000 jobs)")
    emulator = {name: seconds for name, seconds in run["cpu"].items() if name in EMULATORS}
    for name, seconds in emulator.items():
        print(f"  emulator CPU per job      {1000 * seconds / jobs:.1f} ms ({name}: S3 and SQS, not on AWS's workers)")
    print_cpu({name: s for name, s in run["cpu"].items() if name not in emulator}, run["wall"], jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_peer", description=__doc__.splitlines()[0])
    add_stack_arguments(parser)
    add_workload_arguments(parser)  # the same jobs on both sides
    parser.add_argument("--peer-concurrency", type=int, default=8,
                        help="the Node worker's BullMQ concurrency (default 8; the original shipped 3)")
    parser.add_argument("--rounds", type=int, default=1, help="measure both sides this many times (default 1)")
    parser.add_argument("--rest-seconds", type=float, default=5.0,
                        help="seconds of CPU measured at rest before each round (default 5)")
    args = parser.parse_args(argv)
    if args.attach:
        raise SystemExit("--attach is not supported here: the peer needs the stack's Postgres and a quiet machine")
    ensure_node_modules()

    began = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="iid-bench-peer-"))
    problems: list[str] = []
    ratios: list[float] = []
    throughput: dict[str, list[float]] = {"ours": [], "peer": []}
    try:
        with bench_stack(attach=False, workers=args.workers, backend=args.backend, api_key=args.api_key,
                         app_env={"RESULT_CACHE_SECONDS": "0"}) as stack, \
                redis_server(work_dir) as (redis_url, redis):
            say(f"anchoring {args.files} files of {args.file_size} bytes…")
            items = make_items(stack, work_dir, args.files, args.file_size)
            env = peer_env(stack, redis_url, args.peer_concurrency)
            with peer_worker(env, work_dir / "peer-worker.log") as worker:
                # Named in both sides' CPU figures, so that neither is counted in the benchmark process.
                stack.processes.update({PEER_WORKER: worker.pid, "redis-server": redis.pid})
                peer_processes = stack.processes
                if args.warmup:
                    say(f"warm-up: {args.warmup} jobs on each side…")
                    run_peer(stack, items, args.warmup, env, peer_processes)
                    run_pipeline(stack, items, argparse.Namespace(**{**vars(args), "jobs": args.warmup}))
                for number in range(1, args.rounds + 1):
                    say(f"round {number}: CPU at rest…")
                    rates = rest_rates(stack.processes, args.rest_seconds)
                    say(f"round {number}: the peer…")
                    peer = run_peer(stack, items, args.jobs, env, peer_processes)
                    peer["span"] = peer["wall"]
                    say(f"round {number}: this project's pipeline…")
                    ours = run_pipeline(stack, items, args)
                    print(f"\n=== round {number}: {args.jobs} jobs each; our runner {args.workers} workers, "
                          f"{args.concurrency} client threads; the peer's worker concurrency {args.peer_concurrency} ===")
                    print(f"  {load_line()}")
                    print_side("peer (BullMQ on Redis -> Node worker with ethers, pg; jobs added straight to the queue)",
                               peer, args.jobs, PEER_WORKER, rates)
                    print_side("this project (HTTP API -> S3 + Postgres + SQS -> runner workers; result cache off)",
                               ours, args.jobs, RUNNER, rates)
                    ratio = worker_cpu_per_job(ours["cpu"], RUNNER, args.jobs) / worker_cpu_per_job(
                        peer["cpu"], PEER_WORKER, args.jobs)
                    net = net_of_rest(ours, rates, RUNNER, args.jobs) / net_of_rest(peer, rates, PEER_WORKER, args.jobs)
                    print(f"worker CPU per job, ours / peer   {ratio:.2f} (goal <= 1.0); less CPU at rest: {net:.2f}")
                    if ours.get("invocations"):
                        handler = 1000 * worker_cpu(ours)[1] / args.jobs
                        print(f"  the handler's share             {handler / worker_cpu_per_job(peer['cpu'], PEER_WORKER, args.jobs):.2f}"
                              " (less the runner's polling and schedules: what runs in the function on AWS)")
                    print(f"throughput, ours / peer           {ours['jobs_per_s'] / peer['jobs_per_s']:.2f}")
                    sys.stdout.flush()
                    ratios.append(ratio)
                    throughput["ours"].append(ours["jobs_per_s"])
                    throughput["peer"].append(peer["jobs_per_s"])
                    if peer["statuses"].get("OK", 0) != args.jobs:
                        problems.append(f"peer results are not all OK: {peer['statuses']}")
                    if ours["statuses"].get("OK", 0) != args.jobs:
                        problems.append(f"pipeline results are not all OK: {dict(ours['statuses'])}")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if len(ratios) > 1:
        print(f"\n=== {len(ratios)} rounds ===")
        print(f"  peer jobs/s                  {spread(throughput['peer'])}")
        print(f"  our jobs/s                   {spread(throughput['ours'])}")
        print(f"  worker CPU per job, ours / peer  {spread(ratios)}")
    print(f"\nbenchmark wall time (stack start to stop) {time.monotonic() - began:.1f} s")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
