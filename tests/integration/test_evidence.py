"""Results that hold up as evidence, over real HTTP on the local stack: revoked registrations,
updated manifests, the pinned block, registrations far behind the head, several IPFS gateways.

Each chain case runs on the stack's dev chain (31337) and on a second anvil with chain id 84532
that the jobs reach through their `rpcUrl` (the local stack allows private networks), behind
the counting proxy of tests/integration/deepchain.py.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from web3 import Web3

from devstack.anchoring import Anchored, anchor, ipfs_add, new_funded_key, revoke_content, sign_manifest, update_manifest
from devstack.anvil import Anvil
from tests.integration.conftest import extra_api, form
from tests.integration.deepchain import DeepChainProxy

pytestmark = [pytest.mark.integration, pytest.mark.emulator_neutral]  # evidence from the chain and the gateways

SECOND_CHAIN_ID = 84532
CALL_BUDGET = 40


@dataclass
class Chain:
    """Where a test registers (`write_url`, anvil itself) and what the jobs are told to read
    (`rpc_url`: None for the stack's own RPC_URL, else the proxy)."""

    chain_id: int
    write_url: str
    rpc_url: str | None
    read_url: str  # what the service reads through, for checking its evidence
    registry: str
    creator_key: str


@pytest.fixture(scope="module")
def second_anvil():
    chain = Anvil(chain_id=SECOND_CHAIN_ID).start()
    chain.deploy_registries()
    yield chain
    chain.stop()


@pytest.fixture
def proxy(second_anvil):
    server = DeepChainProxy(second_anvil.rpc_url)
    yield server
    server.close()


@pytest.fixture(params=["dev-chain", "second-chain"])
def chain(request, stack, creator_key) -> Chain:
    if request.param == "dev-chain":
        url = stack.endpoints["rpc_url"]
        return Chain(stack.endpoints["chain_id"], url, None, url, stack.endpoints["registry_address"], creator_key)
    anvil, proxy = request.getfixturevalue("second_anvil"), request.getfixturevalue("proxy")
    return Chain(SECOND_CHAIN_ID, anvil.rpc_url, proxy.url, proxy.url, anvil.registries["ContentRegistry"],
                 new_funded_key(anvil.rpc_url, anvil.funded_private_keys[0]))


def anchored_on(stack, chain: Chain, data: bytes) -> Anchored:
    return anchor(data, rpc_url=chain.write_url, registry=chain.registry, ipfs_api_url=stack.endpoints["ipfs_api_url"],
                  creator_key=chain.creator_key, chain_id=chain.chain_id)


def fields(chain: Chain, manifest_uri: str) -> dict[str, str]:
    target = {"registryAddress": chain.registry, "manifestURI": manifest_uri}
    if chain.rpc_url:
        target["rpcUrl"] = chain.rpc_url
    return target


def results(api, kind: str, target: dict[str, str], data: bytes) -> dict[str, dict]:
    """The result of one `kind` ("verify" or "proof") verification, sync and through a job."""
    sync = api.post(f"/api/{kind}", **form(target, data))
    assert sync.status_code == 200, sync.text
    submitted = api.post(f"/api/verification-jobs/{kind}", **form(target, data))
    assert submitted.status_code == 202, submitted.text
    job = api.wait_for_job(submitted.json()["jobId"])
    assert job["status"] == "completed", job
    return {"sync": sync.json(), "async": job["result"]}


def status_of(kind: str, result: dict) -> str:
    return result["status"] if kind == "verify" else result["verification"]["status"]


def assert_evidence(result: dict, chain: Chain) -> None:
    """The evidence names the chain, and a block the chain has, by its number and hash."""
    evidence = result["evidence"]
    assert evidence["chainId"] == chain.chain_id and evidence["cached"] is False
    block = Web3(Web3.HTTPProvider(chain.read_url)).eth.get_block(evidence["blockNumber"])
    assert evidence["blockHash"] == Web3.to_hex(block["hash"])
    assert evidence["checkedAt"].endswith("Z")


@pytest.mark.parametrize("kind", ["verify", "proof"])
def test_a_revoked_registration_fails_with_revoked_true(stack, api, chain, kind):
    data = os.urandom(1024)
    item = anchored_on(stack, chain, data)
    before = results(api, kind, fields(chain, item.manifest_uri), data)
    revoked = revoke_content(chain.write_url, chain.registry, chain.creator_key, item.content_hash)
    after = results(api, kind, fields(chain, item.manifest_uri), data)

    for mode in ("sync", "async"):
        assert status_of(kind, before[mode]) == "OK" and before[mode]["onchain"]["revoked"] is False
        result = after[mode]
        assert status_of(kind, result) == "FAIL", (mode, result)
        assert result["onchain"] == {"creator": item.creator, "manifestURI": "",
                                     "timestamp": before[mode]["onchain"]["timestamp"], "revoked": True}
        assert_evidence(result, chain)
        assert result["evidence"]["blockNumber"] >= revoked["blockNumber"] > before[mode]["evidence"]["blockNumber"]
        if kind == "proof":
            assert result["tx"] == {"txHash": item.tx_hash, "blockNumber": item.block_number}


def test_an_updated_manifest_is_ok_for_the_new_uri_and_warn_for_the_old(stack, api, chain):
    data = os.urandom(900)
    item = anchored_on(stack, chain, data)
    newer = sign_manifest(item.content_hash, chain.creator_key, chain.chain_id)
    newer["created_at"] = "2030-01-01T00:00:00.000Z"  # another document, so another CID
    new_uri = "ipfs://" + ipfs_add(stack.endpoints["ipfs_api_url"], json.dumps(newer).encode())
    update_manifest(chain.write_url, chain.registry, chain.creator_key, item.content_hash, new_uri)

    for manifest_uri, expected in ((new_uri, "OK"), (item.manifest_uri, "WARN")):
        for mode, result in results(api, "verify", fields(chain, manifest_uri), data).items():
            assert result["status"] == expected, (manifest_uri, mode, result)
            assert result["onchain"]["manifestURI"] == new_uri and result["onchain"]["revoked"] is False
            assert_evidence(result, chain)


@pytest.mark.parametrize("depth", [1_500_000])
def test_a_proof_far_behind_the_head_finds_its_tx_within_the_call_budget(stack, api, second_anvil, proxy, depth):
    chain = Chain(SECOND_CHAIN_ID, second_anvil.rpc_url, proxy.url, proxy.url, second_anvil.registries["ContentRegistry"],
                  new_funded_key(second_anvil.rpc_url, second_anvil.funded_private_keys[0]))
    data = os.urandom(800)
    item = anchored_on(stack, chain, data)
    head = proxy.insert_blocks(depth)
    assert head - item.block_number > depth  # beyond the bounded scan's 1,000,000 blocks

    proxy.reset()
    submitted = api.post("/api/verification-jobs/proof", **form(fields(chain, item.manifest_uri), data))
    job = api.wait_for_job(submitted.json()["jobId"])
    assert job["status"] == "completed", job
    proof = job["result"]
    assert proof["tx"] == {"txHash": item.tx_hash, "blockNumber": item.block_number}
    assert proof["verification"]["status"] == "OK" and proof["evidence"]["blockNumber"] == head
    assert_evidence(proof, chain)
    assert proxy.counts.calls <= CALL_BUDGET, proxy.counts.methods


# --- several IPFS gateways --------------------------------------------------------------------

class FailingGateway:
    """An HTTP server that answers every request with `status`, counting them."""

    def __init__(self, status: int) -> None:
        self.requests: list[str] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gateway.requests.append(self.path)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_gateways_down_or_failing_hand_over_to_the_next(stack, anchored):
    busy = FailingGateway(503)
    down = closed_port_url()
    gateways = ",".join([down, busy.url, stack.endpoints["ipfs_gateway_url"]])
    work_dir = Path(tempfile.mkdtemp(prefix="iid-gateways-"))
    try:
        with extra_api(stack, {"IPFS_GATEWAY": gateways}, work_dir) as api:
            data = os.urandom(600)
            item = anchored(data)
            target = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri}
            response = api.post("/api/verify", **form(target, data))
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "OK"
            cid = item.manifest_uri.removeprefix("ipfs://")
            assert busy.requests == [f"/ipfs/{cid}"]  # asked after the one that is down, before the last
    finally:
        busy.close()
