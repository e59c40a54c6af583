"""The registration block found by its timestamp, and manifests from several IPFS gateways.

The search runs over fake chains here (millions of blocks, irregular and repeated timestamps);
against anvil, through real HTTP and with the calls counted, in tests/integration/test_evidence.py.
"""
import random
import socket
from dataclasses import replace

import pytest

from chalicelib.config import Settings, load_settings
from chalicelib.errors import PermanentError, TransientError
from chalicelib.verification import registration
from chalicelib.verification.manifest import fetch_manifest
from chalicelib.verification.registration import RegistrationTx, find_registration, first_block_at_or_after
from chalicelib.verification.registry import PinnedBlock
from tests.unit.test_verification_manifest import MANIFEST_BYTES, Server, body
from tests.unit.test_verification_registry import CREATOR, HASH, FakeEth, FakeW3

GENESIS_TIME = 1_700_000_000


class Times:
    """Block timestamps given by a function, counting the blocks asked for."""

    def __init__(self, timestamp_of):
        self.timestamp_of = timestamp_of
        self.asked = []

    def __call__(self, number):
        self.asked.append(number)
        return self.timestamp_of(number)


def brute_force(timestamp, lo, hi, timestamp_of):
    return next((n for n in range(lo, hi + 1) if timestamp_of(n) >= timestamp), None)


def test_a_chain_of_regular_blocks_is_searched_in_a_few_probes():
    times = Times(lambda n: GENESIS_TIME + 2 * n)  # Base: a block every 2 seconds
    head = 30_000_000
    for target in (17, 1_234_567, 29_999_990):
        times.asked.clear()
        assert first_block_at_or_after(GENESIS_TIME + 2 * target, 0, head, times) == target
        assert len(set(times.asked)) <= 5


def test_irregular_and_repeated_timestamps_are_found_exactly_in_bounded_probes():
    rng = random.Random(7)
    stamps, t = [], GENESIS_TIME
    for _ in range(20_000):
        t += rng.choice([0, 0, 0, 1, 2, 12, 13, 600])  # same-second bursts, gaps, an outage
        stamps.append(t)
    head = len(stamps) - 1
    for _ in range(200):
        target = rng.randint(stamps[0] - 5, stamps[-1] + 5)
        times = Times(stamps.__getitem__)
        expected = brute_force(target, 0, head, stamps.__getitem__)
        assert first_block_at_or_after(target, 0, head, times) == expected
        assert len(set(times.asked)) <= 2 * 15 + 2  # twice a binary search of 2**15 blocks, and the ends


def test_blocks_before_the_range_or_after_the_head():
    times = Times(lambda n: GENESIS_TIME + n)
    assert first_block_at_or_after(GENESIS_TIME - 10, 100, 200, times) == 100
    assert first_block_at_or_after(GENESIS_TIME + 201, 100, 200, times) is None


# --- find_registration with the pinned head and the entry's timestamp -------------------------

class ChainEth(FakeEth):
    """A chain of `head + 1` blocks with timestamps `timestamp_of(n)`; counts every call."""

    def __init__(self, head, log_blocks, timestamp_of, max_range=None):
        super().__init__(head, log_blocks, max_range)
        self.timestamp_of = timestamp_of
        self.blocks_asked = []

    def get_block(self, number):
        assert isinstance(number, int) and 0 <= number <= self.block_number  # never "latest" again
        self.blocks_asked.append(number)
        return {"number": number, "timestamp": self.timestamp_of(number)}

    @property
    def calls(self):
        return len(self.blocks_asked) + len(self.ranges)


def search(head, registered_in, timestamp_of, registered_at=None, **settings):
    eth = ChainEth(head, [registered_in] if registered_in is not None else [], timestamp_of,
                   settings.pop("max_range", None))
    pinned = PinnedBlock(chain_id=8453, number=head, hash="0x" + "aa" * 32, timestamp=timestamp_of(head))
    if registered_at is None:
        registered_at = timestamp_of(registered_in)
    found = find_registration(FakeW3(eth), CREATOR, HASH, Settings(**settings), head=pinned,
                              registered_at=registered_at)
    return found, eth


@pytest.mark.parametrize("depth", [5_000, 999_000, 1_000_001, 5_000_000, 29_000_000])
@pytest.mark.parametrize("window", [10_000, 500])
def test_a_registration_of_any_age_is_found_in_a_few_calls(depth, window):
    head = 30_000_000
    found, eth = search(head, head - depth, lambda n: GENESIS_TIME + 2 * n, log_scan_block_range=window)
    assert found.block_number == head - depth
    assert eth.calls <= 10 and len(eth.ranges) == 1
    lo, hi = eth.ranges[0]
    assert lo <= head - depth <= hi and hi - lo < window


