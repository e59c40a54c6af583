"""POST /api/verify and /api/proof over real HTTP against the dev chain, IPFS node and Postgres,
with manifests signed by fresh keys."""
from __future__ import annotations

import json
import os

import pytest

from devstack.anchoring import ipfs_add, new_funded_key, sign_manifest
from tests.integration.conftest import form

pytestmark = pytest.mark.emulator_neutral  # the synchronous endpoints use neither S3 nor SQS

ZERO = "0x0000000000000000000000000000000000000000"


def target(anchored, registry: str, rpc_url: str | None = None) -> dict[str, str]:
    fields = {"registryAddress": registry, "manifestURI": anchored.manifest_uri}
    if rpc_url:
        fields["rpcUrl"] = rpc_url
    return fields


@pytest.mark.parametrize("layout", ["ContentRegistry", "ContentRegistryCompact"])
def test_registered_content_verifies_ok_on_both_layouts(stack, api, anchored, layout):
    registry = stack.endpoints["registry_addresses"][layout]
    data = os.urandom(2048)
    item = anchored(data, registry=registry)

    response = api.post("/api/verify", **form(target(item, registry, stack.endpoints["rpc_url"]), data))

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "OK"
    assert result["fileHash"] == item.content_hash
    assert result["recovered"] == item.creator
    assert result["onchain"]["creator"] == item.creator
    assert result["onchain"]["manifestURI"] == item.manifest_uri
    assert result["onchain"]["timestamp"] > 1_600_000_000
    assert result["checks"] == {"manifestHashOk": True, "creatorOk": True, "manifestOk": True}


def test_other_bytes_fail(stack, api, anchored):
    item = anchored(os.urandom(512))
    response = api.post("/api/verify", **form(target(item, stack.endpoints["registry_address"]), b"other bytes"))
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "FAIL"
    assert result["checks"]["manifestHashOk"] is False


def test_manifest_uri_differing_from_onchain_warns(stack, api, anchored, creator_key):
    data = os.urandom(700)
    item = anchored(data)
    # The same creator signs a second manifest for the same content, stored at another CID.
    other = sign_manifest(item.content_hash, creator_key, stack.endpoints["chain_id"])
    other["created_at"] = "2030-01-01T00:00:00.000Z"
    other_uri = "ipfs://" + ipfs_add(stack.endpoints["ipfs_api_url"], json.dumps(other).encode())
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": other_uri}

    result = api.post("/api/verify", **form(fields, data)).json()

    assert result["status"] == "WARN"
    assert result["checks"] == {"manifestHashOk": True, "creatorOk": True, "manifestOk": False}
    assert result["onchain"]["manifestURI"] == item.manifest_uri


def test_signer_who_is_not_the_onchain_creator_fails(stack, api, anchored):
    impostor = new_funded_key(stack.endpoints["rpc_url"], stack.endpoints["funded_private_key"])
    data = os.urandom(300)
    item = anchored(data, signer_key=impostor)

    result = api.post("/api/verify", **form(target(item, stack.endpoints["registry_address"]), data)).json()

    assert result["status"] == "FAIL"
    assert result["checks"]["creatorOk"] is False
    assert result["recovered"] != item.creator
    assert result["onchain"]["creator"] == item.creator


def test_unregistered_content_fails_with_zero_creator(stack, api, anchored):
    data = os.urandom(256)
    item = anchored(data, register=False)

    result = api.post("/api/verify", **form(target(item, stack.endpoints["registry_address"]), data)).json()

    assert result["status"] == "FAIL"
    assert result["onchain"]["creator"] == ZERO
    assert result["onchain"]["manifestURI"] == ""
    assert result["checks"]["creatorOk"] is False


@pytest.mark.parametrize("layout", ["ContentRegistry", "ContentRegistryCompact"])
def test_proof_carries_registration_transaction(stack, api, anchored, layout):
    registry = stack.endpoints["registry_addresses"][layout]
    data = os.urandom(4096)
    item = anchored(data, registry=registry)

    response = api.post("/api/proof", **form(target(item, registry), data, name="clip.mp4", content_type="video/mp4"))

    assert response.status_code == 200, response.text
    proof = response.json()
    assert proof["version"] == "1.0"
    assert proof["network"]["chainId"] == stack.endpoints["chain_id"]
    assert proof["registry"].lower() == registry.lower()
    assert proof["content"] == {"file": "clip.mp4", "hash": item.content_hash}
    assert proof["manifest"]["uri"] == item.manifest_uri
    assert proof["manifest"]["cid"] == item.manifest_uri.removeprefix("ipfs://")
    assert proof["manifest"]["signature"] == item.manifest["signature"]
    assert proof["signature"] == {"recovered": item.creator, "valid": True}
    assert proof["tx"] == {"txHash": item.tx_hash, "blockNumber": item.block_number}
    assert proof["verification"] == {"fileHashMatchesManifest": True, "creatorMatchesOnchain": True,
                                     "manifestURIMatchesOnchain": True, "status": "OK"}


def test_proof_matches_the_original_services_shape(stack, api, anchored):
    with open("tests/fixtures/vectors/base-sepolia-proof.json") as fh:
        original = json.load(fh)
    data = os.urandom(100)
    item = anchored(data)
    proof = api.post("/api/proof", **form(target(item, stack.endpoints["registry_address"]), data)).json()

    assert list(proof) == [*[k for k in original if k != "verification"], "tx", "verification", "evidence"]
    for section in ("content", "manifest", "onchain", "signature", "verification"):
        added = {"revoked"} if section == "onchain" else set()  # additive fields of API.md
        assert set(proof[section]) == set(original[section]) | added, section
    assert set(proof["network"]) == {"chainId", "name"}
