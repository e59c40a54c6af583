"""A verification against hostile nodes and manifest hosts on loopback: every proof makes a
bounded number of JSON-RPC calls whatever the node answers, an answer is capped after
decompression, and a server that drips bytes cannot hold a call past its deadline. Each test
prints the calls made (and the time a dripped call took)."""
from __future__ import annotations

import time

import pytest

from chalicelib.config import Settings
from chalicelib.errors import PermanentError, TransientError
from chalicelib.verification import prove_hash, verify_hash
from chalicelib.verification.registration import MIN_LOG_WINDOW
from tests import hostile as hostile_answers
from tests.hostile import drip, gzip_bomb, peak_rss_mib, send_bomb
from tests.unit.test_verification_verify import HASH, REGISTRY, Node

HUGE_HEAD = 2**62


class HostileNode(Node):
    """The chain of tests/unit/test_verification_verify.py with one hostile trait (`trait`)."""

    def __init__(self, trait: str) -> None:
        super().__init__()
        self.trait = trait
        self.logs_at = []  # the registration's log is never found: the search must still end

    def answer(self, method, params):
        if self.trait == "huge_head" and method == "eth_getBlockByNumber":
            number = HUGE_HEAD if params[0] == "latest" else int(params[0], 16)
            return 200, {"result": {"number": hex(number), "hash": "0x" + f"{number % 2**256:064x}",
                                    "timestamp": hex(number)}}
        if self.trait == "logs_error" and method == "eth_getLogs":
            return 200, {"error": {"code": -32005, "message": "query exceeds the block range limit"}}
        return super().answer(method, params)

    def methods(self, name: str) -> int:
        return self.rpc_methods.count(name)


@pytest.fixture()
def hostile(request):
    node = HostileNode(request.param)
    yield node
    node.close()


def _settings(node, **changes) -> Settings:
    return Settings(ipfs_gateway=node.url, allow_private_networks=True, http_timeout_seconds=2, **changes)


def _prove(node, settings):
    return prove_hash(HASH, "f", node.url + "/manifest.json", REGISTRY, node.url, settings)


@pytest.mark.parametrize("hostile", ["logs_error"], indirect=True)
def test_a_node_refusing_every_get_logs_costs_a_few_calls_and_a_proof_without_tx(hostile):
    hostile.set_entry("A", ts=0)  # no timestamp to search by: the backwards scan runs
    proof = _prove(hostile, _settings(hostile))
    print(f"\neth_getLogs refused every time: {len(hostile.rpc_methods)} JSON-RPC calls, "
          f"{hostile.methods('eth_getLogs')} eth_getLogs")
    assert "tx" not in proof
    # Halving from 10,000 blocks stops at MIN_LOG_WINDOW, not at one block.
    assert hostile.methods("eth_getLogs") == (10_000 // MIN_LOG_WINDOW).bit_length() + 1


@pytest.mark.parametrize("hostile", ["huge_head"], indirect=True)
def test_a_huge_head_ends_at_the_call_budget(hostile):
    settings = _settings(hostile, registry_start_block=0)  # a scan from genesis to 2**62
    with pytest.raises(PermanentError) as info:
        _prove(hostile, settings)
    print(f"\nhead 2**62: {len(hostile.rpc_methods)} JSON-RPC calls, {hostile.methods('eth_getLogs')} eth_getLogs")
    assert info.value.code == "RPC_LIMIT_EXCEEDED" and "RPC_CALL_BUDGET" in info.value.message
    assert len(hostile.rpc_methods) <= settings.rpc_call_budget


@pytest.mark.parametrize("hostile", ["huge_head"], indirect=True)
def test_a_huge_head_with_the_default_lookback_is_a_bounded_proof(hostile):
    settings = _settings(hostile)
    proof = _prove(hostile, settings)
    print(f"\nhead 2**62, default lookback: {len(hostile.rpc_methods)} JSON-RPC calls")
    assert "tx" not in proof and len(hostile.rpc_methods) <= settings.rpc_call_budget


@pytest.mark.parametrize("hostile", ["logs_error"], indirect=True)
def test_a_proof_for_a_never_registered_hash_makes_no_log_scan(hostile):
    hostile.set_entry("A", creator="0x" + "00" * 20, ts=0)
    proof = _prove(hostile, _settings(hostile))
    assert proof["onchain"]["creator"] == "0x" + "00" * 20
    assert hostile.methods("eth_getLogs") == 0 and hostile.methods("eth_getBlockByNumber") <= 1
    print(f"\nnever registered: {len(hostile.rpc_methods)} JSON-RPC calls")


class Misbehaving(Node):
    """Serves the manifest, but answers JSON-RPC (or the manifest, `target`) with `trait`."""

    def __init__(self, trait: str, target: str) -> None:
        super().__init__()
        self.trait, self.target = trait, target
        node = self
        original = self.httpd.RequestHandlerClass

        class Handler(original):
            def do_POST(self):
                if node.target == "rpc":
                    node.rpc_methods.append("(hostile answer)")
                    return node.misbehave(self)
                return original.do_POST(self)

            def do_GET(self):
                if node.target == "manifest":
                    return node.misbehave(self)
                return original.do_GET(self)

        self.httpd.RequestHandlerClass = Handler

    def misbehave(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        handler.rfile.read(length)
        (send_bomb if self.trait == "bomb" else drip)(handler)


@pytest.fixture()
def misbehaving(request):
    gzip_bomb()  # made before the clock of any call starts
    node = Misbehaving(*request.param)
    yield node
    node.close()


@pytest.mark.parametrize("misbehaving", [("bomb", "rpc"), ("bomb", "manifest")], indirect=True)
def test_a_gzip_bomb_is_refused_at_the_cap_and_memory_stays_flat(misbehaving):
    before = peak_rss_mib()
    with pytest.raises(PermanentError) as info:
        verify_hash(HASH, misbehaving.url + "/manifest.json", REGISTRY, misbehaving.url, _settings(misbehaving))
    growth = peak_rss_mib() - before
    print(f"\ngzip bomb at the {misbehaving.target}: {info.value.code}, peak memory grew {growth:.1f} MiB")
    expected = "RPC_LIMIT_EXCEEDED" if misbehaving.target == "rpc" else "MANIFEST_TOO_LARGE"
    assert info.value.code == expected
    assert growth < 50  # inflating it would have taken 400 MiB


@pytest.mark.parametrize("interval", [0.2, 0.02], ids=["cut-in-status-line", "cut-in-headers"])
@pytest.mark.parametrize("misbehaving", [("drip", "rpc"), ("drip", "manifest")], indirect=True)
def test_a_dripping_server_is_cut_at_the_deadline(misbehaving, interval, monkeypatch):
    """Cut in the status line, the call fails; cut after it, what arrived parses as an answer
    with half its headers, which must not pass for one."""
    monkeypatch.setattr(hostile_answers, "DRIP_INTERVAL_SECONDS", interval)
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        verify_hash(HASH, misbehaving.url + "/manifest.json", REGISTRY, misbehaving.url, _settings(misbehaving))
    print(f"\ndripping {misbehaving.target}: {info.value.code} after {time.monotonic() - started:.1f} s "
          f"(deadline 2 s per call)")
    if misbehaving.target == "rpc":
        assert (info.value.code, info.value.message) == (
            "RPC_UNAVAILABLE", "The RPC endpoint did not answer eth_getBlockByNumber in time.")
    else:
        assert (info.value.code, info.value.message) == ("MANIFEST_FETCH_FAILED", "Could not fetch the manifest: timed out.")
    assert "DeadlineExceeded" in type(info.value.__cause__).__name__ + str(info.value.detail)
