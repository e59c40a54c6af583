"""Reading the ContentRegistry over JSON-RPC: the entry for a hash, at a pinned block.

The registration log is found by `registration.find_registration`.

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
from dataclasses import dataclass
from typing import Iterator

import requests
from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception
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

LAYOUT_A = ("address", "bytes32", "string", "uint64")  # offset word 0x80
LAYOUT_B = ("address", "uint64", "string")  # offset word 0x60

# Block timestamps a registration search may ask for before it falls back to the bounded scan:
# with the pinned head, the entry and the logs, a proof stays within 40 JSON-RPC calls.
TIMESTAMP_PROBES = 32



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


def pin_block(w3: Web3) -> PinnedBlock:
    """The chain id and the head block, in one round trip (a JSON-RPC batch of two)."""
    with rpc_errors("eth_getBlockByNumber"):
        with w3.batch_requests() as batch:
            batch.add(w3.eth.chain_id)
            batch.add(w3.eth.get_block("latest"))
            chain, head = batch.execute()
        return PinnedBlock(chain_id=int(chain), number=int(head["number"]),
                           hash="0x" + bytes(head["hash"]).hex(), timestamp=int(head["timestamp"]))


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


def hash_bytes(content_hash: str) -> bytes:
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


def read_entry(w3: Web3, registry_address: str, content_hash: str, block: int | str = "latest") -> OnchainEntry:
    """Read the registry entry for `content_hash` at `block` with a raw eth_call of
    entries(bytes32), batched with eth_getCode at the same block (one round trip).

    Raises REGISTRY_NOT_FOUND when there is no contract at the address on this chain.
    """
    address = checked_address(registry_address)
    calldata = ENTRIES_SELECTOR + hash_bytes(content_hash)
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
            code=REGISTRY_NOT_FOUND,
        )
    return decode_entry(bytes(data))
