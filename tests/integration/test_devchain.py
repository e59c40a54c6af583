"""The dev chain over real HTTP on loopback: web3.py, raw JSON-RPC, the registries."""

import os
import threading
import time

import pytest
import requests
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from devstack.chain import CHAIN_ID, DevChain, load_artifact, register_content, update_manifest

pytestmark = pytest.mark.integration

EVENT_TOPIC = Web3.to_hex(Web3.keccak(text="ContentRegistered(bytes32,address,string,uint64)"))
ZERO_ADDRESS = "0x" + "00" * 20


@pytest.fixture(scope="module")
def chain():
    dev = DevChain()
    dev.start()
    dev.deploy_registries()
    yield dev
    dev.stop()


@pytest.fixture(scope="module")
def w3(chain):
    return Web3(Web3.HTTPProvider(chain.rpc_url, request_kwargs={"timeout": 30}))


def rpc(chain, method, params=(), request_id=1):
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
    response = requests.post(chain.rpc_url, json=body, timeout=30)
    assert response.status_code == 200
    answer = response.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] == request_id
    return answer


def new_hash() -> str:
    return "0x" + os.urandom(32).hex()


def registry(w3, chain, name):
    return w3.eth.contract(address=chain.registries[name], abi=load_artifact(name)["abi"])


def test_web3_connects_and_sees_the_dev_chain(chain, w3):
    assert w3.is_connected()
    assert w3.eth.chain_id == CHAIN_ID == 31337 == chain.chain_id
    assert w3.net.version == "31337"
    assert w3.eth.block_number >= 2  # the two registry deployments
    assert not w3.eth.syncing
    assert rpc(chain, "web3_clientVersion")["result"].startswith("devstack-chain/")


def test_dev_accounts_are_funded_and_their_keys_known(chain, w3):
    accounts = w3.eth.accounts
    assert len(accounts) == 10 == len(chain.funded_private_keys)
    # anvil's and hardhat's well-known dev accounts
    assert accounts[0] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    for key, address in zip(chain.funded_private_keys, chain.funded_accounts, strict=True):
        assert Account.from_key(key).address == address
        assert w3.eth.get_balance(address) > Web3.to_wei(9_000, "ether")


def test_registries_are_deployed(chain, w3):
    assert set(chain.registries) == {"ContentRegistry", "ContentRegistryCompact"}
    for name, address in chain.registries.items():
        assert Web3.is_checksum_address(address)
        code = w3.eth.get_code(address)
        assert len(code) > 100
        assert Web3.to_hex(code) == load_artifact(name)["deployedBytecode"]


@pytest.mark.parametrize("name", ["ContentRegistry", "ContentRegistryCompact"])
def test_register_then_read_the_entry(chain, w3, name):
    key = chain.funded_private_keys[1]
    creator = Account.from_key(key).address
    content_hash = new_hash()
    uri = "ipfs://QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    tx = register_content(chain.rpc_url, chain.registries[name], key, content_hash, uri)
    assert tx["txHash"].startswith("0x") and len(tx["txHash"]) == 66
    receipt = w3.eth.get_transaction_receipt(tx["txHash"])
    assert receipt["status"] == 1 and receipt["blockNumber"] == tx["blockNumber"]
    block = w3.eth.get_block(tx["blockNumber"])

    entry = registry(w3, chain, name).functions.entries(bytes.fromhex(content_hash[2:])).call()
    if name == "ContentRegistry":
        assert entry == [creator, bytes.fromhex(content_hash[2:]), uri, block["timestamp"]]
    else:
        assert entry == [creator, block["timestamp"], uri]

    unknown = registry(w3, chain, name).functions.entries(os.urandom(32)).call()
    assert unknown[0] == ZERO_ADDRESS


