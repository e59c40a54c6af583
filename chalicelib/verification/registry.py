"""Reading the ContentRegistry over JSON-RPC: the entry for a hash and its registration log.

Two registry layouts are deployed, and `entries(bytes32)` returns differently shaped data:
- layout A: (address creator, bytes32 contentHash, string manifestURI, uint64 timestamp)
- layout B, gas-optimised: (address creator, uint64 timestamp, string manifestURI)
In both the string is the third value, so the third head word is its offset: 0x80 (four head
words) for A, 0x60 (three head words) for B. The raw return data tells them apart, so no
configuration can get it wrong.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import requests
from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, MethodUnavailable, Web3Exception, Web3RPCError
from web3.providers.rpc import HTTPProvider

from ..config import Settings
from ..errors import JobError, PermanentError, TransientError
from ..vocabulary import (
    ADDRESS_RE, CONTENT_HASH_INVALID, HASH_RE, REGISTRY_ADDRESS_INVALID,
    REGISTRY_INCOMPATIBLE, REGISTRY_NOT_FOUND, RPC_ERROR, RPC_REJECTED, RPC_UNAVAILABLE,
    RPC_URL_REQUIRED,
)
from .netguard import check_url, guarded_session

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ENTRIES_SELECTOR = function_signature_to_4byte_selector("entries(bytes32)")
CONTENT_REGISTERED_TOPIC = "0x" + keccak(text="ContentRegistered(bytes32,address,string,uint64)").hex()

LAYOUT_A = ("address", "bytes32", "string", "uint64")  # offset word 0x80
LAYOUT_B = ("address", "uint64", "string")  # offset word 0x60



@dataclass(frozen=True)
class OnchainEntry:
    """A registry entry; an unregistered hash reads as zero creator, empty URI, timestamp 0."""

    creator: str
    manifest_uri: str
    timestamp: int

    @property
    def registered(self) -> bool:
        return self.creator != ZERO_ADDRESS


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
            code=REGISTRY_INCOMPATIBLE,
        ) from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (408, 425, 429) or status >= 500 or status == 0:
            raise TransientError(f"The RPC endpoint answered HTTP {status} during {what}.",
                                 code=RPC_UNAVAILABLE) from exc
        raise PermanentError(
            f"The RPC endpoint refused {what} with HTTP {status}: check rpcUrl.", code=RPC_REJECTED
        ) from exc
    except (requests.RequestException, OSError) as exc:
        raise TransientError(f"The RPC endpoint is unreachable during {what} ({exc}).",
                             code=RPC_UNAVAILABLE) from exc
    except (Web3Exception, ValueError) as exc:  # JSON-RPC error object, non-JSON answer, ...
        raise TransientError(f"The RPC endpoint failed {what} ({exc}).", code=RPC_ERROR) from exc


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
    require_rpc_url(rpc_url)
    try:
        check_url(rpc_url, settings.allow_private_networks)
    except TransientError as exc:  # DNS trouble
        raise TransientError(
            f"The RPC endpoint is unreachable: {exc.message}", code=RPC_UNAVAILABLE
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


def require_rpc_url(rpc_url: str | None) -> str:
    """The effective RPC URL, or RPC_URL_REQUIRED when neither client nor deployment gave one."""
    if not rpc_url:
        raise PermanentError("No RPC URL: pass rpcUrl or configure RPC_URL.", code=RPC_URL_REQUIRED)
    return rpc_url


def checked_address(address: str) -> str:
    """The registry address checksummed, or REGISTRY_ADDRESS_INVALID."""
    if not isinstance(address, str) or not ADDRESS_RE.match(address):
        raise PermanentError("The registry address must be 0x followed by 40 hex digits.",
                             code=REGISTRY_ADDRESS_INVALID)
    return to_checksum_address(address)


def checked_hash(content_hash: str) -> str:
    """The content hash in lowercase, or CONTENT_HASH_INVALID."""
    if not isinstance(content_hash, str) or not HASH_RE.match(content_hash):
        raise PermanentError("The content hash must be 0x followed by 64 hex digits.",
                             code=CONTENT_HASH_INVALID)
    return content_hash.lower()


def _hash_bytes(content_hash: str) -> bytes:
    return bytes.fromhex(checked_hash(content_hash)[2:])


def decode_entry(data: bytes) -> OnchainEntry:
    """Decode `entries(bytes32)` return data of either layout (see the module docstring)."""
    incompatible = PermanentError(
        "The registry's entries(bytes32) returned data of neither known layout: "
        "is registryAddress a ContentRegistry?",
        code=REGISTRY_INCOMPATIBLE,
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


def read_entry(w3: Web3, registry_address: str, content_hash: str) -> OnchainEntry:
    """Read the registry entry for `content_hash` with a raw eth_call of entries(bytes32).

    Raises REGISTRY_NOT_FOUND when there is no contract at the address on this chain.
    """
    address = checked_address(registry_address)
    calldata = ENTRIES_SELECTOR + _hash_bytes(content_hash)
    with rpc_errors("eth_getCode"):
        code = w3.eth.get_code(address)
    if not code:
        raise PermanentError(
            f"There is no contract at {address} on the network behind the RPC URL: "
            "check registryAddress, and that rpcUrl points at the network the registry is on.",
            code=REGISTRY_NOT_FOUND,
        )
    with rpc_errors("entries(bytes32)"):
        data = w3.eth.call({"to": address, "data": "0x" + calldata.hex()})
    return decode_entry(bytes(data))


def _get_logs(w3: Web3, params: dict[str, Any]) -> list[Any]:
    with rpc_errors("eth_getLogs"):
        return list(w3.eth.get_logs(params))


def find_registration(
    w3: Web3, registry_address: str, content_hash: str, settings: Settings
) -> RegistrationTx | None:
    """The newest ContentRegistered log for `content_hash`, or None.

    Scans backwards from the latest block in windows of `log_scan_block_range` blocks (public
    RPC providers cap eth_getLogs ranges) down to REGISTRY_START_BLOCK, else to the last
    `log_scan_lookback_blocks` blocks, and stops at the first window with a match. A window the
    provider refuses with a JSON-RPC error is halved and retried, down to a single block.
    """
    address = checked_address(registry_address)
    hash_topic = "0x" + _hash_bytes(content_hash).hex()
    with rpc_errors("eth_blockNumber"):
        latest = int(w3.eth.block_number)
    if settings.registry_start_block is not None:
        start = max(0, settings.registry_start_block)
    else:
        start = max(0, latest - settings.log_scan_lookback_blocks)
    window = max(1, settings.log_scan_block_range)
    to_block = latest
    while to_block >= start:
        from_block = max(start, to_block - window + 1)
        params = {
            "address": address,
            "fromBlock": from_block,
            "toBlock": to_block,
            "topics": [CONTENT_REGISTERED_TOPIC, hash_topic],
        }
        try:
            logs = _get_logs(w3, params)
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
