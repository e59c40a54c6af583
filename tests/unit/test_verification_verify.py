"""verify_hash and prove_hash end to end against a loopback server that is both the manifest
host (GET) and the JSON-RPC endpoint (POST)."""
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from eth_abi import encode

from chalicelib.config import Settings
from chalicelib.errors import PermanentError, TransientError
from chalicelib.verification import prove_hash, verify_hash
from chalicelib.verification.registration import CONTENT_REGISTERED_TOPIC
from tests.unit.conftest import LoopbackRpc, send

VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "vectors"
MANIFEST_BYTES = (VECTORS / "base-sepolia-manifest.json").read_bytes()
PROOF = json.loads((VECTORS / "base-sepolia-proof.json").read_text())
HASH = json.loads(MANIFEST_BYTES)["content_hash"]
CREATOR = "0xA11B0dC0ef5E51b47368a9AF802d97201C0c6F52"
REGISTRY = PROOF["registry"]
TS = 1759774786
TX_HASH = "0x" + "5e" * 32
CID = PROOF["manifest"]["cid"]
HEAD = 20_000
REGISTERED_IN = 4_321  # the block whose timestamp is TS (2 s blocks)


def block_hash(number):
    return "0x" + f"{number:064x}"


def evidence_of(result):
    """The evidence, with checkedAt checked for its format and then left out."""
    evidence = dict(result["evidence"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", evidence.pop("checkedAt"))
    return evidence


PINNED = {"chainId": 84532, "blockNumber": HEAD, "blockHash": block_hash(HEAD), "cached": False,
          "rpc": {"host": "127.0.0.1", "deploymentNode": False}}  # the client's node: no RPC_URL set


class Node(LoopbackRpc):
    """Serves /manifest.json and answers JSON-RPC like a chain with one registry entry."""

    def __init__(self):
        super().__init__()
        self.get_paths = []
        self.rpc_methods = self.calls  # the JSON-RPC methods asked, in order
        self.set_entry("A")
        self.logs_at = [REGISTERED_IN]
        self.logs_answer = None  # (status, payload) to override eth_getLogs
        self.code = "0x6080604052"
        self.read_at = []  # the block parameters of eth_getCode and eth_call

    def get(self, handler):
        self.get_paths.append(handler.path)
        if handler.path not in ("/manifest.json", f"/ipfs/{CID}"):
            handler.send_error(404)
            return
        send(handler, 200, MANIFEST_BYTES)

    def answer(self, method, params):
        if method == "eth_chainId":
            return 200, {"result": hex(84532)}
        if method == "eth_getCode":
            self.read_at.append(params[1])
            return 200, {"result": self.code}
        if method == "eth_call":
            self.read_at.append(params[1])
            return 200, {"result": "0x" + self.entry.hex()}
        if method == "eth_blockNumber":
            return 200, {"result": hex(HEAD)}
        if method == "eth_getBlockByNumber":
            number = HEAD if params[0] == "latest" else int(params[0], 16)
            return 200, {"result": {"number": hex(number), "hash": block_hash(number),
                                    "timestamp": hex(TS + (number - REGISTERED_IN) * 2)}}
        if method == "eth_getLogs":
            if self.logs_answer:
                return self.logs_answer
            lo, hi = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
            logs = [{
                "address": REGISTRY.lower(), "blockHash": "0x" + "bb" * 32, "blockNumber": hex(b),
                "data": "0x" + encode(["string", "uint64"], ["x", TS]).hex(), "logIndex": "0x0",
                "removed": False, "topics": [CONTENT_REGISTERED_TOPIC, HASH, "0x" + "00" * 12 + CREATOR[2:].lower()],
                "transactionHash": TX_HASH, "transactionIndex": "0x0",
            } for b in self.logs_at if lo <= b <= hi]
            return 200, {"result": logs}
        return 200, {"error": {"code": -32601, "message": "method not found"}}

    def set_entry(self, layout, creator=CREATOR, uri="", ts=TS):
        if layout == "A":
            self.entry = encode(["address", "bytes32", "string", "uint64"], [creator, bytes.fromhex(HASH[2:]), uri, ts])
        else:
            self.entry = encode(["address", "uint64", "string"], [creator, ts, uri])


@pytest.fixture()
def node():
    n = Node()
    yield n
    n.close()


@pytest.fixture()
def settings(node):
    return Settings(ipfs_gateway=node.url, allow_private_networks=True, http_timeout_seconds=5,
                    log_scan_block_range=10_000)


@pytest.mark.parametrize("layout", ["A", "B"])
def test_verify_ok(node, settings, layout):
    uri = node.url + "/manifest.json"
    node.set_entry(layout, uri=uri)
    steps = []
    result = verify_hash(HASH, uri, REGISTRY.lower(), node.url, settings, progress=steps.append)
    assert evidence_of(result) == PINNED
    del result["evidence"]
    assert result == {
        "status": "OK", "fileHash": HASH, "recovered": CREATOR,
        "onchain": {"creator": CREATOR, "manifestURI": uri, "timestamp": TS, "revoked": False},
        "checks": {"manifestHashOk": True, "creatorOk": True, "manifestOk": True},
    }
    assert steps == [30, 50, 70]
    # Two round trips: the head with the chain id, then code and entry at that very block.
    assert node.rpc_methods == ["eth_chainId", "eth_getBlockByNumber", "eth_getCode", "eth_call"]
    assert node.round_trips == 2
    assert node.read_at == [hex(HEAD), hex(HEAD)]


@pytest.mark.parametrize("layout", ["A", "B"])
def test_a_revoked_registration_fails_in_verify_and_proof(node, settings, layout):
    uri = node.url + "/manifest.json"
    node.set_entry(layout, uri="")  # what revoke() leaves: creator and timestamp kept
    result = verify_hash(HASH, uri, REGISTRY, node.url, settings)
    assert result["status"] == "FAIL"
    assert result["onchain"] == {"creator": CREATOR, "manifestURI": "", "timestamp": TS, "revoked": True}
    assert result["checks"] == {"manifestHashOk": True, "creatorOk": True, "manifestOk": False}
    proof = prove_hash(HASH, "f", uri, REGISTRY, node.url, settings)
    assert proof["onchain"]["revoked"] is True and proof["verification"]["status"] == "FAIL"
    assert proof["tx"] == {"txHash": TX_HASH, "blockNumber": REGISTERED_IN}  # still cited


def test_verify_warn_when_onchain_uri_differs(node, settings):
    node.set_entry("B", uri="ipfs://QmSomewhereElse")
    result = verify_hash(HASH, node.url + "/manifest.json", REGISTRY, node.url, settings)
    assert result["status"] == "WARN"
    assert result["checks"] == {"manifestHashOk": True, "creatorOk": True, "manifestOk": False}


def test_verify_fail_when_file_differs(node, settings):
    uri = node.url + "/manifest.json"
    node.set_entry("A", uri=uri)
    result = verify_hash("0x" + "00" * 32, uri, REGISTRY, node.url, settings)
    assert result["status"] == "FAIL" and result["checks"]["manifestHashOk"] is False


def test_unregistered_content_is_a_fail_result(node, settings):
    node.set_entry("A", creator="0x" + "00" * 20, ts=0)
    result = verify_hash(HASH, node.url + "/manifest.json", REGISTRY, node.url, settings)
    assert result["status"] == "FAIL"
    assert result["onchain"] == {"creator": "0x0000000000000000000000000000000000000000", "manifestURI": "",
                                 "timestamp": 0, "revoked": False}


def test_hash_is_normalised_to_lowercase(node, settings):
    result = verify_hash(HASH.upper().replace("0X", "0x"), node.url + "/manifest.json", REGISTRY, node.url, settings)
    assert result["fileHash"] == HASH


def test_proof_has_the_vector_shape_and_the_tx(node, settings):
    uri = node.url + "/manifest.json"
    node.set_entry("A", uri=uri)
    steps = []
    proof = prove_hash(HASH, "clip.mp4", uri, REGISTRY.lower(), node.url, settings, progress=steps.append)
    assert steps == [30, 50, 70, 85]
    assert proof["tx"] == {"txHash": TX_HASH, "blockNumber": REGISTERED_IN}
    assert evidence_of(proof) == PINNED
    # Found by the block timestamps: one eth_getLogs, over the one block that has the entry's time.
    assert node.rpc_methods.count("eth_getLogs") == 1
    assert "eth_blockNumber" not in node.rpc_methods  # the pinned head is the search's top
    assert len(node.rpc_methods) <= 12
    assert proof["network"] == {"chainId": 84532, "name": "base-sepolia"}
    assert proof["registry"] == REGISTRY  # checksummed
    assert proof["content"] == {"file": "clip.mp4", "hash": HASH}
    assert proof["manifest"]["cid"] is None  # an http manifest has no CID
    assert proof["verification"]["status"] == "OK"

    def shape(value):
        return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else None

    expected = shape(PROOF)
    del expected["network"]["rpc"]
    expected["tx"] = {"txHash": None, "blockNumber": None}
    expected["onchain"]["revoked"] = None
    expected["evidence"] = {key: None for key in ("chainId", "blockNumber", "blockHash", "checkedAt", "cached")}
    expected["evidence"]["rpc"] = {"host": None, "deploymentNode": None}
    assert shape(proof) == expected


def test_proof_without_log_has_no_tx(node, settings):
    node.logs_at = []
    proof = prove_hash(HASH, None, node.url + "/manifest.json", REGISTRY, node.url, settings)
    assert "tx" not in proof
    # The block with the entry's timestamp holds no log, so the bounded scan runs: blocks
    # 10,001-20,000, 1-10,000 and 0 (the lookback reaches below genesis).
    assert node.rpc_methods.count("eth_getLogs") == 4


def test_proof_of_unregistered_content_looks_for_no_log(node, settings):
    node.set_entry("A", creator="0x" + "00" * 20, ts=0)
    proof = prove_hash(HASH, None, node.url + "/manifest.json", REGISTRY, node.url, settings)
    assert "tx" not in proof and proof["verification"]["status"] == "FAIL"
    assert node.rpc_methods == ["eth_chainId", "eth_getBlockByNumber", "eth_getCode", "eth_call"]


def test_proof_ipfs_manifest_has_its_cid(node, settings):
    node.set_entry("A", uri=f"ipfs://{CID}")
    proof = prove_hash(HASH, "NCyUljOTUW68K1Oe.mp4", f"ipfs://{CID}", REGISTRY, node.url, settings)
    assert node.get_paths == [f"/ipfs/{CID}"]  # through the gateway
    assert proof["manifest"] == {k: PROOF["manifest"][k] for k in ("uri", "cid", "creator_did", "signature")}
    assert proof["onchain"] == {**PROOF["onchain"], "revoked": False}
    assert proof["signature"] == PROOF["signature"]
    assert proof["verification"] == PROOF["verification"]


def test_proof_when_provider_refuses_get_logs(node, settings):
    node.logs_answer = (200, {"error": {"code": -32005, "message": "logs disabled"}})
    proof = prove_hash(HASH, "f", node.url + "/manifest.json", REGISTRY, node.url, settings)
    assert "tx" not in proof  # best effort, as the original


def test_proof_retries_when_get_logs_is_unreachable(node, settings):
    node.logs_answer = (503, b"busy")
    with pytest.raises(TransientError) as info:
        prove_hash(HASH, "f", node.url + "/manifest.json", REGISTRY, node.url, settings)
    assert info.value.code == "RPC_UNAVAILABLE"


def test_rpc_url_required_before_any_work(node, settings):
    with pytest.raises(PermanentError) as info:
        verify_hash(HASH, node.url + "/manifest.json", REGISTRY, None, settings)
    assert info.value.code == "RPC_URL_REQUIRED"
    assert node.get_paths == [] and node.rpc_methods == []


@pytest.mark.parametrize("file_hash,registry,code", [
    ("0x1234", REGISTRY, "CONTENT_HASH_INVALID"),
    (HASH, "0xnope", "REGISTRY_ADDRESS_INVALID"),
])
def test_bad_inputs_fail_before_any_work(node, settings, file_hash, registry, code):
    with pytest.raises(PermanentError) as info:
        prove_hash(file_hash, "f", node.url + "/manifest.json", registry, node.url, settings)
    assert info.value.code == code
    assert node.get_paths == [] and node.rpc_methods == []


def test_missing_manifest_is_permanent(node, settings):
    with pytest.raises(PermanentError) as info:
        verify_hash(HASH, node.url + "/missing.json", REGISTRY, node.url, settings)
    assert info.value.code == "MANIFEST_NOT_FOUND"


def test_registry_without_code(node, settings):
    node.code = "0x"
    with pytest.raises(PermanentError) as info:
        verify_hash(HASH, node.url + "/manifest.json", REGISTRY, node.url, settings)
    assert info.value.code == "REGISTRY_NOT_FOUND"


def test_evidence_names_the_node_by_host_only_and_says_whether_it_is_the_deployments(node, settings):
    keyed = node.url + "/v3/secret-provider-key"  # the node answers on any path
    uri = node.url + "/manifest.json"
    own = verify_hash(HASH, uri, REGISTRY, keyed, replace(settings, rpc_url=keyed))
    chosen = prove_hash(HASH, "f", uri, REGISTRY, keyed, replace(settings, rpc_url=node.url + "/other"))
    assert own["evidence"]["rpc"] == {"host": "127.0.0.1", "deploymentNode": True}
    assert chosen["evidence"]["rpc"] == {"host": "127.0.0.1", "deploymentNode": False}
    assert "secret-provider-key" not in json.dumps([own, chosen])
