"""Registry reads: the entry decoder, log-scan windows, RPC error classes, over fakes.

Reads from real contracts on a real EVM (both layouts, missing contracts, the newest log) run
against anvil in tests/integration/test_devchain.py.
"""
from dataclasses import replace

import pytest
from eth_abi import encode
from web3 import Web3

from chalicelib.config import Settings
from chalicelib.errors import PermanentError, TransientError
from chalicelib.verification import netguard, registry
from chalicelib.verification.netguard import UrlNotAllowed
from chalicelib.verification.registration import CONTENT_REGISTERED_TOPIC, RegistrationTx, find_registration
from chalicelib.verification.registry import OnchainEntry, decode_entry, pin_block, read_entry
from chalicelib.verification.rpc import chain_id, connect

CREATOR = "0xA11B0dC0ef5E51b47368a9AF802d97201C0c6F52"
HASH = "0x0abe8d173cc31e8c4095fdd2576bef72f596f8c804c2623022c7cab5c6b12c8e"
URI = "ipfs://QmYBL4FCdr7YmHm6UEeLGf6UQE2rMqkAEttbCFDNbm1u5o"
TS = 1759774786


def layout_a(creator=CREATOR, content_hash=HASH, uri=URI, ts=TS):
    return encode(["address", "bytes32", "string", "uint64"], [creator, bytes.fromhex(content_hash[2:]), uri, ts])


def layout_b(creator=CREATOR, uri=URI, ts=TS):
    return encode(["address", "uint64", "string"], [creator, ts, uri])


# --- entries(bytes32) ------------------------------------------------------------------------

@pytest.mark.parametrize("uri", ["", "x", "https://example.com/" + "m" * 300, "ipfs://Qm" + "a" * 44])
def test_decoder_layouts_with_various_uris(uri):
    assert decode_entry(layout_a(uri=uri)).manifest_uri == uri
    assert decode_entry(layout_b(uri=uri)).manifest_uri == uri
    # A timestamp that is not the content hash word: layout A's second word is the hash.
    assert decode_entry(layout_a(uri=uri, ts=5)).timestamp == 5
    assert decode_entry(layout_b(uri=uri, ts=7)).timestamp == 7


@pytest.mark.parametrize("data", [
    b"",
    b"\x00" * 64,
    encode(["address", "uint64", "uint64"], [CREATOR, 1, 2]),  # offset word 2: neither layout
    layout_b()[:100],  # truncated string
    encode(["uint256", "uint256", "uint256"], [0, 0, 0x60]),  # offset without a length word
])
def test_decoder_refuses_unknown_data(data):
    with pytest.raises(PermanentError) as info:
        decode_entry(data)
    assert info.value.code == "REGISTRY_INCOMPATIBLE"


@pytest.mark.parametrize("address,content_hash,code", [
    ("0x1234", HASH, "REGISTRY_ADDRESS_INVALID"),
    (CREATOR, "0x1234", "CONTENT_HASH_INVALID"),
])
def test_bad_inputs(address, content_hash, code):
    with pytest.raises(PermanentError) as info:
        read_entry(FakeW3(None), address, content_hash)  # refused before any RPC call
    assert info.value.code == code


def test_entries_selector():
    assert registry.ENTRIES_SELECTOR == Web3.keccak(text="entries(bytes32)")[:4]


# --- ContentRegistered logs ------------------------------------------------------------------

class FakeEth:
    """Records eth_getLogs ranges; answers logs at the configured blocks."""

    def __init__(self, latest, log_blocks, max_range=None):
        self.block_number = latest
        self.log_blocks = log_blocks
        self.max_range = max_range
        self.ranges = []

    def get_logs(self, params):
        lo, hi = params["fromBlock"], params["toBlock"]
        self.ranges.append((lo, hi))
        assert params["topics"] == [CONTENT_REGISTERED_TOPIC, HASH]
        if self.max_range and hi - lo + 1 > self.max_range:
            from web3.exceptions import Web3RPCError
            raise Web3RPCError("block range too large")
        return [{"blockNumber": b, "logIndex": i, "transactionHash": bytes([b % 256]) * 32}
                for b in self.log_blocks if lo <= b <= hi for i in (0, 1)]


class FakeW3:
    def __init__(self, eth):
        self.eth = eth


