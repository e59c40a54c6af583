"""The verdict and the two documents clients receive: the verify result and the proof.

Field names and order follow the HTTP contract (the original service's JSON), so existing
clients keep working.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..timefmt import iso_now
from .manifest import Manifest
from .registration import RegistrationTx
from .registry import OnchainEntry, PinnedBlock

# ethers v6 network names (plus "localhost" for 31337, as the original proof script named it).
NETWORK_NAMES: dict[int, str] = {
    1: "mainnet",
    3: "ropsten",
    4: "rinkeby",
    5: "goerli",
    6: "classicKotti",
    10: "optimism",
    42: "kovan",
    56: "bnb",
    61: "classic",
    97: "bnbt",
    100: "xdai",
    137: "matic",
    314: "filecoin",
    420: "optimism-goerli",
    8453: "base",
    17000: "holesky",
    31337: "localhost",
    42161: "arbitrum",
    59140: "linea-goerli",
    59141: "linea-sepolia",
    59144: "linea",
    80001: "matic-mumbai",
    80002: "matic-amoy",
    84531: "base-goerli",
    84532: "base-sepolia",
    314159: "filecoin-calibration",
    421613: "arbitrum-goerli",
    421614: "arbitrum-sepolia",
    11155111: "sepolia",
    11155420: "optimism-sepolia",
}


def network_name(chain_id: int) -> str:
    return NETWORK_NAMES.get(int(chain_id), "unknown")


@dataclass(frozen=True)
class Checks:
    """The three comparisons a verification makes, and the status they add up to: a revoked
    registration is FAIL whatever the comparisons say (its creator withdrew it)."""

    manifest_hash_ok: bool  # the file's hash is the manifest's content_hash
    creator_ok: bool  # the manifest's signer is the on-chain creator
    manifest_ok: bool  # the on-chain manifest URI is the one the client gave
    revoked: bool = False  # the on-chain entry was revoked

    @property
    def status(self) -> str:
        if self.revoked:
            return "FAIL"
        if self.manifest_hash_ok and self.creator_ok and self.manifest_ok:
            return "OK"
        if self.manifest_hash_ok and self.creator_ok:
            return "WARN"
        return "FAIL"


def compute_checks(
    file_hash: str, manifest: Manifest, recovered: str, entry: OnchainEntry, manifest_uri: str
) -> Checks:
    """Compare file, manifest, signer and chain. Hex is compared without regard to case."""
    return Checks(
        manifest_hash_ok=manifest.content_hash.lower() == file_hash.lower(),
        creator_ok=entry.registered and entry.creator.lower() == recovered.lower(),
        manifest_ok=entry.manifest_uri == manifest_uri,
        revoked=entry.revoked,
    )


def onchain_dict(entry: OnchainEntry) -> dict[str, Any]:
    return {"creator": entry.creator, "manifestURI": entry.manifest_uri, "timestamp": entry.timestamp,
            "revoked": entry.revoked}


def rpc_evidence(rpc_url: str, deployment_rpc_url: str | None) -> dict[str, Any]:
    """Which node answered: its host only (an RPC URL's path and query often hold a provider
    key), and whether it is the deployment's own RPC_URL rather than one the client chose."""
    return {"host": urlsplit(rpc_url).hostname or "", "deploymentNode": rpc_url == deployment_rpc_url}


def evidence_dict(block: PinnedBlock, checked_at: str, rpc: dict[str, Any]) -> dict[str, Any]:
    """The chain state a result was read at, and through which node (`rpc_evidence`); `cached`
    is false for a result computed now."""
    return {"chainId": block.chain_id, "blockNumber": block.number, "blockHash": block.hash,
            "checkedAt": checked_at, "cached": False, "rpc": rpc}


def build_verify_result(
    file_hash: str, recovered: str, entry: OnchainEntry, checks: Checks, evidence: dict[str, Any]
) -> dict[str, Any]:
    """The verify result of the contract: status, fileHash, recovered, onchain, checks, evidence."""
    return {
        "status": checks.status,
        "fileHash": file_hash,
        "recovered": recovered,
        "onchain": onchain_dict(entry),
        "checks": {
            "manifestHashOk": checks.manifest_hash_ok,
            "creatorOk": checks.creator_ok,
            "manifestOk": checks.manifest_ok,
        },
        "evidence": evidence,
    }


def build_proof(
    *,
    file_hash: str,
    file_name: str | None,
    manifest: Manifest,
    manifest_uri: str,
    registry_address: str,
    entry: OnchainEntry,
    recovered: str,
    checks: Checks,
    tx: RegistrationTx | None,
    evidence: dict[str, Any],
    generated_at: str | None = None,
) -> dict[str, Any]:
    """The proof document (the original's proof.json) plus `evidence`. `tx` is left out when no
    log was found."""
    chain_id = evidence["chainId"]
    proof: dict[str, Any] = {
        "version": "1.0",
        "generated_at": generated_at or iso_now(),
        "network": {"chainId": int(chain_id), "name": network_name(chain_id)},
        "registry": registry_address,
        "content": {"file": file_name or "unknown", "hash": file_hash},
        "manifest": {
            "uri": manifest_uri,
            "cid": manifest.cid,
            "creator_did": manifest.creator_did,
            "signature": manifest.signature,
        },
        "onchain": onchain_dict(entry),
        "signature": {"recovered": recovered, "valid": checks.creator_ok},
    }
    if tx is not None:
        proof["tx"] = {"txHash": tx.tx_hash, "blockNumber": tx.block_number}
    proof["verification"] = {
        "fileHashMatchesManifest": checks.manifest_hash_ok,
        "creatorMatchesOnchain": checks.creator_ok,
        "manifestURIMatchesOnchain": checks.manifest_ok,
        "status": checks.status,
    }
    proof["evidence"] = evidence
    return proof
