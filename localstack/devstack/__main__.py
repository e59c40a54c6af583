"""`python -m devstack up`: run the whole stack locally until Ctrl-C (what `make up` calls)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from devstack.stack import PROJECT_ROOT, Stack, StackOptions


def publish_sample(endpoints: dict, work_dir: Path) -> tuple[Path, str]:
    """A small file anchored by a fresh creator, so the printed curl example verifies OK."""
    from devstack.anchoring import anchor, new_funded_key  # web3: imported once the API is up

    sample = work_dir / "sample.txt"
    sample.write_bytes(f"Internet ID sample content, {os.urandom(8).hex()}\n".encode())
    creator = new_funded_key(endpoints["rpc_url"], endpoints["funded_private_key"])
    anchored = anchor(sample.read_bytes(), rpc_url=endpoints["rpc_url"], registry=endpoints["registry_address"],
                      ipfs_api_url=endpoints["ipfs_api_url"], creator_key=creator, chain_id=endpoints["chain_id"])
    return sample, anchored.manifest_uri


def banner(endpoints: dict, sample: Path, manifest_uri: str) -> str:
    api = endpoints["api_url"]
    sample_path = sample.relative_to(PROJECT_ROOT) if sample.is_relative_to(PROJECT_ROOT) else sample
    return f"""
Internet ID verification queue is up ({endpoints['backend']} backend).

  API              {api}   (OpenAPI: {api}/api/openapi.json)
  console          {api}/console   (operator console: open it and watch the demo's jobs run)
  dev chain        {endpoints['rpc_url']}   chain id {endpoints['chain_id']}
  registry         {endpoints['registry_address']}
  IPFS API/gateway {endpoints['ipfs_api_url']}  {endpoints['ipfs_gateway_url']}
  Postgres         {endpoints['database_url']}
  AWS emulator     {endpoints['aws_endpoint_url']}
  endpoints file   .stack/endpoints.json
  logs             .stack/logs/api.log, .stack/logs/runner.log (restarted when they exit)

Verify a file end to end (signs a manifest, pins it, registers it, uploads, polls):
  .venv/bin/internetid demo

Or by hand: {sample_path} was just signed, pinned and registered; verify it and poll the job:
  curl -s {api}/api/verification-jobs/verify -F file=@{sample_path} \\
    -F registryAddress={endpoints['registry_address']} -F manifestURI={manifest_uri}
  curl -s {api}/api/verification-jobs/<jobId>

Ctrl-C stops everything.
"""


def main() -> int:
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--backend", choices=["moto", "localstack"], default=os.environ.get("BACKEND", "moto"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("RUNNER_WORKERS", "8")))
    args = parser.parse_args()
    logging.getLogger("botocore").setLevel(logging.WARNING)  # credential/endpoint chatter
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = StackOptions(backend=args.backend, work_dir=PROJECT_ROOT / ".stack", api_port=args.port,
                           workers=args.workers)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack = Stack(options)
    try:
        stack.start()
        sample, manifest_uri = publish_sample(stack.endpoints, options.work_dir)
        print(banner(stack.endpoints, sample, manifest_uri), flush=True)
        while not stop.wait(0.5) and not stack.supervisor.failed.is_set():
            pass
        print("stopping…", flush=True)
    finally:
        stack.stop()
    if stack.supervisor.failed.is_set():
        print(f"make up: {stack.supervisor.failure}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
