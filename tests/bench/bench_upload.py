"""A large file through the presigned upload flow: upload speed, the worker's hashing speed
against hashlib's own on this machine, and the worker process's peak memory.

    python -m tests.bench.bench_upload [--size-mib 1024] [--attach]

1. Writes a file of random bytes in a temporary directory (in 1 MiB chunks, hashed while
   written: the file is never held in memory), signs a manifest over its hash, adds the
   manifest to the dev IPFS node and registers hash and manifest on the dev chain.
2. Runs one small warm-up job, so that the runner's baseline memory includes a worker that has
   already done a whole job (imports, connection pools).
3. Creates an upload job and POSTs the file to the presigned URL with the CLI's own streaming
   client, then waits for the job (the storage event queues it).
4. Reads the worker's hashing time from its `upload hashed` log line, the runner's peak RSS
   from `VmHWM` in /proc/<pid>/status, and hashes the same file with hashlib (1 MiB reads).

The file is removed at the end. Figures go to stdout, progress to stderr. No timing is asserted;
the run fails (exit status 1) only when the job does not complete with result status OK.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from chalicelib.verification import sha256_stream
from devstack.anchoring import anchor, ipfs_add, new_funded_key, register_content, sign_manifest
from internetid_cli.api import ApiClient, Target
from internetid_cli.config import content_type_for

from tests.bench._common import (
    add_stack_arguments,
    BenchStack, alive, bench_stack, load_line, parse_time, percentile, proc_status, runner_log_records, say, spread,
)

MIB = 1024 * 1024
CHUNK = MIB


def write_random_file(path: Path, size: int) -> tuple[str, float]:
    """Write `size` random bytes in 1 MiB chunks, hashing as they go; ("0x" + hash, seconds)."""
    digest = hashlib.sha256()
    started = time.perf_counter()
    with path.open("wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return "0x" + digest.hexdigest(), time.perf_counter() - started


def hashlib_pass(path: Path) -> tuple[str, float]:
    """hashlib's sha256 over the file read in 1 MiB chunks; ("0x" + hash, seconds)."""
    digest = hashlib.sha256()
    started = time.perf_counter()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return "0x" + digest.hexdigest(), time.perf_counter() - started