@pytest.mark.parametrize("name", ["ContentRegistry", "ContentRegistryCompact"])
def test_get_logs_finds_the_registration_by_topic(chain, w3, name):
    key = chain.funded_private_keys[2]
    creator = Account.from_key(key).address
    content_hash = new_hash()
    tx = register_content(chain.rpc_url, chain.registries[name], key, content_hash, "ipfs://manifest")
    register_content(chain.rpc_url, chain.registries[name], key, new_hash(), "ipfs://other")

    logs = w3.eth.get_logs(
        {
            "address": chain.registries[name],
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [EVENT_TOPIC, content_hash],
        }
    )
    assert len(logs) == 1
    (log,) = logs
    assert Web3.to_hex(log["transactionHash"]) == tx["txHash"]
    assert log["blockNumber"] == tx["blockNumber"]
    event = registry(w3, chain, name).events.ContentRegistered().process_log(log)
    assert event["args"]["creator"] == creator
    assert event["args"]["manifestURI"] == "ipfs://manifest"
    assert event["args"]["timestamp"] == w3.eth.get_block(tx["blockNumber"])["timestamp"]

    # the creator topic alone, with a wildcard for the hash; and a range past the head
    creator_topic = "0x" + "00" * 12 + creator[2:].lower()
    by_creator = rpc(
        chain,
        "eth_getLogs",
        [{"address": chain.registries[name], "fromBlock": "0x0", "toBlock": hex(10**6),
          "topics": [EVENT_TOPIC, None, creator_topic]}],
    )["result"]
    assert tx["txHash"] in {entry["transactionHash"] for entry in by_creator}
    assert all(entry["removed"] is False and entry["logIndex"].startswith("0x") for entry in by_creator)
    head = w3.eth.block_number
    assert rpc(chain, "eth_getLogs", [{"fromBlock": hex(head + 1), "toBlock": hex(head + 500)}])["result"] == []
    assert w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "topics": [EVENT_TOPIC, new_hash()]}) == []
    block_hash = Web3.to_hex(w3.eth.get_block(tx["blockNumber"])["hash"])
    assert len(rpc(chain, "eth_getLogs", [{"blockHash": block_hash}])["result"]) == 1


def test_reregistration_reverts_like_the_original(chain, w3):
    key = chain.funded_private_keys[3]
    content_hash = new_hash()
    first = chain.registries["ContentRegistry"]
    compact = chain.registries["ContentRegistryCompact"]
    register_content(chain.rpc_url, first, key, content_hash, "ipfs://a")
    register_content(chain.rpc_url, compact, key, content_hash, "ipfs://a")
    with pytest.raises(ContractLogicError, match="Already registered"):
        register_content(chain.rpc_url, first, key, content_hash, "ipfs://b")
    with pytest.raises(ContractCustomError):
        register_content(chain.rpc_url, compact, key, content_hash, "ipfs://b")

    data = registry(w3, chain, "ContentRegistry").functions.register(
        bytes.fromhex(content_hash[2:]), "ipfs://b"
    )._encode_transaction_data()
    error = rpc(chain, "eth_call", [{"to": first, "data": data}, "latest"])["error"]
    assert error["code"] == 3
    assert error["message"] == "execution reverted: Already registered"
    assert error["data"].startswith("0x08c379a0")


def test_update_manifest_changes_the_onchain_uri(chain, w3):
    key = chain.funded_private_keys[4]
    content_hash = new_hash()
    for name, address in chain.registries.items():
        register_content(chain.rpc_url, address, key, content_hash, "ipfs://original")
        update_manifest(chain.rpc_url, address, key, content_hash, "ipfs://changed")
        entry = registry(w3, chain, name).functions.entries(bytes.fromhex(content_hash[2:])).call()
        assert "ipfs://changed" in entry
        with pytest.raises((ContractLogicError, ContractCustomError)):
            update_manifest(chain.rpc_url, address, chain.funded_private_keys[5], content_hash, "ipfs://evil")


def test_batch_requests_and_error_objects(chain):
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": "two", "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_noSuchMethod", "params": []},
        {"jsonrpc": "2.0", "id": 4, "method": "eth_getBalance", "params": ["not-an-address", "latest"]},
        {"jsonrpc": "2.0", "id": 5, "method": "net_version"},
    ]
    answers = requests.post(chain.rpc_url, json=batch, timeout=30).json()
    assert [a["id"] for a in answers] == [1, "two", 3, 4, 5]
    assert answers[0]["result"] == "0x7a69"
    assert answers[1]["result"].startswith("0x")
    assert answers[2]["error"]["code"] == -32601
    assert answers[3]["error"]["code"] == -32602
    assert answers[4]["result"] == "31337"

    assert rpc(chain, "eth_unknown")["error"]["code"] == -32601
    parse = requests.post(chain.rpc_url, data=b"{not json", timeout=30).json()
    assert parse["error"]["code"] == -32700
    empty = requests.post(chain.rpc_url, json=[], timeout=30).json()
    assert empty["error"]["code"] == -32600
    assert rpc(chain, "eth_getBlockByNumber", ["0xffffff", False])["result"] is None
    assert rpc(chain, "eth_getTransactionReceipt", [new_hash()])["result"] is None


