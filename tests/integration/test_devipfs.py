"""The dev IPFS node over real HTTP on loopback: Kubo's add RPC and the path gateway."""

import json

import pytest
import requests

from devstack.ipfs import DevIpfsNode

pytestmark = pytest.mark.integration

HELLO = b"hello world\n"
HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
HELLO_V1_RAW = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
HELLO_V1_DAG_PB = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
UNKNOWN = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"  # the empty file: never added here


@pytest.fixture(scope="module")
def node():
    ipfs = DevIpfsNode()
    ipfs.start()
    yield ipfs
    ipfs.stop()


def add(node, files, **params):
    response = requests.post(f"{node.api_url}/api/v0/add", params=params, files=files, timeout=10)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_add_answers_like_kubo(node):
    (entry,) = add(node, {"file": ("hello.txt", HELLO, "text/plain")})
    assert entry == {"Name": "hello.txt", "Hash": HELLO_V0, "Size": "20"}


def test_add_cid_version_1_uses_raw_leaves(node):
    (entry,) = add(node, {"file": ("hello.txt", HELLO)}, **{"cid-version": "1"})
    assert entry["Hash"] == HELLO_V1_RAW
    assert entry["Size"] == "12"


def test_gateway_returns_exact_bytes_under_each_cid_of_the_content(node):
    add(node, {"file": ("hello.txt", HELLO)})
    response = requests.get(f"{node.gateway_url}/ipfs/{HELLO_V0}", timeout=10)
    assert response.status_code == 200
    assert response.content == HELLO
    # the same dag-pb block under its CIDv1 name
    assert requests.get(f"{node.gateway_url}/ipfs/{HELLO_V1_DAG_PB}", timeout=10).content == HELLO
    add(node, {"file": ("hello.txt", HELLO)}, **{"cid-version": "1"})
    assert requests.get(f"{node.gateway_url}/ipfs/{HELLO_V1_RAW}", timeout=10).content == HELLO


def test_multi_chunk_file_round_trips(node):
    data = (bytes(range(251)) * 5000)[: 1024 * 1024]  # four 256 KiB chunks
    (entry,) = add(node, {"file": ("big.bin", data, "application/octet-stream")})
    assert entry["Hash"] == "QmXgkY4miMKJBrg8YYke4xw6C2n8WNsUc1GXLhN84k4QM3"
    assert int(entry["Size"]) > len(data)
    (v1,) = add(node, {"file": ("big.bin", data)}, **{"cid-version": "1"})
    assert v1["Hash"] == "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau"
    for cid in (entry["Hash"], v1["Hash"]):
        assert requests.get(f"{node.gateway_url}/ipfs/{cid}", timeout=10).content == data


def test_json_manifest_round_trips(node):
    manifest = json.dumps({"version": "1.0", "content_hash": "0x" + "ab" * 32}).encode()
    (entry,) = add(node, {"file": ("manifest.json", manifest, "application/json")})
    fetched = requests.get(f"{node.gateway_url}/ipfs/{entry['Hash']}", timeout=10)
    assert fetched.status_code == 200
    assert fetched.json()["content_hash"] == "0x" + "ab" * 32


def test_several_files_in_one_request_answer_one_line_each(node):
    entries = add(node, [("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))])
    assert [e["Name"] for e in entries] == ["a.txt", "b.txt"]
    assert [requests.get(f"{node.gateway_url}/ipfs/{e['Hash']}", timeout=10).content for e in entries] == [b"a", b"b"]


def test_unknown_and_invalid_cids_and_paths(node):
    missing = requests.get(f"{node.gateway_url}/ipfs/{UNKNOWN}", timeout=10)
    assert missing.status_code == 404
    assert missing.text
    assert requests.get(f"{node.gateway_url}/ipfs/not-a-cid", timeout=10).status_code == 400
    add(node, {"file": ("hello.txt", HELLO)})
    assert requests.get(f"{node.gateway_url}/ipfs/{HELLO_V0}/sub/path", timeout=10).status_code == 404
    assert requests.get(f"{node.gateway_url}/elsewhere", timeout=10).status_code == 404


def test_rpc_errors_look_like_kubo(node):
    bad = requests.post(f"{node.api_url}/api/v0/add", data=b"plain body", timeout=10)
    assert bad.status_code == 400
    assert bad.json()["Type"] == "error"
    assert requests.post(f"{node.api_url}/api/v0/nope", timeout=10).status_code == 404
    assert requests.post(f"{node.api_url}/api/v0/add?cid-version=7", files={"file": b"x"}, timeout=10).status_code == 400


def test_python_api_adds_what_the_gateway_serves(node):
    cid = node.add(b"added in process")
    assert cid.startswith("Qm")
    assert requests.get(f"{node.gateway_url}/ipfs/{cid}", timeout=10).content == b"added in process"
    assert node.get(cid) == b"added in process"