def scan(latest, log_blocks, max_range=None, **settings):
    eth = FakeEth(latest, log_blocks, max_range)
    found = find_registration(FakeW3(eth), CREATOR, HASH, Settings(**settings))
    return found, eth.ranges


def test_scan_goes_backwards_in_windows_to_the_lookback_limit():
    found, ranges = scan(100_000, [], log_scan_block_range=10_000, log_scan_lookback_blocks=35_000)
    assert found is None
    assert ranges == [(90_001, 100_000), (80_001, 90_000), (70_001, 80_000), (65_000, 70_000)]


def test_scan_defaults_to_a_million_blocks():
    found, ranges = scan(2_500_000, [])
    # From latest - 1,000,000 (as the original did) up to latest, 10,000 blocks at a time.
    assert ranges[0] == (2_490_001, 2_500_000) and ranges[-1] == (1_500_000, 1_500_000)
    assert len(ranges) == 101 and all(hi - lo < 10_000 for lo, hi in ranges)
    assert all(later[0] == earlier[1] + 1 for later, earlier in zip(ranges, ranges[1:]))


def test_scan_stops_at_the_first_window_with_a_match_and_takes_the_newest():
    found, ranges = scan(100_000, [50, 75_000, 75_500, 99], log_scan_block_range=10_000)
    assert found == RegistrationTx(tx_hash="0x" + bytes([75_500 % 256]).hex() * 32, block_number=75_500)
    assert ranges == [(90_001, 100_000), (80_001, 90_000), (70_001, 80_000)]


def test_scan_honours_the_start_block():
    found, ranges = scan(30_000, [5], log_scan_block_range=10_000, registry_start_block=12_345)
    assert found is None
    assert ranges == [(20_001, 30_000), (12_345, 20_000)]
    assert scan(100, [5], registry_start_block=500) == (None, [])  # start after latest
    found, ranges = scan(100, [0], log_scan_block_range=40, registry_start_block=0)
    assert found.block_number == 0 and ranges == [(61, 100), (21, 60), (0, 20)]


def test_scan_near_genesis():
    found, ranges = scan(5, [], log_scan_block_range=10_000)
    assert ranges == [(0, 5)]


def test_scan_halves_the_window_when_the_provider_refuses_the_range():
    found, ranges = scan(10_000, [9_000], max_range=3_000, log_scan_block_range=10_000)
    assert found.block_number == 9_000
    assert ranges == [(1, 10_000), (5_001, 10_000), (7_501, 10_000)]


def test_scan_gives_up_when_even_one_block_is_refused():
    with pytest.raises(TransientError) as info:
        scan(100, [], max_range=-1, log_scan_block_range=8)  # refuses everything
    assert info.value.code == "RPC_ERROR"


# --- connect() and RPC errors over HTTP (the `rpc` fixture: tests/unit/conftest.py) ----------

LOCAL = Settings(allow_private_networks=True, http_timeout_seconds=2)


def test_connect_talks_through_the_guarded_session(rpc):
    rpc.answers["eth_chainId"] = (200, {"result": hex(84532)})
    w3 = connect(rpc.url, LOCAL)
    assert chain_id(w3) == 84532
    session = w3.provider._request_session_manager.cache_and_return_session(rpc.url)
    assert isinstance(session.get_adapter(rpc.url), netguard.GuardedAdapter)


def test_connect_refuses_private_rpc_unless_allowed(rpc):
    with pytest.raises(UrlNotAllowed):
        connect(rpc.url, replace(LOCAL, allow_private_networks=False))
    with pytest.raises(UrlNotAllowed):
        connect("http://169.254.169.254/", LOCAL)
    with pytest.raises(UrlNotAllowed):
        connect("ws://127.0.0.1:8546", LOCAL)
    assert rpc.calls == []


def test_connect_requires_a_url():
    with pytest.raises(PermanentError) as info:
        connect(None, LOCAL)
    assert info.value.code == "RPC_URL_REQUIRED"


def test_rebinding_is_caught_when_web3_connects(rpc, monkeypatch):
    monkeypatch.setattr(netguard, "resolve_host", lambda host, port: ["93.184.216.34"])
    w3 = connect(rpc.url.replace("127.0.0.1", "localhost"), replace(LOCAL, allow_private_networks=False))
    with pytest.raises(UrlNotAllowed):
        chain_id(w3)
    assert rpc.calls == []


