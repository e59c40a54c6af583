"""The verdict table and the exact shape of the verify result and the proof."""
import json
import re
from pathlib import Path

import pytest

from chalicelib.verification.manifest import Manifest
from chalicelib.verification.registration import RegistrationTx
from chalicelib.verification.registry import ZERO_ADDRESS, OnchainEntry, PinnedBlock
from chalicelib.verification.result import (
    Checks,
    build_proof,
    build_verify_result,
    compute_checks,
    evidence_dict,
    iso_now,
    network_name,
)

VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "vectors"
RAW_MANIFEST = json.loads((VECTORS / "base-sepolia-manifest.json").read_text())
PROOF = json.loads((VECTORS / "base-sepolia-proof.json").read_text())

CREATOR = "0xA11B0dC0ef5E51b47368a9AF802d97201C0c6F52"
HASH = RAW_MANIFEST["content_hash"]
URI = PROOF["manifest"]["uri"]
CID = PROOF["manifest"]["cid"]
MANIFEST = Manifest(uri=URI, cid=CID, content_hash=HASH, signature=RAW_MANIFEST["signature"],
                    creator_did=RAW_MANIFEST["creator_did"], raw=RAW_MANIFEST)
ENTRY = OnchainEntry(creator=CREATOR, manifest_uri=URI, timestamp=1759774786)
OTHER = "0x" + "11" * 20
BLOCK_HASH = "0x" + "cd" * 32
CHECKED_AT = "2026-12-01T10:00:00.000Z"
RPC = {"host": "rpc.example", "deploymentNode": True}


def evidence(chain_id=84532):
    return evidence_dict(PinnedBlock(chain_id=chain_id, number=32_000_000, hash=BLOCK_HASH, timestamp=1759774800),
                         CHECKED_AT, RPC)


EVIDENCE = evidence()


@pytest.mark.parametrize("hash_ok,creator_ok,manifest_ok,status", [
    (True, True, True, "OK"),
    (True, True, False, "WARN"),
    (True, False, True, "FAIL"),
    (False, True, True, "FAIL"),
    (False, False, False, "FAIL"),
    (False, True, False, "FAIL"),
    (True, False, False, "FAIL"),
    (False, False, True, "FAIL"),
])
def test_status_table(hash_ok, creator_ok, manifest_ok, status):
    assert Checks(hash_ok, creator_ok, manifest_ok).status == status
    assert Checks(hash_ok, creator_ok, manifest_ok, revoked=True).status == "FAIL"


def test_a_registered_entry_with_an_empty_uri_is_revoked():
    revoked = OnchainEntry(creator=CREATOR, manifest_uri="", timestamp=1759774786)
    assert revoked.revoked and not ENTRY.revoked
    assert not OnchainEntry(creator=ZERO_ADDRESS, manifest_uri="", timestamp=0).revoked  # unregistered
    checks = compute_checks(HASH, MANIFEST, CREATOR, revoked, URI)
    assert checks == Checks(True, True, False, revoked=True) and checks.status == "FAIL"
    result = build_verify_result(HASH, CREATOR, revoked, checks, EVIDENCE)
    assert result["status"] == "FAIL" and result["onchain"]["revoked"] is True
    proof = build_proof(**_vector_inputs(entry=revoked, checks=checks))
    assert proof["onchain"]["revoked"] is True and proof["verification"]["status"] == "FAIL"


def test_compute_checks_ok_and_case_insensitive_hex():
    checks = compute_checks(HASH.upper().replace("0X", "0x"), MANIFEST, CREATOR.lower(), ENTRY, URI)
    assert checks == Checks(True, True, True) and checks.status == "OK"


def test_compute_checks_warn_when_only_the_uri_differs():
    checks = compute_checks(HASH, MANIFEST, CREATOR, ENTRY, "ipfs://somethingElse")
    assert checks == Checks(True, True, False) and checks.status == "WARN"


def test_compute_checks_fail_on_other_signer_or_other_file():
    assert compute_checks(HASH, MANIFEST, OTHER, ENTRY, URI).status == "FAIL"
    assert compute_checks("0x" + "00" * 32, MANIFEST, CREATOR, ENTRY, URI).status == "FAIL"


