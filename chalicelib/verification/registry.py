"""Reading the ContentRegistry over JSON-RPC: the entry for a hash and its registration log.

Two registry layouts are deployed, and `entries(bytes32)` returns differently shaped data:
- layout A: (address creator, bytes32 contentHash, string manifestURI, uint64 timestamp)
- layout B, gas-optimised: (address creator, uint64 timestamp, string manifestURI)
In both the string is the third value, so the third head word is its offset: 0x80 (four head
words) for A, 0x60 (three head words) for B. The raw return data tells them apart, so no
configuration can get it wrong.

Every read is pinned: `pin_block` asks once for the head (number, hash, timestamp) and the
chain id, in one JSON-RPC batch, and the entry is then read at that block number, so a result
describes one chain state even while blocks are produced ("latest" is never asked twice).

Revocation: the registry's `revoke` empties the manifest URI and keeps creator and timestamp.
An entry is taken as revoked when it is registered (creator not zero) and its URI is empty at
the pinned block. That one eth_call is sufficient evidence: the registries let only `revoke`
empty a URI once registered, and a registration with an empty URI names no manifest that could
be verified either. The `EntryRevoked` event is not looked up: it would cost an eth_getLogs over
a range that nothing in the entry bounds (it holds no revocation time).
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests
from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, MethodUnavailable, Web3Exception, Web3RPCError
from web3.providers.rpc import HTTPProvider

from ..config import Settings
from ..errors import JobError, PermanentError, TransientError
from .netguard import check_url, guarded_session

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ENTRIES_SELECTOR = function_signature_to_4byte_selector("entries(bytes32)")
CONTENT_REGISTERED_TOPIC = "0x" + keccak(text="ContentRegistered(bytes32,address,string,uint64)").hex()

LAYOUT_A = ("address", "bytes32", "string", "uint64")  # offset word 0x80
LAYOUT_B = ("address", "uint64", "string")  # offset word 0x60

# Block timestamps a registration search may ask for before it falls back to the bounded scan:
# with the pinned head, the entry and the logs, a proof stays within 40 JSON-RPC calls.
TIMESTAMP_PROBES = 32

_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class OnchainEntry:
    """A registry entry; an unregistered hash reads as zero creator, empty URI, timestamp 0."""

    creator: str
    manifest_uri: str
    timestamp: int

    @property
    def registered(self) -> bool:
        return self.creator != ZERO_ADDRESS

    @property
    def revoked(self) -> bool:
        """Registered, with its manifest URI emptied (see the module docstring)."""
        return self.registered and self.manifest_uri == ""


@dataclass(frozen=True)
class PinnedBlock:
    """The chain state a result is read at: the head when the verification began."""

    chain_id: int
    number: int
    hash: str
    timestamp: int


@dataclass(frozen=True)
class RegistrationTx:
    """The transaction that emitted the newest ContentRegistered log for a hash."""

    tx_hash: str
    block_number: int


@contextlib.contextmanager
def rpc_errors(what: str) -> Iterator[None]:
    """Turn web3/requests failures into the job error taxonomy (transient unless hopeless)."""
    try:
        yield
    except JobError:
        raise  # UrlNotAllowed from the connection-time check, or our own errors
    except ContractLogicError as exc:
        raise PermanentError(
            f"The contract reverted {what} ({exc}): is registryAddress a ContentRegistry?",
            code="REGISTRY_INCOMPATIBLE",
        ) from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (408, 425, 429) or status >= 500 or status == 0:
            raise TransientError(f"The RPC endpoint answered HTTP {status} during {what}.",
                                 code="RPC_UNAVAILABLE") from exc
        raise PermanentError(
            f"The RPC endpoint refused {what} with HTTP {status}: check rpcUrl.", code="RPC_REJECTED"
        ) from exc
    except (requests.RequestException, OSError) as exc:
        raise TransientError(f"The RPC endpoint is unreachable during {what} ({exc}).",
                             code="RPC_UNAVAILABLE") from exc
    except (Web3Exception, ValueError) as exc:  # JSON-RPC error object, non-JSON answer, ...
        raise TransientError(f"The RPC endpoint failed {what} ({exc}).", code="RPC_ERROR") from exc


@contextlib.contextmanager
def connected(rpc_url: str | None, settings: Settings) -> Iterator[Web3]:
    """connect() for one verification, closing its HTTP connections afterwards (a worker
    runs many jobs against many endpoints; pooled sockets must not pile up)."""
    session = guarded_session(settings.allow_private_networks, settings.http_timeout_seconds)
    with session:
        yield connect(rpc_url, settings, session)


def connect(rpc_url: str | None, settings: Settings, session: requests.Session | None = None) -> Web3:
    """A Web3 client for a user-supplied RPC URL, under the address rule on every connection.

    No network I/O happens here beyond resolving the host for the address check.
    """
    if not rpc_url:
        raise PermanentError("No RPC URL: pass rpcUrl or configure RPC_URL.", code="RPC_URL_REQUIRED")
    try:
        check_url(rpc_url, settings.allow_private_networks)
    except TransientError as exc:  # DNS trouble
        raise TransientError(
            f"The RPC endpoint is unreachable: {exc.message}", code="RPC_UNAVAILABLE"
        ) from exc
    session = session or guarded_session(settings.allow_private_networks, settings.http_timeout_seconds)
    provider = HTTPProvider(
        rpc_url,
        session=session,
        request_kwargs={"timeout": settings.http_timeout_seconds},
        # SQS redelivery is the retry policy; do not multiply it inside one attempt.
        exception_retry_configuration=None,
    )
    # No default middleware: this client only reads, so it needs no gas or ENS handling, and
    # the validation middleware would add an eth_chainId round trip before every eth_call.
    return Web3(provider, middleware=[])


def chain_id(w3: Web3) -> int:
    """The chain id the RPC endpoint serves."""
    with rpc_errors("eth_chainId"):
        return int(w3.eth.chain_id)


def pin_block(w3: Web3) -> PinnedBlock:
    """The chain id and the head block, in one round trip (a JSON-RPC batch of two)."""
    with rpc_errors("eth_getBlockByNumber"):
        with w3.batch_requests() as batch:
            batch.add(w3.eth.chain_id)
            batch.add(w3.eth.get_block("latest"))
            chain, head = batch.execute()
        return PinnedBlock(chain_id=int(chain), number=int(head["number"]),
                           hash="0x" + bytes(head["hash"]).hex(), timestamp=int(head["timestamp"]))


def _checked_address(address: str) -> str:
    if not isinstance(address, str) or not _ADDRESS_RE.match(address):
        raise PermanentError("The registry address must be 0x followed by 40 hex digits.",
                             code="REGISTRY_ADDRESS_INVALID")
    return to_checksum_address(address)


def _hash_bytes(content_hash: str) -> bytes:
    if not isinstance(content_hash, str) or not _HASH_RE.match(content_hash):
        raise PermanentError("The content hash must be 0x followed by 64 hex digits.",
                             code="CONTENT_HASH_INVALID")
    return bytes.fromhex(content_hash[2:])


def decode_entry(data: bytes) -> OnchainEntry:
    """Decode `entries(bytes32)` return data of either layout (see the module docstring)."""
    incompatible = PermanentError(
        "The registry's entries(bytes32) returned data of neither known layout: "
        "is registryAddress a ContentRegistry?",
        code="REGISTRY_INCOMPATIBLE",
    )
    if len(data) < 96:
        raise incompatible
    offset = int.from_bytes(data[64:96], "big")
    if offset == 0x80:
        types, ts_index = LAYOUT_A, 3
    elif offset == 0x60:
        types, ts_index = LAYOUT_B, 1
    else:
        raise incompatible
    try:
        values = abi_decode(list(types), bytes(data))
    except (DecodingError, UnicodeDecodeError, ValueError) as exc:
        raise incompatible from exc
    return OnchainEntry(
        creator=to_checksum_address(values[0]),
        manifest_uri=values[2],
        timestamp=int(values[ts_index]),
    )


def read_entry(w3: Web3, registry_address: str, content_hash: str, block: int | str = "latest") -> OnchainEntry:
    """Read the registry entry for `content_hash` at `block` with a raw eth_call of
    entries(bytes32), batched with eth_getCode at the same block (one round trip).

    Raises REGISTRY_NOT_FOUND when there is no contract at the address on this chain.
    """
    address = _checked_address(registry_address)
    calldata = ENTRIES_SELECTOR + _hash_bytes(content_hash)
    try:
        with rpc_errors("entries(bytes32)"):
            with w3.batch_requests() as batch:
                batch.add(w3.eth.get_code(address, block))
                batch.add(w3.eth.call({"to": address, "data": "0x" + calldata.hex()}, block))
                code, data = batch.execute()
    except PermanentError:  # the call reverted: is there a contract at all?
        with rpc_errors("eth_getCode"):
            code = w3.eth.get_code(address, block)
        if code:
            raise
    if not code:
        raise PermanentError(
            f"There is no contract at {address} on the network behind the RPC URL: "
            "check registryAddress, and that rpcUrl points at the network the registry is on.",
            code="REGISTRY_NOT_FOUND",
        )
    return decode_entry(bytes(data))


def _get_logs(w3: Web3, params: dict[str, Any]) -> list[Any]:
    with rpc_errors("eth_getLogs"):
        return list(w3.eth.get_logs(params))


def _scan_backwards(w3: Web3, params: dict[str, Any], start: int, to_block: int, window: int) -> RegistrationTx | None:
    """The newest log matching `params` in blocks `start`..`to_block`, asked for in windows of
    `window` blocks from the top down; stops at the first window with a match. A window the
    provider refuses with a JSON-RPC error is halved and retried, down to a single block."""
    window = max(1, window)
    while to_block >= start:
        from_block = max(start, to_block - window + 1)
        try:
            logs = _get_logs(w3, {**params, "fromBlock": from_block, "toBlock": to_block})
        except TransientError as exc:
            cause = exc.__cause__
            refused = isinstance(cause, Web3RPCError) and not isinstance(cause, MethodUnavailable)
            if window > 1 and refused:
                window = max(1, window // 2)  # e.g. "block range too large": ask for less
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
    address = _checked_address(registry_address)
    params = {"address": address, "topics": [CONTENT_REGISTERED_TOPIC, "0x" + _hash_bytes(content_hash).hex()]}
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
