"""A video-sized file (5 GiB by default) through the multipart upload path and the large-file lane:
upload throughput, the worker's hashing against hashlib on this machine, the worker process's
peak memory, and the time from the last part to the result, with READ_PARALLEL_RANGES 1 and >1.

    python -m tests.bench.bench_large_upload [--backend moto|localstack] [--size-mib 5120] [--ranges 4]

1. Writes a file of random bytes (1 MiB at a time, hashed as written: never held in memory),
   signs a manifest over its hash, adds it to the dev IPFS node and registers it on the dev chain.
2. For each READ_PARALLEL_RANGES value (1, then --ranges; on moto the second file is 1100 MiB, since
   moto reads the whole object into memory for every ranged GET): (re)starts the stack's runner with it,
   runs one small warm-up job (so the baseline memory includes a worker that did a whole job),
   creates a multipart upload job through the API, PUTs the parts with the CLI's own code
   (`send_parts`, parts streamed from the file, four in flight), completes the upload and waits for
   the result. The job is over LARGE_FILE_BYTES, so `process_large_job` runs it. The runner's peak
   RSS comes from VmHWM in /proc/<pid>/status; the worker's timings from its log (`upload hashed`,
   `upload part hashed`). Each job's object is deleted once it was read back (the emulator holds it).
3. A second process reads the same object with one GET and hashes it (boto3 `get_object`, then
   hashlib over 1 MiB reads): the pace any reader gets from this storage with one stream.
4. hashlib over the file on disk (1 MiB reads), the ceiling on this machine.

The file and the stack are removed at the end. Figures go to stdout, progress to stderr. No timing
is asserted; the run fails (exit status 1) only when a job does not complete with result OK.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from devstack.anchoring import ipfs_add, new_funded_key, register_content, sign_manifest
from internetid_cli.api import ApiClient, Target
from internetid_cli.multipart import send_parts

from tests.bench._common import (
    BenchStack, add_stack_arguments, alive, bench_stack, load_line, parse_time, percentile, proc_status,
    runner_log_records, say, spread,
)
from tests.bench.bench_upload import RssSampler, hashlib_pass, mb, warm_up, write_random_file

MIB = 1024 * 1024
CONTENT_TYPE = "video/quicktime"


# --- the second process: one GET of the object, hashed -----------------------------------------

def read_once(endpoint: str, bucket: str, key: str) -> dict[str, Any]:
    """What a second process gets from storage with one streamed GET and hashlib: seconds to the
    response headers, seconds in all, the hash, and this process's peak RSS."""
    import hashlib

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    started = time.perf_counter()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    headers = time.perf_counter() - started
    digest = hashlib.sha256()
    while chunk := body.read(MIB):
        digest.update(chunk)
    return {"headers_seconds": headers, "seconds": time.perf_counter() - started,
            "hash": "0x" + digest.hexdigest(), "peak_rss": proc_status(os.getpid(), "VmHWM")["VmHWM"]}


def second_process_read(stack: BenchStack, key: str) -> dict[str, Any]:
    endpoints = stack.endpoints
    answer = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_large_upload", "--read-once",
         endpoints["aws_endpoint_url"], endpoints["upload_bucket"], key],
        capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(answer.stdout)


# --- one job through the multipart path ----------------------------------------------------------

def restart_runner(stack: BenchStack, ranges: int) -> int:
    """Start the stack's runner afresh with READ_PARALLEL_RANGES=`ranges` (a fresh VmHWM too); its pid."""
    runner = stack.stack.runner
    runner.env = {**runner.env, "READ_PARALLEL_RANGES": str(ranges)}
    runner.restart()
    return runner.proc.pid