@pytest.mark.parametrize("status,code,transient", [
    (500, "RPC_UNAVAILABLE", True), (502, "RPC_UNAVAILABLE", True), (429, "RPC_UNAVAILABLE", True),
    (401, "RPC_REJECTED", False), (404, "RPC_REJECTED", False),
])
def test_http_errors(rpc, status, code, transient):
    rpc.answers["eth_chainId"] = (status, b"error")
    with pytest.raises((TransientError, PermanentError)) as info:
        chain_id(connect(rpc.url, LOCAL))
    assert info.value.code == code and info.value.permanent is not transient


def test_json_rpc_error_is_transient(rpc):
    rpc.answers["eth_chainId"] = (200, {"error": {"code": -32000, "message": "header not found"}})
    with pytest.raises(TransientError) as info:
        chain_id(connect(rpc.url, LOCAL))
    assert info.value.code == "RPC_ERROR"


def test_non_json_answer_is_transient(rpc):
    rpc.answers["eth_chainId"] = (200, b"<html>captive portal</html>")
    with pytest.raises(TransientError) as info:
        chain_id(connect(rpc.url, LOCAL))
    assert info.value.code == "RPC_ERROR"


def test_unreachable_rpc_is_transient():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(TransientError) as info:
        chain_id(connect(f"http://127.0.0.1:{port}", LOCAL))
    assert info.value.code == "RPC_UNAVAILABLE"


def test_rpc_timeout_is_transient():
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        w3 = connect(f"http://127.0.0.1:{listener.getsockname()[1]}", replace(LOCAL, http_timeout_seconds=0.3))
        with pytest.raises(TransientError) as info:
            chain_id(w3)
        assert info.value.code == "RPC_UNAVAILABLE"
    finally:
        listener.close()


def test_read_entry_over_http_both_layouts_and_revert(rpc):
    address = "0x" + "12" * 20
    rpc.answers["eth_getCode"] = (200, {"result": "0x6080"})
    w3 = connect(rpc.url, LOCAL)
    for data in (layout_a(), layout_b()):
        rpc.answers["eth_call"] = (200, {"result": "0x" + data.hex()})
        assert read_entry(w3, address, HASH) == OnchainEntry(CREATOR, URI, TS)
    rpc.answers["eth_call"] = (200, {"error": {"code": 3, "message": "execution reverted", "data": "0x"}})
    with pytest.raises(PermanentError) as info:
        read_entry(w3, address, HASH)
    assert info.value.code == "REGISTRY_INCOMPATIBLE"
    rpc.answers["eth_getCode"] = (200, {"result": "0x"})
    with pytest.raises(PermanentError) as info:
        read_entry(w3, address, HASH)
    assert info.value.code == "REGISTRY_NOT_FOUND"


@pytest.mark.parametrize("chain,head", [
    ((200, b"1"), (200, b"2")),  # a batch answered with bare numbers, not JSON-RPC responses
    ((200, {"result": hex(31337)}), (200, {"result": None})),  # no head block
    ((200, {"result": "0xzz"}), (200, {"result": {"number": "0x1", "hash": "0x" + "ab" * 32, "timestamp": "0x2"}})),
    ((200, {"result": hex(31337)}), (200, {"result": {"number": "0x1", "hash": "0xab", "timestamp": "0x2"}})),
    ((200, {"result": hex(31337)}), (200, {"result": {"number": 1, "hash": "0x" + "ab" * 32, "timestamp": "0x2"}})),
], ids=["bare-numbers", "no-head", "bad-chain-id", "short-hash", "number-not-hex"])
def test_a_malformed_head_is_a_transient_rpc_error(rpc, chain, head):
    rpc.answers["eth_chainId"], rpc.answers["eth_getBlockByNumber"] = chain, head
    with pytest.raises(TransientError) as info:
        pin_block(connect(rpc.url, LOCAL))
    assert info.value.code == "RPC_ERROR"


def test_the_head_is_read_from_the_nodes_hex(rpc):
    rpc.answers["eth_chainId"] = (200, {"result": hex(84532)})
    rpc.answers["eth_getBlockByNumber"] = (200, {"result": {"number": "0x1f", "hash": "0x" + "ab" * 32,
                                                           "timestamp": "0x6543"}})
    head = pin_block(connect(rpc.url, LOCAL))
    assert (head.chain_id, head.number, head.hash, head.timestamp) == (84532, 31, "0x" + "ab" * 32, 0x6543)
    assert rpc.round_trips == 1
