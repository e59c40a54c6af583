"""Anchoring content the way an Internet ID creator does, against any chain and IPFS API:
sign a manifest over the file's hash, add it to IPFS, register hash and manifest URI on the
registry. Tests, `make up` and the CLI's `demo` use it to make real, fresh registrations.
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

from devstack.chain import register_content


@dataclass(frozen=True)
class Anchored:
    content_hash: str
    manifest_uri: str
    manifest: dict[str, Any]
    creator: str
    tx_hash: str | None
    block_number: int | None


def new_funded_key(rpc_url: str, funder_key: str, wei: int = 10**18) -> str:
    """A fresh private key with some ether, so each test registers as a creator of its own."""
    account = Account.create()
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    funder = Account.from_key(funder_key)
    tx = {
        "to": account.address, "value": wei, "gas": 21_000, "chainId": w3.eth.chain_id,
        "gasPrice": w3.eth.gas_price, "nonce": w3.eth.get_transaction_count(funder.address, "pending"),
    }
    tx_hash = w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction)
    w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)
    return "0x" + account.key.hex().removeprefix("0x")


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
