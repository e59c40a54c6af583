"""anvil as the dev chain, and the product's registry reads against it over real HTTP: both
layouts, the registration transaction many blocks later, updateManifest, revoke."""
import json
import os
from dataclasses import replace

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError

from chalicelib.config import Settings
from chalicelib.errors import PermanentError
from chalicelib.verification import rpc
from chalicelib.verification.registration import CONTENT_REGISTERED_TOPIC, RegistrationTx, find_registration
from chalicelib.verification.registry import ZERO_ADDRESS, OnchainEntry, read_entry
from devstack.anchoring import new_funded_key, register_content, revoke_content, update_manifest
from devstack.anvil import REGISTRY_CONTRACTS, Anvil, load_artifact

pytestmark = pytest.mark.integration

# One client serves the whole module, so its JSON-RPC call budget (per verification in the
# product) is raised to cover every test of it.
SETTINGS = Settings(allow_private_networks=True, registry_start_block=0, rpc_call_budget=1_000_000)
URI = "ipfs://QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
ENTRY_REVOKED_TOPIC = Web3.to_hex(Web3.keccak(text="EntryRevoked(bytes32,uint64)"))
LAYOUTS = pytest.mark.parametrize("layout", REGISTRY_CONTRACTS)
FIXED_ADDRESSES = {"ContentRegistry": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                   "ContentRegistryCompact": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"}


@pytest.fixture(scope="module")
def chain():
    anvil = Anvil().start()
    anvil.deploy_registries()
    yield anvil
    anvil.stop()


@pytest.fixture(scope="module")
def w3(chain):
    """The product's own connection (netguard session included)."""
    return rpc.connect(chain.rpc_url, SETTINGS)


@pytest.fixture
def creator_key(chain):
    return new_funded_key(chain.rpc_url, chain.funded_private_keys[0])


def new_hash() -> str:
    return "0x" + os.urandom(32).hex()


def registered(chain, layout, creator_key) -> tuple[str, dict]:
    content_hash = new_hash()
    return content_hash, register_content(chain.rpc_url, chain.registries[layout], creator_key, content_hash, URI)


def test_anvil_serves_the_dev_chain_with_the_registries_at_fixed_addresses(chain, w3):
    assert chain.rpc("web3_clientVersion").startswith("anvil/")
    assert rpc.chain_id(w3) == chain.chain_id == 31337
    assert chain.registries == FIXED_ADDRESSES  # account 0, nonces 0 and 1: what the README shows
    for name, address in chain.registries.items():
        assert Web3.to_hex(w3.eth.get_code(address)) == load_artifact(name)["deployedBytecode"]
    accounts = [Account.from_key(key).address for key in chain.funded_private_keys]
    assert accounts == w3.eth.accounts and len(accounts) == 10
    assert all(w3.eth.get_balance(address) > 10**21 for address in accounts)


def test_the_running_stack_points_at_anvil(stack):
    """What `make up` writes to endpoints.json: anvil's RPC URL and the registries at fixed addresses."""
    endpoints = json.loads((stack.options.work_dir / "endpoints.json").read_text())
    w3 = Web3(Web3.HTTPProvider(endpoints["rpc_url"]))
    assert w3.client_version.startswith("anvil/") and w3.eth.chain_id == endpoints["chain_id"] == 31337
    assert endpoints["registry_addresses"] == FIXED_ADDRESSES
    assert endpoints["registry_address"] == FIXED_ADDRESSES["ContentRegistry"]
    assert Account.from_key(endpoints["funded_private_key"]).address == w3.eth.accounts[0]


def test_another_chain_id_for_a_second_chain():
    other = Anvil(chain_id=84532).start()
    try:
        assert int(other.rpc("eth_chainId"), 16) == 84532
    finally:
        other.stop()
    assert other.process.poll() is not None


@LAYOUTS
def test_the_product_reads_a_registration_and_finds_its_transaction(chain, w3, creator_key, layout):
    address = chain.registries[layout]
    content_hash, tx = registered(chain, layout, creator_key)
    timestamp = w3.eth.get_block(tx["blockNumber"])["timestamp"]
    entry = OnchainEntry(creator=Account.from_key(creator_key).address, manifest_uri=URI, timestamp=timestamp)
    assert read_entry(w3, address, content_hash) == entry
    assert read_entry(w3, address.lower(), content_hash.upper().replace("0X", "0x")) == entry
    assert read_entry(w3, address, new_hash()) == OnchainEntry(creator=ZERO_ADDRESS, manifest_uri="", timestamp=0)
    found = find_registration(w3, address, content_hash, SETTINGS)
    assert found == RegistrationTx(tx_hash=tx["txHash"], block_number=tx["blockNumber"])
    assert find_registration(w3, address, new_hash(), SETTINGS) is None


@LAYOUTS
def test_the_registration_is_found_many_blocks_later_in_small_scan_windows(chain, w3, creator_key, layout):
    address = chain.registries[layout]
    content_hash, tx = registered(chain, layout, creator_key)
    head = chain.mine(150)  # anvil_mine is about 100 blocks a second on a loaded machine
    assert head >= tx["blockNumber"] + 150
    small = replace(SETTINGS, log_scan_block_range=8)
    expected = RegistrationTx(tx_hash=tx["txHash"], block_number=tx["blockNumber"])
    assert find_registration(w3, address, content_hash, small) == expected
    # Without a start block only the lookback is searched; a start block after the registration hides it.
    lookback = replace(small, registry_start_block=None, log_scan_lookback_blocks=100)
    assert find_registration(w3, address, content_hash, lookback) is None
    assert find_registration(w3, address, content_hash, replace(lookback, log_scan_lookback_blocks=200)) == expected
    assert find_registration(w3, address, content_hash,
                             replace(small, registry_start_block=tx["blockNumber"] + 1)) is None


@LAYOUTS
def test_update_manifest_changes_the_uri_the_product_reads(chain, w3, creator_key, layout):
    address = chain.registries[layout]
    content_hash, _ = registered(chain, layout, creator_key)
    before = read_entry(w3, address, content_hash)
    update_manifest(chain.rpc_url, address, creator_key, content_hash, "ipfs://changed")
    assert read_entry(w3, address, content_hash) == replace(before, manifest_uri="ipfs://changed")
    with pytest.raises(ContractLogicError):  # only the creator may
        update_manifest(chain.rpc_url, address, chain.funded_private_keys[1], content_hash, "ipfs://evil")


@LAYOUTS
def test_a_revoked_registration_keeps_creator_and_timestamp_with_an_empty_uri(chain, w3, creator_key, layout):
    address = chain.registries[layout]
    content_hash, tx = registered(chain, layout, creator_key)
    before = read_entry(w3, address, content_hash)
    with pytest.raises(ContractLogicError):  # only the creator may
        revoke_content(chain.rpc_url, address, chain.funded_private_keys[1], content_hash)
    with pytest.raises(ContractLogicError):  # nothing to revoke
        revoke_content(chain.rpc_url, address, creator_key, new_hash())

    revoked = revoke_content(chain.rpc_url, address, creator_key, content_hash)
    assert read_entry(w3, address, content_hash) == replace(before, manifest_uri="")
    (log,) = w3.eth.get_logs({"address": address, "fromBlock": revoked["blockNumber"],
                              "toBlock": revoked["blockNumber"], "topics": [ENTRY_REVOKED_TOPIC, content_hash]})
    assert Web3.to_hex(log["transactionHash"]) == revoked["txHash"]
    assert int.from_bytes(log["data"], "big") == w3.eth.get_block(revoked["blockNumber"])["timestamp"]
    # the registration transaction is still the one a proof cites
    assert find_registration(w3, address, content_hash, SETTINGS).tx_hash == tx["txHash"]


def test_no_contract_at_the_address(w3):
    with pytest.raises(PermanentError) as info:
        read_entry(w3, "0x" + os.urandom(20).hex(), new_hash())
    assert info.value.code == "REGISTRY_NOT_FOUND"
    assert "registryAddress" in info.value.message and "rpcUrl" in info.value.message


def test_a_contract_that_returns_nothing_is_incompatible(chain, w3):
    address = Web3.to_checksum_address("0x" + os.urandom(20).hex())
    chain.rpc("anvil_setCode", address, "0x00")  # STOP: runs, returns no data
    with pytest.raises(PermanentError) as info:
        read_entry(w3, address, new_hash())
    assert info.value.code == "REGISTRY_INCOMPATIBLE"


# LOG3(topic0 = ContentRegistered, topic1 = calldata[0:32], topic2 = calldata[32:64], data =
# calldata[64:]): registers one hash many times, which the registries refuse.
EMITTER_CODE = bytes(
    [0x36, 0x60, 0x00, 0x60, 0x00, 0x37,  # CALLDATACOPY(0, 0, CALLDATASIZE)
     0x60, 0x20, 0x51,  # topic2 = MLOAD(32)
     0x60, 0x00, 0x51,  # topic1 = MLOAD(0)
     0x7F]) + bytes.fromhex(CONTENT_REGISTERED_TOPIC[2:]) + bytes(  # topic0
    [0x60, 0x40, 0x36, 0x03,  # size = CALLDATASIZE - 64
     0x60, 0x40,  # offset = 64
     0xA3, 0x00])  # LOG3, STOP


def test_the_newest_of_several_registration_logs_is_found(chain, w3):
    emitter = Web3.to_checksum_address("0x" + os.urandom(20).hex())
    chain.rpc("anvil_setCode", emitter, "0x" + EMITTER_CODE.hex())
    content_hash, sender = new_hash(), w3.eth.accounts[2]

    def emit(hash_hex: str) -> str:
        data = bytes.fromhex(hash_hex[2:]) + bytes(12) + bytes.fromhex(sender[2:]) + bytes(64)
        return chain.rpc("eth_sendTransaction", {"from": sender, "to": emitter, "data": "0x" + data.hex(),
                                                 "gas": hex(100_000)})

    emit(content_hash)
    newest = emit(content_hash)
    for _ in range(5):
        emit(new_hash())
    found = find_registration(w3, emitter, content_hash, replace(SETTINGS, log_scan_block_range=2))
    assert found == RegistrationTx(tx_hash=newest, block_number=w3.eth.get_transaction_receipt(newest)["blockNumber"])
