"""Anchoring content the way an Internet ID creator does, against any chain and IPFS API:
sign a manifest over the file's hash, add it to IPFS, register hash and manifest URI on the
registry (and later point it at another manifest, or revoke it). Tests, `make up` and the CLI's
`demo` use it to make real, fresh registrations. Transactions are signed locally, so any
JSON-RPC endpoint works, not only a dev node's unlocked accounts.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

from devstack.anvil import load_artifact

# Both layouts share the external interface (infra/contracts/README.md): one ABI writes to either.
REGISTRY_ABI = load_artifact("ContentRegistry")["abi"]


@dataclass(frozen=True)
class Anchored:
    content_hash: str
    manifest_uri: str
    manifest: dict[str, Any]
    creator: str
    tx_hash: str | None
    block_number: int | None


def _web3(rpc_url: str) -> Web3:
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))


def _send(w3: Web3, account: Any, tx: dict[str, Any]) -> dict[str, Any]:
    """Sign `tx` locally at the account's pending nonce, send it, wait until it is mined.
    Returns `{"txHash": "0x…", "blockNumber": n}`; a reverted transaction raises."""
    tx = {**tx, "nonce": w3.eth.get_transaction_count(account.address, "pending")}
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {Web3.to_hex(tx_hash)} reverted")
    return {"txHash": Web3.to_hex(tx_hash), "blockNumber": int(receipt["blockNumber"])}


def new_funded_key(rpc_url: str, funder_key: str, wei: int = 10**18) -> str:
    """A fresh private key with some ether, so each test registers as a creator of its own."""
    account = Account.create()
    w3 = _web3(rpc_url)
    _send(w3, Account.from_key(funder_key), {"to": account.address, "value": wei, "gas": 21_000,
                                             "chainId": w3.eth.chain_id, "gasPrice": w3.eth.gas_price})
    return "0x" + account.key.hex().removeprefix("0x")


def _registry_tx(rpc_url: str, registry: str, private_key: str, function: str, *args: Any) -> dict[str, Any]:
    """Call `function(*args)` on the registry in a transaction of `private_key`'s account."""
    w3 = _web3(rpc_url)
    account = Account.from_key(private_key)
    contract = w3.eth.contract(address=Web3.to_checksum_address(registry), abi=REGISTRY_ABI)
    return _send(w3, account, getattr(contract.functions, function)(*args).build_transaction({"from": account.address}))


def register_content(rpc_url: str, registry: str, creator_key: str, content_hash: str,
                     manifest_uri: str) -> dict[str, Any]:
    """Register `content_hash` (0x + 64 hex) with `manifest_uri` for the creator."""
    return _registry_tx(rpc_url, registry, creator_key, "register", bytes.fromhex(content_hash[2:]), manifest_uri)


def update_manifest(rpc_url: str, registry: str, creator_key: str, content_hash: str,
                    manifest_uri: str) -> dict[str, Any]:
    """Point a registration at another manifest (only its creator may): how a test makes the
    on-chain URI differ from the manifest's."""
    return _registry_tx(rpc_url, registry, creator_key, "updateManifest", bytes.fromhex(content_hash[2:]),
                        manifest_uri)


def revoke_content(rpc_url: str, registry: str, creator_key: str, content_hash: str) -> dict[str, Any]:
    """Revoke a registration (only its creator may): the entry keeps creator and timestamp, its
    manifest URI becomes empty, and the registry emits `EntryRevoked`."""
    return _registry_tx(rpc_url, registry, creator_key, "revoke", bytes.fromhex(content_hash[2:]))


def sign_manifest(content_hash: str, signer_key: str, chain_id: int) -> dict[str, Any]:
    """A manifest in the original service's format, signed (EIP-191) over the 32 hash bytes."""
    signer = Account.from_key(signer_key)
    signature = signer.sign_message(encode_defunct(primitive=bytes.fromhex(content_hash[2:]))).signature
    return {
        "version": "1.0",
        "algorithm": "sha256",
        "content_hash": content_hash,
        "creator_did": f"did:pkh:eip155:{chain_id}:{signer.address}",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "signature": "0x" + signature.hex().removeprefix("0x"),
        "attestations": [],
    }


def ipfs_add(ipfs_api_url: str, data: bytes, name: str = "manifest.json") -> str:
    """Add bytes through Kubo's HTTP API; returns the CID."""
    response = requests.post(f"{ipfs_api_url}/api/v0/add", files={"file": (name, data)}, timeout=30)
    response.raise_for_status()
    return response.json()["Hash"]


def anchor(
    data: bytes,
    *,
    rpc_url: str,
    registry: str,
    ipfs_api_url: str,
    creator_key: str,
    chain_id: int,
    signer_key: str | None = None,
    register: bool = True,
) -> Anchored:
    """Sign (by `signer_key`, default the creator), pin and register `data`'s hash."""
    content_hash = "0x" + hashlib.sha256(data).hexdigest()
    manifest = sign_manifest(content_hash, signer_key or creator_key, chain_id)
    cid = ipfs_add(ipfs_api_url, json.dumps(manifest, indent=2).encode())
    manifest_uri = f"ipfs://{cid}"
    tx: dict[str, Any] = {}
    if register:
        tx = register_content(rpc_url, registry, creator_key, content_hash, manifest_uri)
    return Anchored(
        content_hash=content_hash,
        manifest_uri=manifest_uri,
        manifest=manifest,
        creator=Account.from_key(creator_key).address,
        tx_hash=tx.get("txHash"),
        block_number=tx.get("blockNumber"),
    )