def s3_reference_read(stack: BenchStack, key: str) -> tuple[float, float] | None:
    """The worker's read path (boto3 get_object, then `sha256_stream` over the body in 1 MiB
    reads) from this process, on the same object: (seconds to the response headers, total
    seconds); None when the object is gone (an attached stack's sweeper deletes it)."""
    endpoints = stack.endpoints
    s3 = boto3.client("s3", endpoint_url=endpoints["aws_endpoint_url"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    started = time.perf_counter()
    try:
        response = s3.get_object(Bucket=endpoints["upload_bucket"], Key=key)
    except ClientError:
        return None
    headers = time.perf_counter() - started
    sha256_stream(response["Body"])
    return headers, time.perf_counter() - started


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds, to show when memory rises."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), proc_status(self.pid, "VmRSS")["VmRSS"]))
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def mb(value: int | float) -> str:
    return f"{value / 1e6:7.1f} MB ({value / MIB:7.1f} MiB)"


def warm_up(stack: BenchStack, client: ApiClient, creator: str, directory: Path) -> None:
    """One small inline job, start to finish."""
    endpoints = stack.endpoints
    data = os.urandom(4096)
    path = directory / "warmup.bin"
    path.write_bytes(data)
    anchored = anchor(data, rpc_url=endpoints["rpc_url"], registry=endpoints["registry_address"],
                      ipfs_api_url=endpoints["ipfs_api_url"], creator_key=creator, chain_id=endpoints["chain_id"])
    target = Target(endpoints["registry_address"], anchored.manifest_uri)
    submitted = client.submit_inline("verify", path, target, content_type_for(path.name))
    job = client.wait_for_job(submitted.poll_url, interval=0.2, timeout=120)
    if job.get("status") != "completed":
        raise SystemExit(f"the warm-up job did not complete: {json.dumps(job)[:500]}")
    path.unlink()


def run(stack: BenchStack, args: argparse.Namespace, directory: Path, path: Path, content_hash: str,
        creator: str) -> dict[str, Any]:
    endpoints = stack.endpoints
    size = path.stat().st_size
    client = ApiClient(stack.api_url, api_key=args.api_key, timeout=120)

    say("anchoring the file (manifest over its hash, IPFS, registry)…")
    manifest = sign_manifest(content_hash, creator, endpoints["chain_id"])
    cid = ipfs_add(endpoints["ipfs_api_url"], json.dumps(manifest, indent=2).encode())
    manifest_uri = f"ipfs://{cid}"
    register_content(endpoints["rpc_url"], endpoints["registry_address"], creator, content_hash, manifest_uri)
    target = Target(endpoints["registry_address"], manifest_uri)

    pid = stack.runner_pid
    memory: dict[str, Any] = {}
    if pid:
        memory["startup"] = proc_status(pid, "VmRSS", "VmHWM")
    say("warm-up job…")
    warm_up(stack, client, creator, directory)
    if pid:
        memory["baseline"] = proc_status(pid, "VmRSS", "VmHWM")

    content_type = content_type_for(path.name)
    created = client.create_upload("verify", target, path.name, content_type, size)
    job_id, poll_url = created["jobId"], created["pollUrl"]
    say(f"uploading {size / MIB:.0f} MiB to the presigned URL (job {job_id})…")
    sampler = RssSampler(pid) if pid else None
    if sampler:
        sampler.__enter__()
    try:
        started = time.perf_counter()
        client.upload_file(created["upload"], path, content_type)
        upload_seconds = time.perf_counter() - started
        say(f"  uploaded in {upload_seconds:.1f}s; waiting for the job…")
        job = client.wait_for_job(poll_url, interval=0.5, timeout=args.timeout)
        end_to_end = time.perf_counter() - started
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    if pid:
        memory["after"] = proc_status(pid, "VmRSS", "VmHWM")
        memory["sampled_peak"] = sampler.peak()
        if not alive(pid):
            raise SystemExit("the runner died during the job (out of memory?)")

    hashed = runner_log_records(stack.runner_log, "upload hashed", {job_id})
    say("reading the object back from this process, the worker's way…")
    key = created["upload"]["fields"].get("key") or created["upload"]["fields"].get("Key")
    reference = [r for r in (s3_reference_read(stack, key) for _ in range(args.reference_passes)) if r]
    return {"job": job, "upload_seconds": upload_seconds, "end_to_end": end_to_end, "memory": memory,
            "hashed": hashed[-1] if hashed else None, "size": size, "reference": reference}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_upload", description=__doc__.splitlines()[0])
    add_stack_arguments(parser)
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--hashlib-passes", type=int, default=3, help="hashlib passes over the file (default 3)")
    parser.add_argument("--reference-passes", type=int, default=2,
                        help="reads of the stored object from the benchmark process (default 2)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the job")
    parser.add_argument("--runner-log", help="with --attach: the runner's log file (for the worker's hashing time)")
    parser.add_argument("--runner-pid", type=int, help="with --attach: the runner's pid (found by name otherwise)")
    args = parser.parse_args(argv)

    began = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="iid-bench-upload-"))
    path = directory / "bench-upload.bin"
    size = args.size_mib * MIB
    try:
        say(f"writing {args.size_mib} MiB of random bytes…")
        content_hash, write_seconds = write_random_file(path, size)
        # The sweeper deletes a completed job's object: keep it away until the object is read back.
        with bench_stack(attach=args.attach, workers=args.workers, backend=args.backend, api_key=args.api_key,
                         runner_log=args.runner_log, runner_pid=args.runner_pid,
                         schedule_interval_seconds=3600) as stack:
            creator = new_funded_key(stack.endpoints["rpc_url"], stack.endpoints["funded_private_key"])
            outcome = run(stack, args, directory, path, content_hash, creator)
        say("hashing the file with hashlib…")
        passes = []
        for _ in range(args.hashlib_passes):
            digest, seconds = hashlib_pass(path)
            if digest != content_hash:
                raise SystemExit("hashlib disagrees with the hash computed while writing")
            passes.append(seconds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # the big file goes with it

    job = outcome["job"]
    result = job.get("result") or {}
    mib = size / MIB
    print(f"\n=== presigned upload of {args.size_mib} MiB ({size} bytes), runner workers "
          f"{stack.workers if stack.workers is not None else 'unknown'} ===")
    print(f"  {load_line()}")
    print(f"  file written (urandom + sha256)   {write_seconds:6.2f} s")
    print(f"  upload (client -> presigned POST) {outcome['upload_seconds']:6.2f} s   {mib / outcome['upload_seconds']:7.1f} MiB/s")
    print(f"  upload start -> job completed     {outcome['end_to_end']:6.2f} s")
    if job.get("startedAt") and job.get("completedAt"):
        in_worker = (parse_time(job["completedAt"]) - parse_time(job["startedAt"])).total_seconds()
        print(f"  job in the worker                 {in_worker:6.2f} s   (completedAt - startedAt)")
    hashed = outcome["hashed"]
    worker_rate = None
    if hashed:
        streaming = hashed["seconds"] - hashed["first_byte_seconds"]
        worker_rate = hashed["bytes"] / MIB / streaming
        print(f"  worker: storage answered after    {hashed['first_byte_seconds']:6.2f} s   (request to first byte)")
        print(f"  worker hashing, first byte to end {streaming:6.2f} s   {worker_rate:7.1f} MiB/s"
              f"   ({hashed['bytes']} bytes, from the worker's log)")
        print(f"  worker total, GET + sha256        {hashed['seconds']:6.2f} s   "
              f"{hashed['bytes'] / MIB / hashed['seconds']:7.1f} MiB/s")
    else:
        print("  worker hashing                    n/a (no runner log: pass --runner-log with --attach)")
    rates = [mib / s for s in passes]
    hashlib_rate = percentile(rates, 50)
    print(f"  hashlib sha256, 1 MiB reads       {percentile(passes, 50):6.2f} s   {hashlib_rate:7.1f} MiB/s"
          f"   (median of {len(passes)}: MiB/s {spread(rates)})")
    if worker_rate:
        print(f"  worker / hashlib                  {worker_rate / hashlib_rate:6.2f}   "
              f"({100 * worker_rate / hashlib_rate:.0f}%; target >= 70%; hashing from the first byte)")
    reference = outcome["reference"]
    if reference:
        first_byte = percentile([r[0] for r in reference], 50)
        total = percentile([r[1] for r in reference], 50)
        print(f"  same read from the bench process  {total:6.2f} s   {mib / total:7.1f} MiB/s"
              f"   (boto3 get_object + sha256_stream; median of {len(reference)})")
        print(f"    of which waiting for headers    {first_byte:6.2f} s   (the emulator loads the whole object "
              f"before it answers); streaming + hashing {mib / (total - first_byte):7.1f} MiB/s")
    else:
        print("  same read from the bench process  n/a (the object was already deleted)")
    memory = outcome["memory"]
    if memory:
        print(f"  runner pid {stack.runner_pid}:")
        print(f"    after start-up     VmRSS {mb(memory['startup']['VmRSS'])}   VmHWM {mb(memory['startup']['VmHWM'])}")
        print(f"    baseline (warm)    VmRSS {mb(memory['baseline']['VmRSS'])}   VmHWM {mb(memory['baseline']['VmHWM'])}")
        print(f"    after the job      VmRSS {mb(memory['after']['VmRSS'])}   VmHWM {mb(memory['after']['VmHWM'])}")
        print(f"    peak RSS (VmHWM)   {mb(memory['after']['VmHWM'])}   target < 200 MB; "
              f"growth over baseline {mb(memory['after']['VmHWM'] - memory['baseline']['VmHWM'])}")
        print(f"    sampled VmRSS peak {mb(memory['sampled_peak'])}   (every 50 ms)")
    print(f"  job                               {job.get('status')}  result {result.get('status')}")
    print(f"\nbenchmark wall time {time.monotonic() - began:.1f} s")
    if job.get("status") != "completed" or result.get("status") != "OK":
        print(f"FAILED: the job did not complete OK: {json.dumps(job)[:1000]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