def one_job(stack: BenchStack, client: ApiClient, target: Target, path: Path, creator: str, ranges: int,
            directory: Path, timeout: float) -> dict[str, Any]:
    size = path.stat().st_size
    pid = restart_runner(stack, ranges)
    say(f"READ_PARALLEL_RANGES={ranges}: runner {pid} restarted; warm-up job…")
    warm_up(stack, client, creator, directory)
    baseline = proc_status(pid, "VmRSS", "VmHWM")
    created = client.create_upload("verify", target, path.name, CONTENT_TYPE, size)
    upload, job_id = created["upload"], created["jobId"]
    if upload.get("method") != "MULTIPART":
        raise SystemExit(f"expected a multipart upload for {size} bytes, got {upload.get('method')}")
    say(f"  uploading {size / MIB:.0f} MiB in {len(upload['parts'])} parts of {upload['partSize'] / MIB:.0f} MiB "
        f"(job {job_id})…")
    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        etags = send_parts(client.put_part, path, upload["parts"], int(upload["partSize"]), lambda sent: None)
        last_part_wall, last_part = time.time(), time.perf_counter()
        upload_seconds = last_part - started
        say(f"  parts sent in {upload_seconds:.1f}s; completing…")
        client.complete_upload(upload["completeUrl"], etags)
        completed_call = time.perf_counter() - last_part
        job = client.wait_for_job(created["pollUrl"], interval=0.25, timeout=timeout)
        seen = time.perf_counter() - last_part
    after = proc_status(pid, "VmRSS", "VmHWM")
    if not alive(pid):
        raise SystemExit("the runner died during the job (out of memory?)")
    hashed = runner_log_records(stack.runner_log, "upload hashed", {job_id})
    parts = runner_log_records(stack.runner_log, "upload part hashed", {job_id})
    key = f"uploads/{job_id}"
    say("  a second process reads the same object with one GET…")
    reference = second_process_read(stack, key)
    s3 = boto3.client("s3", endpoint_url=stack.endpoints["aws_endpoint_url"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.delete_object(Bucket=stack.endpoints["upload_bucket"], Key=key)  # the emulator holds it: free it
    to_result = None
    if job.get("completedAt"):
        to_result = parse_time(job["completedAt"]).timestamp() - last_part_wall
    return {"ranges": ranges, "job": job, "size": size, "parts": len(upload["parts"]),
            "part_size": int(upload["partSize"]), "upload_seconds": upload_seconds,
            "complete_call_seconds": completed_call, "last_part_to_result": to_result,
            "last_part_to_seen": seen, "baseline": baseline, "after": after, "sampled_peak": sampler.peak(),
            "hashed": hashed[-1] if hashed else None, "part_seconds": [p["seconds"] for p in parts],
            "reference": reference}


# --- the report -----------------------------------------------------------------------------------

def report(outcome: dict[str, Any], hashlib_rate: float, content_hash: str) -> bool:
    mib = outcome["size"] / MIB
    job, result = outcome["job"], (outcome["job"].get("result") or {})
    print(f"\n--- READ_PARALLEL_RANGES={outcome['ranges']} ---")
    print(f"  upload, {outcome['parts']} parts of {outcome['part_size'] / MIB:.0f} MiB, 4 in flight (the CLI's "
          f"send_parts)  {outcome['upload_seconds']:7.1f} s  {mib / outcome['upload_seconds']:7.1f} MiB/s")
    print(f"  complete call (S3 joins the parts)   {outcome['complete_call_seconds']:7.2f} s")
    if outcome["last_part_to_result"] is not None:
        print(f"  last part -> result (completedAt)    {outcome['last_part_to_result']:7.2f} s   "
              f"(seen by polling after {outcome['last_part_to_seen']:.2f} s)")
    if job.get("startedAt") and job.get("completedAt"):
        in_worker = (parse_time(job["completedAt"]) - parse_time(job["startedAt"])).total_seconds()
        print(f"  job in the worker                    {in_worker:7.2f} s   (completedAt - startedAt)")
    hashed, worker_rate = outcome["hashed"], None
    if hashed:
        streaming = hashed["seconds"] - hashed["first_byte_seconds"]
        worker_rate = hashed["bytes"] / MIB / streaming
        print(f"  worker: storage answered after       {hashed['first_byte_seconds']:7.2f} s   (request to first byte)")
        print(f"  worker hashing, first byte to end    {streaming:7.2f} s  {worker_rate:7.1f} MiB/s   "
              f"= {100 * worker_rate / hashlib_rate:.0f}% of hashlib (goal >= 85% on moto)")
        print(f"  worker total, GET(s) + sha256        {hashed['seconds']:7.2f} s  {mib / hashed['seconds']:7.1f} MiB/s"
              f"   = {100 * mib / hashed['seconds'] / hashlib_rate:.0f}% of hashlib; {hashed['ranges']} ranged GETs")
        seconds = outcome["part_seconds"]
        if seconds:
            print(f"  worker, per {outcome['part_size'] / MIB:.0f} MiB part (its log)      "
                  f"{len(seconds)} parts, seconds {spread(seconds)}, p90 {percentile(seconds, 90):.2f}")
    else:
        print("  worker hashing                       n/a (no `upload hashed` line in the runner's log)")
    reference = outcome["reference"]
    ref_rate = mib / reference["seconds"]
    print(f"  second process, one GET + hashlib    {reference['seconds']:7.2f} s  {ref_rate:7.1f} MiB/s   "
          f"(headers after {reference['headers_seconds']:.2f} s; its peak RSS {mb(reference['peak_rss'])})")
    if hashed:
        print(f"  worker total / second process        {mib / hashed['seconds'] / ref_rate:7.2f}")
    baseline, after = outcome["baseline"], outcome["after"]
    print(f"  runner (worker) RSS, warm baseline   {mb(baseline['VmRSS'])}")
    print(f"  runner (worker) peak RSS (VmHWM)     {mb(after['VmHWM'])}   goal < 200 MB; growth over the warm "
          f"baseline {mb(after['VmHWM'] - baseline['VmHWM'])}; sampled VmRSS peak {mb(outcome['sampled_peak'])}")
    print(f"  job                                  {job.get('status')}  result {result.get('status')}")
    ok = job.get("status") == "completed" and result.get("status") == "OK" and job.get("contentHash") == content_hash
    if reference["hash"] != content_hash:
        print("  (the second process's hash differs from the file's)")
        ok = False
    return ok


def anchored_file(stack: BenchStack, creator: str, path: Path, size: int) -> tuple[str, Target, float]:
    """Write `size` random bytes to `path` and register them: (content hash, target, write seconds)."""
    say(f"writing {size // MIB} MiB of random bytes to {path.name}…")
    content_hash, write_seconds = write_random_file(path, size)
    endpoints = stack.endpoints
    say("anchoring it (manifest over its hash, IPFS, registry)…")
    manifest = sign_manifest(content_hash, creator, endpoints["chain_id"])
    cid = ipfs_add(endpoints["ipfs_api_url"], json.dumps(manifest, indent=2).encode())
    register_content(endpoints["rpc_url"], endpoints["registry_address"], creator, content_hash, f"ipfs://{cid}")
    return content_hash, Target(endpoints["registry_address"], f"ipfs://{cid}"), write_seconds


def hashlib_rate(path: Path, content_hash: str, passes: int) -> tuple[float, list[float]]:
    """hashlib's MiB/s over the file (median of `passes`), and each pass's."""
    mib = path.stat().st_size / MIB
    rates = []
    for _ in range(passes):
        digest, seconds = hashlib_pass(path)
        if digest != content_hash:
            raise SystemExit("hashlib disagrees with the hash computed while writing")
        rates.append(mib / seconds)
    return percentile(rates, 50), rates


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--read-once":
        print(json.dumps(read_once(*sys.argv[2:])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_large_upload",
                                     description=__doc__.splitlines()[0])
    add_stack_arguments(parser)
    parser.add_argument("--size-mib", type=int, default=5120, help="file size in MiB (default 5120: 5 GiB)")
    parser.add_argument("--ranges", type=int, default=4,
                        help="READ_PARALLEL_RANGES of the second job (the first runs with 1; default 4)")
    parser.add_argument("--ranged-size-mib", type=int,
                        help="file size of the second job (default: --size-mib; on moto 1100, just over the multipart threshold, since moto "
                             "reads the whole object into memory for every ranged GET)")
    parser.add_argument("--hashlib-passes", type=int, default=2, help="hashlib passes over each file (default 2)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for each job")
    args = parser.parse_args(argv)
    if args.attach:
        raise SystemExit("--attach is not supported: the benchmark restarts the runner with each READ_PARALLEL_RANGES")
    ranged_mib = args.ranged_size_mib or (1100 if args.backend == "moto" else args.size_mib)

    began = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="iid-bench-large-"))
    legs = [(1, args.size_mib * MIB), (args.ranges, ranged_mib * MIB)]
    outcomes: list[tuple[dict[str, Any], float, list[float]]] = []
    try:
        # No sweeps during the run: they would delete a completed job's object before it is read back.
        with bench_stack(attach=False, workers=args.workers, backend=args.backend, api_key=args.api_key,
                         schedule_interval_seconds=3600) as stack:
            creator = new_funded_key(stack.endpoints["rpc_url"], stack.endpoints["funded_private_key"])
            client = ApiClient(stack.api_url, api_key=args.api_key, timeout=300)
            files: dict[int, tuple[Path, str, Target, float]] = {}
            for ranges, size in legs:
                if size not in files:
                    path = directory / f"master-{size // MIB}.mov"
                    files[size] = (path, *anchored_file(stack, creator, path, size))
                path, content_hash, target, _ = files[size]
                outcome = one_job(stack, client, target, path, creator, ranges, directory, args.timeout)
                say("hashing the file with hashlib…")
                outcomes.append((outcome, *hashlib_rate(path, content_hash, args.hashlib_passes)))
                outcome["content_hash"] = content_hash
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # the big files go with it

    print(f"\n=== multipart upload of {args.size_mib} MiB on {args.backend}, through the large-file lane ===")
    print(f"  {load_line()}")
    ok = True
    for outcome, rate, rates in outcomes:
        print(f"\n  file of {outcome['size'] // MIB} MiB ({outcome['size']} bytes): hashlib sha256, 1 MiB reads, "
              f"{rate:7.1f} MiB/s (median of {len(rates)}: {spread(rates)})")
        ok = report(outcome, rate, outcome["content_hash"]) and ok
    print(f"\nbenchmark wall time {time.monotonic() - began:.1f} s")
    if not ok:
        print("FAILED: a job did not complete OK with the file's hash", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
