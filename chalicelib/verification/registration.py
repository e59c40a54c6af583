"""Finding the transaction that registered a hash: the newest `ContentRegistered` log for it.

The entry's own timestamp (the registering block's) tells where to look: block timestamps are
searched for it, then logs are asked for over the few blocks that carry it, so a registration of
any age costs a dozen or so JSON-RPC calls. A bounded backwards scan is the fallback for chains
whose timestamps do not fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from eth_utils import keccak
from web3 import Web3
from web3.exceptions import MethodUnavailable, Web3RPCError

from ..config import Settings
from ..errors import TransientError
from .registry import PinnedBlock, checked_address, hash_bytes
from .rpc import rpc_errors

CONTENT_REGISTERED_TOPIC = "0x" + keccak(text="ContentRegistered(bytes32,address,string,uint64)").hex()
# Block timestamps a registration search may ask for before it falls back to the bounded scan:
# with the pinned head, the entry and the logs, a proof stays within 40 JSON-RPC calls.
TIMESTAMP_PROBES = 32
# A window the provider refuses is halved, but not below this many blocks (or the configured
# window when smaller): some providers refuse every range, and halving down to one block would
# turn a scan into a million calls. RPC_CALL_BUDGET bounds the whole search besides.
MIN_LOG_WINDOW = 10


@dataclass(frozen=True)
class RegistrationTx:
    """The transaction that emitted the newest ContentRegistered log for a hash."""

    tx_hash: str
    block_number: int


def _get_logs(w3: Web3, params: dict[str, Any]) -> list[Any]:
    with rpc_errors("eth_getLogs"):
        return list(w3.eth.get_logs(params))


def _scan_backwards(w3: Web3, params: dict[str, Any], start: int, to_block: int, window: int) -> RegistrationTx | None:
    """The newest log matching `params` in blocks `start`..`to_block`, asked for in windows of
    `window` blocks from the top down; stops at the first window with a match. A window the
    provider refuses with a JSON-RPC error is halved and retried, down to MIN_LOG_WINDOW."""
    window = max(1, window)
    floor = min(window, MIN_LOG_WINDOW)
    while to_block >= start:
        from_block = max(start, to_block - window + 1)
        try:
            logs = _get_logs(w3, {**params, "fromBlock": from_block, "toBlock": to_block})
        except TransientError as exc:
            cause = exc.__cause__
            refused = isinstance(cause, Web3RPCError) and not isinstance(cause, MethodUnavailable)
            asked = to_block - from_block + 1
            if asked > floor and refused:
                window = max(floor, asked // 2)  # e.g. "block range too large": ask for less
                continue
            raise
        if logs:
            newest = max(logs, key=lambda log: (int(log["blockNumber"]), int(log["logIndex"])))
            return RegistrationTx(
                tx_hash="0x" + bytes(newest["transactionHash"]).hex(),
                block_number=int(newest["blockNumber"]),
            )
        to_block = from_block - 1
    return None


class _OutOfProbes(Exception):
    """The timestamp search used its budget: the chain's timestamps do not fit the search."""


class _BlockTimes:
    """Block timestamps asked for during one search, each at most once, at most `budget` calls."""

    def __init__(self, w3: Web3, head: PinnedBlock, budget: int) -> None:
        self.w3 = w3
        self.known = {head.number: head.timestamp}
        self.budget = budget

    def __call__(self, number: int) -> int:
        if number not in self.known:
            if self.budget <= 0:
                raise _OutOfProbes
            self.budget -= 1
            with rpc_errors("eth_getBlockByNumber"):
                self.known[number] = int(self.w3.eth.get_block(number)["timestamp"])
        return self.known[number]

    def first_known_after(self, timestamp: int) -> int | None:
        """The lowest block already fetched whose timestamp is above `timestamp`."""
        return min((n for n, t in self.known.items() if t > timestamp), default=None)


def first_block_at_or_after(timestamp: int, lo: int, hi: int, times: Callable[[int], int]) -> int | None:
    """The lowest block in `lo`..`hi` whose timestamp is at least `timestamp`, or None.

    Interpolation search (block times are near constant on most chains, so a guess from the
    bracket's timestamps lands close), with a bisection step after any guess that failed to
    halve the bracket, so a chain with irregular block times costs at most about twice a
    binary search.
    """
    if times(lo) >= timestamp:
        return lo
    if times(hi) < timestamp:
        return None
    interpolate = True
    while hi - lo > 1:  # times(lo) < timestamp <= times(hi)
        width = hi - lo
        if interpolate:
            spread = times(hi) - times(lo)
            guess = lo + -(-(timestamp - times(lo)) * width // spread)  # ceiling division
        else:
            guess = lo + width // 2
        guess = min(max(guess, lo + 1), hi - 1)
        if times(guess) >= timestamp:
            hi = guess
        else:
            lo = guess
        interpolate = not interpolate or 2 * (hi - lo) <= width
    return hi


def _blocks_with_timestamp(times: _BlockTimes, timestamp: int, start: int, head: int, window: int) -> tuple[int, int] | None:
    """The blocks `first`..`last` whose timestamp is `timestamp`, or None when no block has it."""
    first = first_block_at_or_after(timestamp, start, head, times)
    if first is None or times(first) != timestamp:
        return None
    above = times.first_known_after(timestamp)
    if above is not None and above - first <= window:
        return first, above - 1  # already bracketed within one window: no second search
    after = first_block_at_or_after(timestamp + 1, first, above if above is not None else head, times)
    return first, (after - 1 if after is not None else head)


def find_registration(
    w3: Web3,
    registry_address: str,
    content_hash: str,
    settings: Settings,
    head: PinnedBlock | None = None,
    registered_at: int | None = None,
) -> RegistrationTx | None:
    """The newest ContentRegistered log for `content_hash` at or below `head`, or None.

    With the entry's timestamp (`registered_at`, which the registry sets to the registering
    block's timestamp) and the pinned `head`, the block is found by searching block timestamps
    (`first_block_at_or_after`, at most TIMESTAMP_PROBES blocks), and the logs are asked for
    only over the blocks carrying that timestamp: a registration of any age costs a dozen or so
    calls. When the timestamps do not fit (no block has that timestamp, the search runs out of
    probes, or those blocks hold no log), or without a timestamp, the bounded scan runs:
    backwards from the head in windows of `log_scan_block_range` blocks down to
    REGISTRY_START_BLOCK, else over the last `log_scan_lookback_blocks` blocks.
    """
    address = checked_address(registry_address)
    params = {"address": address, "topics": [CONTENT_REGISTERED_TOPIC, "0x" + hash_bytes(content_hash).hex()]}
    if head is not None:
        latest = head.number
    else:
        with rpc_errors("eth_blockNumber"):
            latest = int(w3.eth.block_number)
    floor = max(0, settings.registry_start_block) if settings.registry_start_block is not None else 0
    window = max(1, settings.log_scan_block_range)
    if head is not None and registered_at and floor <= latest:
        try:
            blocks = _blocks_with_timestamp(_BlockTimes(w3, head, TIMESTAMP_PROBES), registered_at, floor, latest, window)
        except _OutOfProbes:
            blocks = None
        if blocks is not None:
            found = _scan_backwards(w3, params, blocks[0], blocks[1], window)
            if found is not None:
                return found
    if settings.registry_start_block is None:
        floor = max(0, latest - settings.log_scan_lookback_blocks)
    return _scan_backwards(w3, params, floor, latest, window)