def test_raw_transaction_over_plain_json_rpc(chain):
    sender = Account.from_key(chain.funded_private_keys[6])
    recipient = chain.funded_accounts[7]
    nonce = int(rpc(chain, "eth_getTransactionCount", [sender.address, "pending"])["result"], 16)
    before = int(rpc(chain, "eth_getBalance", [recipient, "latest"])["result"], 16)
    base_fee = int(rpc(chain, "eth_getBlockByNumber", ["latest", False])["result"]["baseFeePerGas"], 16)
    tip = int(rpc(chain, "eth_maxPriorityFeePerGas")["result"], 16)
    tx = {
        "type": 2, "chainId": CHAIN_ID, "nonce": nonce, "to": recipient, "value": 12345, "gas": 21000,
        "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base_fee + tip,
    }
    raw = Web3.to_hex(sender.sign_transaction(tx).raw_transaction)
    tx_hash = rpc(chain, "eth_sendRawTransaction", [raw])["result"]
    receipt = rpc(chain, "eth_getTransactionReceipt", [tx_hash])["result"]
    assert receipt["status"] == "0x1"
    assert receipt["from"] == sender.address.lower() and receipt["to"] == recipient.lower()
    assert receipt["gasUsed"] == "0x5208" and receipt["type"] == "0x2"
    assert len(receipt["logsBloom"]) == 2 + 512
    fetched = rpc(chain, "eth_getTransactionByHash", [tx_hash])["result"]
    assert fetched["hash"] == tx_hash and fetched["value"] == hex(12345) and fetched["chainId"] == "0x7a69"
    block = rpc(chain, "eth_getBlockByNumber", [receipt["blockNumber"], True])["result"]
    assert block["transactions"][0]["hash"] == tx_hash
    assert int(rpc(chain, "eth_getBalance", [recipient, "latest"])["result"], 16) == before + 12345

    # replays, stale nonces and other chains are refused with -32000, like geth
    assert rpc(chain, "eth_sendRawTransaction", [raw])["error"]["code"] == -32000
    stale = Web3.to_hex(sender.sign_transaction(dict(tx, value=1)).raw_transaction)
    assert "nonce too low" in rpc(chain, "eth_sendRawTransaction", [stale])["error"]["message"]
    other = Web3.to_hex(sender.sign_transaction(dict(tx, chainId=1, nonce=nonce + 1)).raw_transaction)
    assert "chain id" in rpc(chain, "eth_sendRawTransaction", [other])["error"]["message"]
    assert rpc(chain, "eth_sendRawTransaction", ["0xzz"])["error"]["code"] == -32602


def test_a_reverting_transaction_is_mined_with_status_0(chain, w3):
    key = chain.funded_private_keys[8]
    sender = Account.from_key(key)
    content_hash = new_hash()
    address = chain.registries["ContentRegistry"]
    register_content(chain.rpc_url, address, key, content_hash, "ipfs://a")
    data = registry(w3, chain, "ContentRegistry").functions.register(
        bytes.fromhex(content_hash[2:]), "ipfs://b"
    )._encode_transaction_data()
    tx = {
        "chainId": CHAIN_ID, "nonce": w3.eth.get_transaction_count(sender.address), "to": address, "data": data,
        "gas": 200_000, "gasPrice": w3.eth.gas_price, "value": 0,
    }  # a legacy (type 0) transaction
    tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10, poll_latency=0.05)
    assert receipt["status"] == 0
    assert receipt["type"] == 0