def test_unregistered_is_fail_with_zero_creator():
    entry = OnchainEntry(creator=ZERO_ADDRESS, manifest_uri="", timestamp=0)
    checks = compute_checks(HASH, MANIFEST, CREATOR, entry, URI)
    assert checks == Checks(True, False, False) and checks.status == "FAIL"
    result = build_verify_result(HASH, CREATOR, entry, checks, EVIDENCE)
    assert result["onchain"] == {"creator": "0x0000000000000000000000000000000000000000",
                                 "manifestURI": "", "timestamp": 0, "revoked": False}
    assert result["status"] == "FAIL"


def test_verify_result_shape_and_order():
    checks = compute_checks(HASH, MANIFEST, CREATOR, ENTRY, URI)
    result = build_verify_result(HASH, CREATOR, ENTRY, checks, EVIDENCE)
    assert result == {
        "status": "OK",
        "fileHash": HASH,
        "recovered": CREATOR,
        "onchain": {"creator": CREATOR, "manifestURI": URI, "timestamp": 1759774786, "revoked": False},
        "checks": {"manifestHashOk": True, "creatorOk": True, "manifestOk": True},
        "evidence": {"chainId": 84532, "blockNumber": 32_000_000, "blockHash": BLOCK_HASH,
                     "checkedAt": CHECKED_AT, "cached": False, "rpc": RPC},
    }
    assert list(result) == ["status", "fileHash", "recovered", "onchain", "checks", "evidence"]
    assert list(result["onchain"]) == ["creator", "manifestURI", "timestamp", "revoked"]
    assert list(result["checks"]) == ["manifestHashOk", "creatorOk", "manifestOk"]
    json.dumps(result)


def _vector_inputs(**overrides):
    inputs = dict(
        file_hash=HASH, file_name=PROOF["content"]["file"], manifest=MANIFEST, manifest_uri=URI,
        registry_address=PROOF["registry"], entry=ENTRY, recovered=CREATOR,
        checks=compute_checks(HASH, MANIFEST, CREATOR, ENTRY, URI), tx=None, evidence=EVIDENCE,
        generated_at=PROOF["generated_at"],
    )
    inputs.update(overrides)
    return inputs


def test_proof_reproduces_the_vector():
    expected = json.loads(json.dumps(PROOF))
    del expected["network"]["rpc"]  # the contract leaves the RPC URL out of the proof
    expected["onchain"]["revoked"] = False  # the additive fields of the contract
    expected["evidence"] = EVIDENCE
    proof = build_proof(**_vector_inputs())
    assert proof == expected
    assert json.dumps(proof) == json.dumps(expected)  # same key order too
    assert "tx" not in proof


def test_proof_with_tx_puts_it_before_verification():
    tx = RegistrationTx(tx_hash="0x" + "ab" * 32, block_number=123)
    proof = build_proof(**_vector_inputs(tx=tx))
    assert proof["tx"] == {"txHash": "0x" + "ab" * 32, "blockNumber": 123}
    assert list(proof) == ["version", "generated_at", "network", "registry", "content", "manifest",
                           "onchain", "signature", "tx", "verification", "evidence"]


def test_proof_warn_and_fail_and_defaults():
    warn = build_proof(**_vector_inputs(
        checks=compute_checks(HASH, MANIFEST, CREATOR, ENTRY, "ipfs://other"), manifest_uri="ipfs://other",
        file_name=None, generated_at=None))
    assert warn["verification"] == {"fileHashMatchesManifest": True, "creatorMatchesOnchain": True,
                                    "manifestURIMatchesOnchain": False, "status": "WARN"}
    assert warn["signature"] == {"recovered": CREATOR, "valid": True}
    assert warn["content"]["file"] == "unknown"
    assert warn["manifest"]["uri"] == "ipfs://other"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", warn["generated_at"])
    fail = build_proof(**_vector_inputs(recovered=OTHER, checks=compute_checks(HASH, MANIFEST, OTHER, ENTRY, URI)))
    assert fail["signature"] == {"recovered": OTHER, "valid": False}
    assert fail["verification"]["status"] == "FAIL"


@pytest.mark.parametrize("chain,name", [
    (1, "mainnet"), (11155111, "sepolia"), (8453, "base"), (84532, "base-sepolia"), (10, "optimism"),
    (11155420, "optimism-sepolia"), (137, "matic"), (80002, "matic-amoy"), (42161, "arbitrum"),
    (421614, "arbitrum-sepolia"), (31337, "localhost"), (131277322940537, "unknown"), (999999, "unknown"),
])
def test_network_names(chain, name):
    assert network_name(chain) == name
    assert build_proof(**_vector_inputs(evidence=evidence(chain)))["network"] == {"chainId": chain, "name": name}


def test_iso_now_format():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", iso_now())
