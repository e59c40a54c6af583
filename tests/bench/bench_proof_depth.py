"""A proof's chain reads for a registration N blocks behind the head: RPC calls and time, with
the bounded backwards scan (before) and with the search by the entry's timestamp (after).

    python -m tests.bench.bench_proof_depth [--depths 5000,50000,500000,1000001,3000000]

For each depth, a fresh anvil (chain id 84532) gets both registries and one registration; then
the counting proxy of tests/integration/deepchain.py inserts empty blocks after it (anvil mines
only a few hundred blocks a second here), with 2-second block times as on Base. Each row runs
the proof's chain reads through the proxy, with LOG_SCAN_BLOCK_RANGE 10,000 and 500:
- before: eth_chainId, the entry at "latest", then `find_registration` without the timestamp
  (the scan backwards from eth_blockNumber over at most LOG_SCAN_LOOKBACK_BLOCKS, 1,000,000);
- after: the pinned head with the chain id, the entry at that block, then `find_registration`
  with the head and the entry's timestamp.
`calls` counts JSON-RPC requests (a batch's members one by one), `trips` HTTP round trips.
Figures go to stdout, progress to stderr; no timing is asserted. The run fails (exit status 1)
when "after" misses a registration or needs more than 40 calls.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from chalicelib.config import Settings
from chalicelib.verification import registration, registry, rpc
from devstack.anchoring import new_funded_key, register_content
from devstack.anvil import Anvil
from tests.bench._common import say
from tests.integration.deepchain import DeepChainProxy

CALL_BUDGET = 40
WINDOWS = (10_000, 500)
BASE = Settings(allow_private_networks=True, http_timeout_seconds=60)


def before(w3, address: str, content_hash: str, settings: Settings) -> registration.RegistrationTx | None:
    rpc.chain_id(w3)
    registry.read_entry(w3, address, content_hash)
    return registration.find_registration(w3, address, content_hash, settings)


def after(w3, address: str, content_hash: str, settings: Settings) -> registration.RegistrationTx | None:
    head = registry.pin_block(w3)
    entry = registry.read_entry(w3, address, content_hash, head.number)
    return registration.find_registration(w3, address, content_hash, settings, head=head, registered_at=entry.timestamp)


def run_depth(depth: int) -> list[tuple]:
    chain = Anvil(chain_id=84532).start()
    proxy = DeepChainProxy(chain.rpc_url)
    try:
        address = chain.deploy_registries()["ContentRegistry"]
        creator = new_funded_key(chain.rpc_url, chain.funded_private_keys[0])
        content_hash = "0x" + os.urandom(32).hex()
        tx = register_content(chain.rpc_url, address, creator, content_hash, "ipfs://bench")
        head = proxy.insert_blocks(depth - 1)
        say(f"depth {depth}: registered in block {tx['blockNumber']}, head {head}")
        rows = []
        for window in WINDOWS:
            settings = replace(BASE, log_scan_block_range=window)
            for name, reads in (("before", before), ("after", after)):
                w3 = rpc.connect(proxy.url, settings)
                proxy.reset()
                started = time.perf_counter()
                found = reads(w3, address, content_hash, settings)
                seconds = time.perf_counter() - started
                counts = proxy.counts
                assert found is None or found.tx_hash == tx["txHash"], found
                rows.append((head - tx["blockNumber"], window, name, counts.calls, counts.round_trips,
                             seconds, found is not None))
        return rows
    finally:
        proxy.close()
        chain.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", default="5000,50000,500000,1000001,3000000")
    args = parser.parse_args()
    rows = [row for depth in args.depths.split(",") for row in run_depth(int(depth))]
    print("proof chain reads for a registration N blocks behind the head (anvil behind the counting proxy)")
    print(f"{'N blocks':>10} {'range':>6} {'search':>7} {'calls':>6} {'trips':>6} {'seconds':>8} found")
    failed = False
    for depth, window, name, calls, trips, seconds, found in rows:
        print(f"{depth:>10} {window:>6} {name:>7} {calls:>6} {trips:>6} {seconds:>8.3f} {'yes' if found else 'no'}")
        failed |= name == "after" and (not found or calls > CALL_BUDGET)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