def test_many_blocks_in_one_second_are_scanned_in_windows_from_the_newest():
    head = 200_000
    found, eth = search(head, 150_123, lambda n: GENESIS_TIME + n // 5_000, log_scan_block_range=1_000)
    assert found.block_number == 150_123
    # The second's blocks are 150,000-154,999: scanned downwards, 1,000 at a time.
    assert eth.ranges == [(154_000, 154_999), (153_000, 153_999), (152_000, 152_999), (151_000, 151_999),
                          (150_000, 150_999)]


def test_a_timestamp_no_block_has_falls_back_to_the_bounded_scan():
    head = 50_000
    found, eth = search(head, 40_000, lambda n: GENESIS_TIME + 2 * n, registered_at=GENESIS_TIME + 80_001,
                        log_scan_block_range=10_000)
    assert found == RegistrationTx(tx_hash="0x" + bytes([40_000 % 256]).hex() * 32, block_number=40_000)
    assert eth.ranges == [(40_001, 50_000), (30_001, 40_000)]  # the scan from the pinned head


def test_a_search_out_of_probes_falls_back_to_the_bounded_scan(monkeypatch):
    monkeypatch.setattr(registration, "TIMESTAMP_PROBES", 3)
    rng = random.Random(3)
    stamps, t = [], GENESIS_TIME
    for _ in range(100_001):
        t += rng.choice([1, 1, 1, 1, 5_000])  # too irregular for three probes
        stamps.append(t)
    found, eth = search(100_000, 95_000, stamps.__getitem__, log_scan_block_range=2_000)
    assert found.block_number == 95_000
    assert len(eth.blocks_asked) == 3
    assert eth.ranges == [(98_001, 100_000), (96_001, 98_000), (94_001, 96_000)]


def test_the_start_block_bounds_the_search():
    found, eth = search(100_000, 60_000, lambda n: GENESIS_TIME + 2 * n, registry_start_block=70_000)
    assert found is None and min(eth.blocks_asked + [lo for lo, _ in eth.ranges]) >= 70_000


# --- several IPFS gateways --------------------------------------------------------------------

CID = "QmYBL4FCdr7YmHm6UEeLGf6UQE2rMqkAEttbCFDNbm1u5o"


def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


@pytest.fixture()
def gateways():
    first, second = Server(), Server()
    second.routes[f"/ipfs/{CID}"] = body(MANIFEST_BYTES)
    yield first, second
    first.close()
    second.close()


def gateway_settings(*urls):
    return Settings(ipfs_gateway=",".join(urls), allow_private_networks=True, http_timeout_seconds=5)


def test_ipfs_gateway_lists_several_gateways():
    settings = load_settings({"IPFS_GATEWAY": " https://a.example/ ,https://b.example,, "})
    assert settings.ipfs_gateways == ("https://a.example", "https://b.example")
    assert load_settings({}).ipfs_gateways == ("https://ipfs.io",)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
def test_a_gateway_failing_transiently_hands_over_to_the_next(gateways, status):
    first, second = gateways
    first.routes[f"/ipfs/{CID}"] = body(b"busy", status)
    manifest = fetch_manifest(f"ipfs://{CID}", gateway_settings(first.base, second.base))
    assert manifest.cid == CID and manifest.raw["content_hash"].startswith("0x")
    assert first.requests == second.requests == [f"/ipfs/{CID}"]


def test_a_gateway_that_is_down_hands_over_to_the_next(gateways):
    _, second = gateways
    assert fetch_manifest(f"ipfs://{CID}", gateway_settings(closed_port_url(), second.base)).cid == CID
    assert second.requests == [f"/ipfs/{CID}"]


def test_not_found_is_the_answer_and_the_next_gateway_is_not_asked(gateways):
    first, second = gateways  # the first has no such route: 404
    with pytest.raises(PermanentError) as info:
        fetch_manifest(f"ipfs://{CID}", gateway_settings(first.base, second.base))
    assert info.value.code == "MANIFEST_NOT_FOUND"
    assert second.requests == []


def test_all_gateways_failing_is_one_transient_error_naming_each(gateways):
    first, second = gateways
    first.routes[f"/ipfs/{CID}"] = body(b"", 503)
    down = closed_port_url()
    with pytest.raises(TransientError) as info:
        fetch_manifest(f"ipfs://{CID}", gateway_settings(first.base, down))
    assert info.value.code == "MANIFEST_FETCH_FAILED"
    assert "2 tried" in info.value.message and first.base in info.value.detail and down in info.value.detail
    assert first.base not in info.value.message and down not in info.value.message  # gateway URLs are for the logs


def test_an_http_manifest_is_fetched_once_whatever_the_gateways(gateways):
    first, second = gateways
    first.routes["/m.json"] = body(b"", 503)
    with pytest.raises(TransientError):
        fetch_manifest(first.base + "/m.json", gateway_settings(first.base, second.base))
    assert first.requests == ["/m.json"] and second.requests == []


def test_a_gateway_refused_by_the_address_rule_ends_the_search(gateways):
    first, second = gateways
    with pytest.raises(PermanentError) as info:  # loopback gateways, private networks not allowed
        fetch_manifest(f"ipfs://{CID}", replace(gateway_settings(first.base, second.base),
                                                allow_private_networks=False))
    assert info.value.code == "URL_NOT_ALLOWED"
    assert first.requests == second.requests == []


def test_the_size_cap_holds_on_the_gateway_that_answers(gateways):
    first, second = gateways
    first.routes[f"/ipfs/{CID}"] = body(b"", 502)
    with pytest.raises(PermanentError) as info:
        fetch_manifest(f"ipfs://{CID}", replace(gateway_settings(first.base, second.base), manifest_max_bytes=100))
    assert info.value.code == "MANIFEST_TOO_LARGE"