def test_the_calls_an_ethers_provider_makes(chain):
    """The request sequence of ethers v6 `contract.register(...)` then `tx.wait()`."""
    key = chain.funded_private_keys[9]
    sender = Account.from_key(key)
    address = chain.registries["ContentRegistryCompact"]
    abi = load_artifact("ContentRegistryCompact")["abi"]
    data = Web3().eth.contract(abi=abi).encode_abi("register", [bytes.fromhex(new_hash()[2:]), "ipfs://e"])
    assert rpc(chain, "eth_chainId")["result"] == "0x7a69"
    nonce = rpc(chain, "eth_getTransactionCount", [sender.address.lower(), "pending"])["result"]
    gas = rpc(chain, "eth_estimateGas", [{"from": sender.address.lower(), "to": address.lower(), "data": data, "nonce": nonce}])["result"]
    latest = rpc(chain, "eth_getBlockByNumber", ["latest", False])["result"]
    for field in ("number", "hash", "parentHash", "timestamp", "gasLimit", "gasUsed", "baseFeePerGas",
                  "miner", "extraData", "logsBloom", "transactions", "difficulty", "nonce"):
        assert field in latest
    gas_price = int(rpc(chain, "eth_gasPrice")["result"], 16)
    tip = int(rpc(chain, "eth_maxPriorityFeePerGas")["result"], 16)
    assert gas_price >= int(latest["baseFeePerGas"], 16)
    history = rpc(chain, "eth_feeHistory", ["0x4", "latest", [25, 75]])["result"]
    assert len(history["baseFeePerGas"]) == len(history["gasUsedRatio"]) + 1
    assert len(history["reward"]) == len(history["gasUsedRatio"])
    tx = {
        "type": 2, "chainId": CHAIN_ID, "nonce": int(nonce, 16), "to": address, "data": data, "value": 0,
        "gas": int(gas, 16), "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(latest["baseFeePerGas"], 16) + tip,
    }
    tx_hash = rpc(chain, "eth_sendRawTransaction", [Web3.to_hex(sender.sign_transaction(tx).raw_transaction)])["result"]
    assert rpc(chain, "eth_blockNumber")["result"] == rpc(chain, "eth_getTransactionReceipt", [tx_hash])["result"]["blockNumber"]
    receipt = rpc(chain, "eth_getTransactionReceipt", [tx_hash])["result"]
    assert receipt["status"] == "0x1" and len(receipt["logs"]) == 1
    assert receipt["logs"][0]["topics"][0] == EVENT_TOPIC
    # the estimate was enough and not wasteful
    assert int(receipt["gasUsed"], 16) <= int(gas, 16) <= int(receipt["gasUsed"], 16) * 1.2


def test_unsigned_send_transaction_from_a_dev_account(chain, w3):
    before = w3.eth.get_balance(chain.funded_accounts[5])
    tx_hash = rpc(chain, "eth_sendTransaction", [{"from": chain.funded_accounts[4], "to": chain.funded_accounts[5], "value": "0x64"}])["result"]
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10, poll_latency=0.05)
    assert receipt["status"] == 1
    assert w3.eth.get_balance(chain.funded_accounts[5]) == before + 100
    stranger = "0x" + "12" * 20
    assert rpc(chain, "eth_sendTransaction", [{"from": stranger, "to": stranger}])["error"]["code"] == -32000


def test_log_filters_report_new_registrations(chain):
    address = chain.registries["ContentRegistry"]
    filter_id = rpc(chain, "eth_newFilter", [{"address": address, "topics": [EVENT_TOPIC]}])["result"]
    block_filter = rpc(chain, "eth_newBlockFilter")["result"]
    assert rpc(chain, "eth_getFilterChanges", [filter_id])["result"] == []
    tx = register_content(chain.rpc_url, address, chain.funded_private_keys[1], new_hash(), "ipfs://f")
    changes = rpc(chain, "eth_getFilterChanges", [filter_id])["result"]
    assert [c["transactionHash"] for c in changes] == [tx["txHash"]]
    assert rpc(chain, "eth_getFilterChanges", [filter_id])["result"] == []
    assert len(rpc(chain, "eth_getFilterChanges", [block_filter])["result"]) >= 1
    assert rpc(chain, "eth_uninstallFilter", [filter_id])["result"] is True
    assert rpc(chain, "eth_getFilterChanges", [filter_id])["error"]["code"] == -32000


def test_blocks_are_mined_one_per_transaction_with_increasing_timestamps(chain, w3):
    start = w3.eth.block_number
    for _ in range(3):
        register_content(chain.rpc_url, chain.registries["ContentRegistry"], chain.funded_private_keys[2], new_hash(), "ipfs://t")
    assert chain.mine(2) == start + 5 == w3.eth.block_number
    blocks = [w3.eth.get_block(n) for n in range(start, start + 6)]
    timestamps = [b["timestamp"] for b in blocks]
    assert timestamps == sorted(timestamps) and len(set(timestamps)) == len(timestamps)
    assert abs(timestamps[-1] - time.time()) < 120
    assert all(len(b["transactions"]) == 1 for b in blocks[1:4])


def test_concurrent_clients_are_serialised_safely(chain):
    address = chain.registries["ContentRegistryCompact"]
    errors = []

    def worker(index):
        try:
            key = chain.funded_private_keys[index]
            for _ in range(3):
                register_content(chain.rpc_url, address, key, new_hash(), f"ipfs://{index}")
                rpc(chain, "eth_blockNumber")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (1, 2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []


def test_eth_call_is_fast(chain, w3):
    contract = registry(w3, chain, "ContentRegistry")
    call = contract.functions.entries(os.urandom(32))
    call.call()
    started = time.perf_counter()
    for _ in range(20):
        call.call()
    per_call = (time.perf_counter() - started) / 20
    assert per_call < 0.1, f"eth_call took {per_call * 1000:.1f} ms"
