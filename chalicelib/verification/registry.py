"""Reading the ContentRegistry over JSON-RPC: the entry for a hash, at a pinned block.

The JSON-RPC transport and what its failures mean are `rpc.py`; the registration log is found
by `registration.find_registration`.

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

import functools
from dataclasses import dataclass

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3

from ..errors import PermanentError
from ..vocabulary import ADDRESS_RE, CONTENT_HASH_INVALID, HASH_RE, REGISTRY_ADDRESS_INVALID, REGISTRY_INCOMPATIBLE, REGISTRY_NOT_FOUND
from .rpc import data_bytes, quantity, raw_batch, rpc_errors

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ENTRIES_SELECTOR = function_signature_to_4byte_selector("entries(bytes32)")

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


def pin_block(w3: Web3) -> PinnedBlock:
    """The chain id and the head block, in one round trip (a JSON-RPC batch of two)."""
    with rpc_errors("eth_getBlockByNumber"):
        chain, head = raw_batch(w3, [("eth_chainId", []), ("eth_getBlockByNumber", ["latest", False])])
        if not isinstance(head, dict):
            raise ValueError("the node named no head block")
        return PinnedBlock(chain_id=quantity(chain), number=quantity(head.get("number")),
                           hash="0x" + data_bytes(head.get("hash"), 32).hex(), timestamp=quantity(head.get("timestamp")))


def _block_param(block: int | str) -> str:
    return hex(block) if isinstance(block, int) else block


def checked_address(address: str) -> str:
    """The registry address checksummed, or REGISTRY_ADDRESS_INVALID."""
    if not isinstance(address, str) or not ADDRESS_RE.match(address):
        raise PermanentError("The registry address must be 0x followed by 40 hex digits.",
                             code=REGISTRY_ADDRESS_INVALID)
    return checksummed(address)


@functools.lru_cache(maxsize=4096)
def checksummed(address: str) -> str:
    """EIP-55 form of an address, remembered: it costs a keccak, and a worker sees the same
    registry and creators job after job."""
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
        creator=checksummed(values[0]),
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
    at = _block_param(block)
    get_code = ("eth_getCode", [address, at])
    try:
        with rpc_errors("entries(bytes32)"):
            code, data = raw_batch(w3, [get_code, ("eth_call", [{"to": address, "data": "0x" + calldata.hex()}, at])])
            code, data = data_bytes(code), data_bytes(data)
    except PermanentError:  # the call reverted: is there a contract at all?
        with rpc_errors("eth_getCode"):
            code = data_bytes(raw_batch(w3, [get_code])[0])
        if code:
            raise
    if not code:
        raise PermanentError(
            f"There is no contract at {address} on the network behind the RPC URL: "
            "check registryAddress, and that rpcUrl points at the network the registry is on.",
            code=REGISTRY_NOT_FOUND,
        )
    return decode_entry(bytes(data))
