"""`internetid demo`: the whole round trip against the local stack, as a creator then a verifier.

A fresh key for every run, so each demo is a registration of its own; the file is random, so
its hash was never registered before. Verification goes through exactly the `verify` flow
(by default the file is over the inline cap, so it takes the presigned upload to storage).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from internetid_cli import flow
from internetid_cli.api import ApiClient, Target
from internetid_cli.config import ENDPOINTS_FILE, ConfigError, inline_max, load_endpoints, resolve_api_url, state_file
from internetid_cli.multipart import ResumeState

NEEDED = ("rpc_url", "chain_id", "registry_address", "ipfs_api_url", "funded_private_key")
WRITE_CHUNK = 1024 * 1024


def write_random_file(path: Path, size: int) -> str:
    """Random bytes to disk in chunks, hashed on the way (constant memory whatever the size)."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left > 0:
            chunk = os.urandom(min(WRITE_CHUNK, left))
            digest.update(chunk)
            handle.write(chunk)
            left -= len(chunk)
    return "0x" + digest.hexdigest()


def _endpoints() -> dict[str, Any]:
    endpoints = load_endpoints()
    if endpoints is None:
        raise ConfigError(f"{ENDPOINTS_FILE} not found in {Path.cwd()}: start the local stack with `make up` "
                          "first, and run the demo from the project directory")
    missing = [name for name in NEEDED if not endpoints.get(name)]
    if missing:
        raise ConfigError(f"{ENDPOINTS_FILE} lacks {', '.join(missing)}: restart the local stack with `make up`")
    return endpoints


def run(args: argparse.Namespace, log: Callable[[str], None],
        finish: Callable[[flow.Outcome, argparse.Namespace, Path | None], int]) -> int:
    if args.size < 1:
        raise ConfigError("--size must be at least 1 byte")
    endpoints = _endpoints()
    # The stack's tooling signs, pins and registers the way a creator's wallet would.
    # Loaded here, not at the top: `verify` and the other commands never import the local runtime.
    from devstack.anchoring import ipfs_add, new_funded_key, register_content, sign_manifest

    client = ApiClient(resolve_api_url(args.api_url), api_key=args.api_key, log=log)
    rpc_url, registry = endpoints["rpc_url"], endpoints["registry_address"]
    with tempfile.TemporaryDirectory(prefix="internetid-demo-") as tmp:
        file = Path(tmp) / f"demo-{os.urandom(4).hex()}.bin"
        log(f"1/5 Writing {args.size} random bytes to {file.name}")
        content_hash = write_random_file(file, args.size)
        log(f"    sha256 {content_hash}")

        log(f"2/5 Creating a fresh creator key, funded on the dev chain ({rpc_url})")
        creator_key = new_funded_key(rpc_url, endpoints["funded_private_key"])
        manifest = sign_manifest(content_hash, creator_key, int(endpoints["chain_id"]))
        log(f"    creator {manifest['creator_did']}")

        log(f"3/5 Adding the signed manifest to IPFS ({endpoints['ipfs_api_url']})")
        cid = ipfs_add(endpoints["ipfs_api_url"], json.dumps(manifest, indent=2).encode())
        manifest_uri = f"ipfs://{cid}"
        log(f"    {manifest_uri}")

        log(f"4/5 Registering the hash on the registry {registry}")
        tx = register_content(rpc_url, registry, creator_key, content_hash, manifest_uri)
        log(f"    tx {tx.get('txHash')} in block {tx.get('blockNumber')}")

        log(f"5/5 Verifying through the API at {client.base_url}")
        outcome = flow.run(client, "verify", file, Target(registry, manifest_uri), wait=args.wait,
                           quiet=args.quiet, inline_limit=inline_max(), timeout=args.timeout, log=log,
                           state=ResumeState(state_file()))
    return finish(outcome, args, None)
