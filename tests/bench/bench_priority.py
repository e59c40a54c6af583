"""Verify jobs behind a backlog of proofs: their completion latency against the same jobs on an
idle stack, and the proofs' throughput.

    python -m tests.bench.bench_priority [--proofs 200] [--verifies 20] [--workers 8] [--one-queue] [--attach]

One anchored file; the result cache off, so that every job reads the chain and the manifest.
One job of each type warms the runner up first.
1. idle: 20 verify jobs submitted one after another, each job's latency is its completedAt minus
   its createdAt (both the server's clock);
2. loaded: 200 proof jobs submitted (8 at a time), then the same 20 verify jobs; their
   latencies again, how many proofs were still unfinished when the last verify job completed,
   and the proofs' throughput (proofs / span from the first proof's creation to the last one's
   completion).
The goal is a loaded/idle ratio under 2 at p50 and p95. Figures go to stdout, progress to
stderr; no timing is asserted.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import requests

from devstack.anchoring import Anchored, anchor, new_funded_key
from tests.bench._common import add_stack_arguments, bench_stack, percentile, say

FINISHED = ("completed", "failed")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def submit(api_url: str, registry: str, item: Anchored, data: bytes, kind: str) -> str:
    response = requests.post(f"{api_url}/api/verification-jobs/{kind}", timeout=60,
                             data={"registryAddress": registry, "manifestURI": item.manifest_uri},
                             files={"file": ("bench.bin", data, "application/octet-stream")})
    response.raise_for_status()
    return response.json()["jobId"]


def job(api_url: str, job_id: str) -> dict[str, Any]:
    return requests.get(f"{api_url}/api/verification-jobs/{job_id}", timeout=60).json()


def wait_all(api_url: str, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Poll until every job finished; their last states."""
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(job_ids):
        for job_id in job_ids:
            if job_id not in done and (state := job(api_url, job_id))["status"] in FINISHED:
                done[job_id] = state
        time.sleep(0.2)
    return done


def latencies(jobs: dict[str, dict[str, Any]]) -> list[float]:
    return [(parse_time(j["completedAt"]) - parse_time(j["createdAt"])).total_seconds() for j in jobs.values()]


def figures(values: list[float]) -> tuple[float, float, float]:
    return percentile(values, 50), percentile(values, 95), max(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--verifies", type=int, default=20)
    parser.add_argument("--one-queue", action="store_true",
                        help="proofs share the verify queue (PROOF_QUEUE_URL unset), as before the queues per type")
    add_stack_arguments(parser)
    args = parser.parse_args(argv)
    with bench_stack(attach=args.attach, workers=args.workers, backend=args.backend,
                     app_env={"RESULT_CACHE_SECONDS": "0", **({"PROOF_QUEUE_URL": ""} if args.one_queue else {})}) as stack:
        endpoints, api_url = stack.endpoints, stack.api_url
        creator = new_funded_key(endpoints["rpc_url"], endpoints["funded_private_key"])
        data = os.urandom(4096)
        item = anchor(data, rpc_url=endpoints["rpc_url"], registry=endpoints["registry_address"],
                      ipfs_api_url=endpoints["ipfs_api_url"], creator_key=creator, chain_id=endpoints["chain_id"])
        registry = endpoints["registry_address"]

        say("warming up: one job of each type (the runner imports the app on first use)…")
        wait_all(api_url, [submit(api_url, registry, item, data, kind) for kind in ("verify", "proof")])
        say(f"idle: {args.verifies} verify jobs…")
        idle = wait_all(api_url, [submit(api_url, registry, item, data, "verify") for _ in range(args.verifies)])

        say(f"loaded: {args.proofs} proof jobs, then {args.verifies} verify jobs…")
        with ThreadPoolExecutor(8) as pool:
            proofs = list(pool.map(lambda _: submit(api_url, registry, item, data, "proof"), range(args.proofs)))
        verifies = [submit(api_url, registry, item, data, "verify") for _ in range(args.verifies)]
        loaded = wait_all(api_url, verifies)
        unfinished = sum(job(api_url, p)["status"] not in FINISHED for p in proofs)
        proof_jobs = wait_all(api_url, proofs)

    idle_figures, loaded_figures = figures(latencies(idle)), figures(latencies(loaded))
    first = min(parse_time(j["createdAt"]) for j in proof_jobs.values())
    last = max(parse_time(j["completedAt"]) for j in proof_jobs.values())
    span = (last - first).total_seconds()
    print(f"{'one queue for both types' if args.one_queue else 'a queue per type'}, workers {stack.workers}, proof cap {stack.env.get('PROOF_MAX_CONCURRENCY', '2')} (PROOF_MAX_CONCURRENCY)")
    print("verify latency, s        p50     p95     max")
    print(f"  idle               {idle_figures[0]:7.2f} {idle_figures[1]:7.2f} {idle_figures[2]:7.2f}")
    print(f"  behind {args.proofs} proofs  {loaded_figures[0]:7.2f} {loaded_figures[1]:7.2f} {loaded_figures[2]:7.2f}")
    print(f"  ratio              {loaded_figures[0] / idle_figures[0]:7.2f} {loaded_figures[1] / idle_figures[1]:7.2f}"
          f" {loaded_figures[2] / idle_figures[2]:7.2f}   (goal: under 2)")
    print(f"proofs unfinished when the last verify job completed: {unfinished} of {args.proofs}")
    print(f"proofs: {len(proof_jobs)} in {span:.1f}s = {len(proof_jobs) / span:.1f} jobs/s; "
          f"{sum(j['status'] == 'completed' for j in proof_jobs.values())} completed")
    print(f"verify jobs completed: idle {sum(j['status'] == 'completed' for j in idle.values())}, "
          f"loaded {sum(j['status'] == 'completed' for j in loaded.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
