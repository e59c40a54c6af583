"""`python -m devstack up`: run the whole stack locally until Ctrl-C (what `make up` calls)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from devstack.stack import PROJECT_ROOT, Stack, StackOptions


def banner(endpoints: dict) -> str:
    api = endpoints["api_url"]
    return f"""
Internet ID verification queue is up ({endpoints['backend']} backend).

  API              {api}   (OpenAPI: {api}/api/openapi.json)
  dev chain        {endpoints['rpc_url']}   chain id {endpoints['chain_id']}
  registry         {endpoints['registry_address']}
  IPFS API/gateway {endpoints['ipfs_api_url']}  {endpoints['ipfs_gateway_url']}
  Postgres         {endpoints['database_url']}
  AWS emulator     {endpoints['aws_endpoint_url']}
  endpoints file   .stack/endpoints.json

Verify a file end to end (signs a manifest, pins it, registers it, uploads, polls):
  .venv/bin/internetid demo

Or by hand, with a hash the dev chain does not know (a FAIL result):
  curl -s -X POST {api}/api/verification-jobs/verify -H 'content-type: application/json' \\
    -d '{{"contentHash":"0x{'ab' * 32}","registryAddress":"{endpoints['registry_address']}","manifestURI":"ipfs://QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"}}'
  curl -s {api}/api/verification-jobs/<jobId>

Ctrl-C stops everything.
"""


def main() -> None:
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--backend", choices=["moto", "localstack"], default=os.environ.get("BACKEND", "moto"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("RUNNER_WORKERS", "4")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = StackOptions(backend=args.backend, work_dir=PROJECT_ROOT / ".stack", api_port=args.port,
                           workers=args.workers, quiet=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack = Stack(options)
    try:
        stack.start()
        print(banner(stack.endpoints), flush=True)
        stop.wait()
        print("stopping…", flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
