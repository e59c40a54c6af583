"""A development chain: py-evm (through eth-tester's backend) served as Ethereum JSON-RPC 2.0.

The node behaves like a small geth/anvil: standard hex-quantity JSON over HTTP on loopback,
batch requests, JSON-RPC error objects (``3`` with revert data for reverted calls, as geth and
anvil answer), chain id 31337 and the ten well-known dev accounts of anvil and hardhat (mnemonic
``test test ... junk``), each funded with 10 000 ether. Every transaction is mined at once in a
block of its own; block timestamps follow the wall clock and always increase.

Any web3.py or ethers client works against ``DevChain.rpc_url`` unchanged. ``register_content``
and ``update_manifest`` are client helpers that work against any RPC endpoint.

Run standalone with ``python -m devstack.chain --port 8545``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from devstack.httpserver import LoopbackHTTPService, QuietHandler

__all__ = [
    "ARTIFACTS_DIR",
    "CHAIN_ID",
    "DEV_MNEMONIC",
    "REGISTRY_CONTRACTS",
    "DevChain",
    "JsonRpcError",
    "load_artifact",
    "register_content",
    "update_manifest",
]

CHAIN_ID = 31337
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_HD_PATH = "m/44'/60'/0'/0"  # anvil/hardhat derivation: account i is m/44'/60'/0'/0/i
DEV_ACCOUNT_BALANCE_WEI = 10_000 * 10**18
DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei, like anvil
CLIENT_VERSION = "devstack-chain/0.1.0/py-evm"

ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "infra" / "contracts" / "build"
REGISTRY_CONTRACTS = ("ContentRegistry", "ContentRegistryCompact")

# The part of the registry ABI the client helpers need (identical in both storage layouts):
# register and updateManifest both take (bytes32 contentHash, string manifestURI).
_REGISTRY_CLIENT_ABI = [
    {
        "type": "function",
        "name": name,
        "stateMutability": "nonpayable",
        "inputs": [
            {"name": "contentHash", "type": "bytes32"},
            {"name": "manifestURI", "type": "string"},
        ],
        "outputs": [],
    }
    for name in ("register", "updateManifest")
]

# --------------------------------------------------------------------------------------------
# JSON-RPC errors and value codecs
# --------------------------------------------------------------------------------------------


class JsonRpcError(Exception):
    """An error answered as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _invalid_params(message: str) -> JsonRpcError:
    return JsonRpcError(-32602, f"invalid argument: {message}")


def _server_error(message: str) -> JsonRpcError:
    return JsonRpcError(-32000, message)


def _qty(value: int) -> str:
    return hex(value)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _addr(value: bytes | None) -> str | None:
    if not value:
        return None
    return "0x" + bytes(value).hex()


def _word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def _bloom(value: int) -> str:
    return "0x" + value.to_bytes(256, "big").hex()


def _parse_qty(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _invalid_params(f"{name}: expected a hex quantity")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value[:2] in ("0x", "0X") and len(value) > 2:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise _invalid_params(f"{name}: expected a hex quantity like 0x1, got {value!r}")


def _parse_data(value: Any, name: str) -> bytes:
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        body = value[2:]
        if len(body) % 2 == 0:
            try:
                return bytes.fromhex(body)
            except ValueError:
                pass
    raise _invalid_params(f"{name}: expected 0x-prefixed hex data of whole bytes, got {value!r}")


def _parse_address(value: Any, name: str) -> bytes:
    data = _parse_data(value, name) if isinstance(value, str) else None
    if data is None or len(data) != 20:
        raise _invalid_params(f"{name}: expected a 20-byte hex address, got {value!r}")
    return data


def _parse_hash(value: Any, name: str) -> bytes:
    data = _parse_data(value, name) if isinstance(value, str) else None
    if data is None or len(data) != 32:
        raise _invalid_params(f"{name}: expected a 32-byte hex hash, got {value!r}")
    return data


def _parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _invalid_params(f"{name}: expected a boolean")


_LATEST_TAGS = ("latest", "pending", "safe", "finalized")  # every transaction is mined at once


def _base_fee(header: Any) -> int:
    """A header's base fee, 0 before London."""
    return getattr(header, "base_fee_per_gas", 0) or 0


def _param(params: list[Any], index: int, name: str, default: Any = ...) -> Any:
    if index < len(params):
        return params[index]
    if default is not ...:
        return default
    raise _invalid_params(f"missing value for required argument {index} ({name})")


# --------------------------------------------------------------------------------------------
# the node
# --------------------------------------------------------------------------------------------


def _make_backend(chain_id: int, accounts: int, balance_wei: int):
    from eth_tester import PyEVMBackend

    genesis_state = PyEVMBackend.generate_genesis_state(
        overrides={"balance": balance_wei},
        num_accounts=accounts,
        mnemonic=DEV_MNEMONIC,
        hd_path=DEV_HD_PATH,
    )
    backend = PyEVMBackend(genesis_state=genesis_state, mnemonic=DEV_MNEMONIC, hd_path=DEV_HD_PATH)
    # eth-tester hard-codes its chain id on a class it builds inside setup_tester_chain; give
    # the chain a subclass with ours (py-evm reads `chain_id` for CHAINID and tx building).
    base = type(backend.chain)
    backend.chain.__class__ = type("DevstackChain", (base,), {"chain_id": chain_id})
    return backend


class _Node:
    """JSON-RPC method implementations over one py-evm chain, serialised by one lock."""

    def __init__(
        self,
        chain_id: int = CHAIN_ID,
        accounts: int = 10,
        balance_wei: int = DEV_ACCOUNT_BALANCE_WEI,
    ) -> None:
        self.chain_id = chain_id
        self.lock = threading.RLock()
        self.backend = _make_backend(chain_id, accounts, balance_wei)
        self.private_keys = [key.to_bytes() for key in self.backend.account_keys]
        self.accounts = [key.public_key.to_canonical_address() for key in self.backend.account_keys]
        self._tx_blocks: dict[bytes, int] = {}
        self._logs_cache: dict[int, list[dict[str, Any]]] = {}
        self._filters: dict[int, dict[str, Any]] = {}
        self._next_filter = 1
        self.methods: dict[str, Callable[[list[Any]], Any]] = {
            "web3_clientVersion": lambda p: CLIENT_VERSION,
            "web3_sha3": self.web3_sha3,
            "net_version": lambda p: str(self.chain_id),
            "net_listening": lambda p: True,
            "net_peerCount": lambda p: "0x0",
            "eth_chainId": lambda p: _qty(self.chain_id),
            "eth_syncing": lambda p: False,
            "eth_mining": lambda p: False,
            "eth_hashrate": lambda p: "0x0",
            "eth_coinbase": lambda p: "0x" + "00" * 20,
            "eth_accounts": lambda p: [_addr(a) for a in self.accounts],
            "eth_blockNumber": lambda p: _qty(self.latest_number()),
            "eth_gasPrice": self.eth_gasPrice,
            "eth_maxPriorityFeePerGas": lambda p: _qty(DEFAULT_PRIORITY_FEE),
            "eth_blobBaseFee": lambda p: "0x1",
            "eth_feeHistory": self.eth_feeHistory,
            "eth_getBalance": self.eth_getBalance,
            "eth_getTransactionCount": self.eth_getTransactionCount,
            "eth_getCode": self.eth_getCode,
            "eth_getStorageAt": self.eth_getStorageAt,
            "eth_getBlockByNumber": self.eth_getBlockByNumber,
            "eth_getBlockByHash": self.eth_getBlockByHash,
            "eth_getBlockTransactionCountByNumber": self.eth_getBlockTransactionCountByNumber,
            "eth_getBlockTransactionCountByHash": self.eth_getBlockTransactionCountByHash,
            "eth_getTransactionByHash": self.eth_getTransactionByHash,
            "eth_getTransactionReceipt": self.eth_getTransactionReceipt,
            "eth_getBlockReceipts": self.eth_getBlockReceipts,
            "eth_call": self.eth_call,
            "eth_estimateGas": self.eth_estimateGas,
            "eth_sendRawTransaction": self.eth_sendRawTransaction,
            "eth_sendTransaction": self.eth_sendTransaction,
            "eth_getLogs": self.eth_getLogs,
            "eth_newFilter": self.eth_newFilter,
            "eth_newBlockFilter": self.eth_newBlockFilter,
            "eth_getFilterChanges": self.eth_getFilterChanges,
            "eth_getFilterLogs": self.eth_getFilterLogs,
            "eth_uninstallFilter": self.eth_uninstallFilter,
            "evm_mine": self.evm_mine,
            "anvil_mine": self.anvil_mine,
            "hardhat_mine": self.anvil_mine,
        }

    # -- dispatch ----------------------------------------------------------------------
    def call(self, method: str, params: Any) -> Any:
        handler = self.methods.get(method)
        if handler is None:
            raise JsonRpcError(-32601, f"the method {method} does not exist/is not available")
        if params is None:
            params = []
        if not isinstance(params, list):
            raise _invalid_params("params must be an array")
        with self.lock:
            return handler(params)

    # -- chain access ------------------------------------------------------------------
    @property
    def chain(self):
        return self.backend.chain

    def latest_number(self) -> int:
        # the chain's head header is the pending block; the latest mined block is below it
        return self.chain.header.block_number - 1

    def block_number(self, tag: Any, name: str = "block") -> int:
        """Resolve a block tag, number or EIP-1898 object to a mined block number."""
        if tag is None:
            return self.latest_number()
        if isinstance(tag, dict):
            if "blockHash" in tag:
                return self.block_by_hash(_parse_hash(tag["blockHash"], name)).number
            if "blockNumber" in tag:
                return self.block_number(tag["blockNumber"], name)
            raise _invalid_params(f"{name}: expected blockNumber or blockHash")
        if tag in _LATEST_TAGS:  # the pending state is the latest one
            return self.latest_number()
        if tag == "earliest":
            return 0
        number = _parse_qty(tag, name)
        if number > self.latest_number():
            raise _server_error("header not found")
        return number

    def block_at(self, number: int):
        return self.chain.get_canonical_block_by_number(number)

    def block_by_hash(self, block_hash: bytes):
        from eth.exceptions import BlockNotFound, HeaderNotFound

        try:
            block = self.chain.get_block_by_hash(block_hash)
        except (BlockNotFound, HeaderNotFound):
            raise _server_error("header not found") from None
        if block.number > self.latest_number() or self.block_at(block.number).hash != block.hash:
            raise _server_error("header not found")
        return block

    def state_at(self, number: int):
        return self.chain.get_vm(at_header=self.block_at(number).header).state

    def _refresh_pending_timestamp(self) -> None:
        header = self.chain.header
        now = int(time.time())
        if header.gas_used == 0 and now > header.timestamp:
            self.chain.set_header_timestamp(now)

    def mine(self, count: int = 1) -> list[bytes]:
        hashes = []
        for _ in range(count):
            self._refresh_pending_timestamp()
            (block_hash,) = self.backend.mine_blocks(1)
            block = self.chain.get_block_by_hash(block_hash)
            for tx in block.transactions:
                self._tx_blocks[tx.hash] = block.number
            hashes.append(block_hash)
        return hashes

    # -- serialisation ---------------------------------------------------------------------
    @staticmethod
    def _access_list(entries: Iterable[Any]) -> list[dict[str, Any]]:
        out = []
        for entry in entries or ():
            address, slots = entry[0], entry[1]
            keys = [_word(s) if isinstance(s, int) else _hex(s) for s in slots]
            out.append({"address": _addr(address), "storageKeys": keys})
        return out

    def format_tx(self, block, tx, index: int) -> dict[str, Any]:
        from eth_tester.backends.pyevm.serializers import serialize_transaction

        raw = serialize_transaction(block, tx, index, False)
        out: dict[str, Any] = {
            "type": _qty(raw["type"]),
            "hash": _hex(raw["hash"]),
            "nonce": _qty(raw["nonce"]),
            "blockHash": _hex(raw["block_hash"]),
            "blockNumber": _qty(raw["block_number"]),
            "transactionIndex": _qty(raw["transaction_index"]),
            "from": _addr(raw["from"]),
            "to": _addr(raw["to"]),
            "value": _qty(raw["value"]),
            "gas": _qty(raw["gas"]),
            "input": _hex(raw["data"]),
        }
        if "gas_price" in raw:
            out["gasPrice"] = _qty(raw["gas_price"])
        if "max_fee_per_gas" in raw:
            out["maxFeePerGas"] = _qty(raw["max_fee_per_gas"])
            out["maxPriorityFeePerGas"] = _qty(raw["max_priority_fee_per_gas"])
        if "max_fee_per_blob_gas" in raw:
            out["maxFeePerBlobGas"] = _qty(raw["max_fee_per_blob_gas"])
            out["blobVersionedHashes"] = [_hex(h) for h in raw["blob_versioned_hashes"]]
        if "access_list" in raw:
            out["accessList"] = self._access_list(raw["access_list"])
        if raw.get("chain_id") is not None:
            out["chainId"] = _qty(raw["chain_id"])
        elif getattr(tx, "chain_id", None) is not None:
            out["chainId"] = _qty(tx.chain_id)
        out["v"] = _qty(raw["v"])
        out["r"] = _qty(raw["r"])
        out["s"] = _qty(raw["s"])
        if "y_parity" in raw:
            out["yParity"] = _qty(raw["y_parity"])
        return out

    def format_block(self, block, full: bool) -> dict[str, Any]:
        header = block.header
        import rlp

        txs: list[Any]
        if full:
            txs = [self.format_tx(block, tx, i) for i, tx in enumerate(block.transactions)]
        else:
            txs = [_hex(tx.hash) for tx in block.transactions]
        out: dict[str, Any] = {
            "number": _qty(header.block_number),
            "hash": _hex(header.hash),
            "parentHash": _hex(header.parent_hash),
            "nonce": _hex(header.nonce),
            "sha3Uncles": _hex(header.uncles_hash),
            "logsBloom": _bloom(header.bloom),
            "transactionsRoot": _hex(header.transaction_root),
            "stateRoot": _hex(header.state_root),
            "receiptsRoot": _hex(header.receipt_root),
            "miner": _addr(header.coinbase) or "0x" + "00" * 20,
            "difficulty": _qty(header.difficulty),
            "totalDifficulty": _qty(header.difficulty),
            "extraData": _hex(header.extra_data),
            "size": _qty(len(rlp.encode(block))),
            "gasLimit": _qty(header.gas_limit),
            "gasUsed": _qty(header.gas_used),
            "timestamp": _qty(header.timestamp),
            "mixHash": _hex(header.mix_hash),
            "transactions": txs,
            "uncles": [],
        }
        for attr, key, fmt in (
            ("base_fee_per_gas", "baseFeePerGas", _qty),
            ("withdrawals_root", "withdrawalsRoot", _hex),
            ("blob_gas_used", "blobGasUsed", _qty),
            ("excess_blob_gas", "excessBlobGas", _qty),
            ("parent_beacon_block_root", "parentBeaconBlockRoot", _hex),
            ("requests_hash", "requestsHash", _hex),
        ):
            value = getattr(header, attr, None)
            if value is not None:
                out[key] = fmt(value)
        if hasattr(block, "withdrawals"):
            out["withdrawals"] = [
                {
                    "index": _qty(w.index),
                    "validatorIndex": _qty(w.validator_index),
                    "address": _addr(w.address),
                    "amount": _qty(w.amount),
                }
                for w in block.withdrawals
            ]
        return out

    def block_logs(self, number: int) -> list[dict[str, Any]]:
        """All logs of a mined block, geth-style (logIndex counts within the block)."""
        cached = self._logs_cache.get(number)
        if cached is not None:
            return cached
        block = self.block_at(number)
        logs: list[dict[str, Any]] = []
        if block.transactions:
            receipts = block.get_receipts(self.chain.chaindb)
            for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
                for log in receipt.logs:
                    logs.append(
                        {
                            "address": _addr(log.address),
                            "topics": [_word(t) for t in log.topics],
                            "data": _hex(log.data),
                            "blockNumber": _qty(number),
                            "blockHash": _hex(block.hash),
                            "blockTimestamp": _qty(block.header.timestamp),
                            "transactionHash": _hex(tx.hash),
                            "transactionIndex": _qty(tx_index),
                            "logIndex": _qty(len(logs)),
                            "removed": False,
                        }
                    )
        self._logs_cache[number] = logs
        return logs

    def format_receipt(self, block, index: int) -> dict[str, Any]:
        from eth_tester.backends.pyevm.serializers import serialize_transaction_receipt

        tx = block.transactions[index]
        receipts = block.get_receipts(self.chain.chaindb)
        raw = serialize_transaction_receipt(block, receipts, tx, index, False, self.chain.get_vm())
        out = {
            "type": _qty(raw["type"]),
            "status": _qty(raw["status"]),
            "transactionHash": _hex(raw["transaction_hash"]),
            "transactionIndex": _qty(index),
            "blockHash": _hex(block.hash),
            "blockNumber": _qty(block.number),
            "from": _addr(raw["from"]),
            "to": _addr(raw["to"]),
            "contractAddress": _addr(raw["contract_address"]),
            "cumulativeGasUsed": _qty(raw["cumulative_gas_used"]),
            "gasUsed": _qty(raw["gas_used"]),
            "effectiveGasPrice": _qty(raw["effective_gas_price"]),
            "logsBloom": _bloom(receipts[index].bloom),
            "logs": [log for log in self.block_logs(block.number) if log["transactionHash"] == _hex(tx.hash)],
        }
        if "blob_gas_used" in raw:
            out["blobGasUsed"] = _qty(raw["blob_gas_used"])
            out["blobGasPrice"] = _qty(raw["blob_gas_price"] // max(raw["blob_gas_used"], 1))
        return out

    def find_tx(self, tx_hash: bytes):
        number = self._tx_blocks.get(tx_hash)
        if number is None:
            return None
        block = self.block_at(number)
        for index, tx in enumerate(block.transactions):
            if tx.hash == tx_hash:
                return block, index
        return None

    # -- transaction requests (eth_call, eth_estimateGas, eth_sendTransaction) -----------------
    def tx_request(self, obj: Any, *, for_call: bool) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise _invalid_params("transaction: expected an object")
        raw: dict[str, Any] = {}
        raw["from"] = _parse_address(obj["from"], "from") if obj.get("from") else b"\x00" * 20
        raw["to"] = _parse_address(obj["to"], "to") if obj.get("to") else b""
        if obj.get("gas") is not None:
            raw["gas"] = _parse_qty(obj["gas"], "gas")
        if obj.get("value") is not None:
            raw["value"] = _parse_qty(obj["value"], "value")
        data = obj.get("input") if obj.get("input") is not None else obj.get("data")
        if obj.get("input") is not None and obj.get("data") is not None and obj["input"] != obj["data"]:
            raise _invalid_params('both "data" and "input" are set and not equal')
        raw["data"] = _parse_data(data, "input") if data is not None else b""
        if not for_call and obj.get("nonce") is not None:
            raw["nonce"] = _parse_qty(obj["nonce"], "nonce")
        if obj.get("gasPrice") is not None:
            if obj.get("maxFeePerGas") is not None or obj.get("maxPriorityFeePerGas") is not None:
                raise _invalid_params("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
            raw["gas_price"] = _parse_qty(obj["gasPrice"], "gasPrice")
        else:
            if obj.get("maxFeePerGas") is not None:
                raw["max_fee_per_gas"] = _parse_qty(obj["maxFeePerGas"], "maxFeePerGas")
            if obj.get("maxPriorityFeePerGas") is not None:
                raw["max_priority_fee_per_gas"] = _parse_qty(obj["maxPriorityFeePerGas"], "maxPriorityFeePerGas")
        if obj.get("accessList"):
            try:
                raw["access_list"] = tuple(
                    (
                        _parse_address(entry["address"], "accessList.address"),
                        tuple(
                            int.from_bytes(_parse_hash(key, "storageKeys"), "big")
                            for key in entry.get("storageKeys", [])
                        ),
                    )
                    for entry in obj["accessList"]
                )
            except (TypeError, KeyError):
                raise _invalid_params("accessList: expected [{address, storageKeys}]") from None
        return raw

    def _execute(self, raw: dict[str, Any], number: int, gas: int):
        """Run a transaction request on the state after block ``number``; nothing is kept.

        Without fee fields the call is free (gas price 0 and, as geth does, a zero base fee),
        so any address can call without ether.
        """
        from eth.vm.spoof import SpoofTransaction

        header = self.block_at(number).header
        vm = self.chain.get_vm(at_header=header)
        tx = dict(raw, gas=gas)
        has_fees = any(k in tx for k in ("gas_price", "max_fee_per_gas", "max_priority_fee_per_gas"))
        if not has_fees:
            tx["max_fee_per_gas"] = 0
            tx["max_priority_fee_per_gas"] = 0
            if getattr(header, "base_fee_per_gas", None) is not None:
                header = header.copy(base_fee_per_gas=0)
        elif "max_priority_fee_per_gas" in tx and "max_fee_per_gas" not in tx:
            tx["max_fee_per_gas"] = tx["max_priority_fee_per_gas"] + 2 * _base_fee(header)
        elif "max_fee_per_gas" in tx and "max_priority_fee_per_gas" not in tx:
            tx["max_priority_fee_per_gas"] = min(DEFAULT_PRIORITY_FEE, tx["max_fee_per_gas"])
        state = vm.build_state(self.chain.chaindb.db, header, vm.chain_context, vm.previous_hashes)
        tx.setdefault("value", 0)
        tx["nonce"] = state.get_nonce(raw["from"])
        sender = tx.pop("from")
        tx.pop("type", None)
        builder = self.chain.get_transaction_builder()
        if "gas_price" in tx and "access_list" not in tx:
            unsigned = self.chain.create_unsigned_transaction(**tx)
        elif "gas_price" in tx:
            unsigned = builder.new_unsigned_access_list_transaction(chain_id=self.chain_id, **tx)
        else:
            tx.setdefault("access_list", ())
            unsigned = builder.new_unsigned_dynamic_fee_transaction(chain_id=self.chain_id, **tx)
        spoofed = SpoofTransaction(unsigned, from_=sender)
        try:
            return spoofed, state.apply_transaction(spoofed)
        except Exception as exc:  # py-evm validation (funds, gas limit, nonce...)
            raise _server_error(_validation_message(exc)) from None

    @staticmethod
    def _raise_if_failed(computation) -> None:
        from eth.exceptions import Revert

        if not computation.is_error:
            return
        error = computation.error
        if isinstance(error, Revert):
            output = bytes(error.args[0]) if error.args and isinstance(error.args[0], bytes | bytearray) else b""
            message = "execution reverted"
            reason = _decode_revert_reason(output)
            if reason is not None:
                message += f": {reason}"
            raise JsonRpcError(3, message, _hex(output))
        raise _server_error(_vm_error_message(error))

    def _call_request(self, params: list[Any]) -> tuple[dict[str, Any], int, int]:
        """eth_call's and eth_estimateGas's transaction, block number and gas limit (the block's
        unless the request sets one)."""
        raw = self.tx_request(_param(params, 0, "transaction"), for_call=True)
        number = self.block_number(_param(params, 1, "block", "latest"))
        gas = raw.pop("gas", None) or self.block_at(number).header.gas_limit
        return raw, number, gas

    def eth_call(self, params: list[Any]) -> str:
        raw, number, gas = self._call_request(params)
        if len(params) > 2 and params[2]:
            raise _invalid_params("state overrides are not supported by this dev node")
        _, computation = self._execute(raw, number, gas)
        self._raise_if_failed(computation)
        return _hex(computation.output)

    def eth_estimateGas(self, params: list[Any]) -> str:
        raw, number, cap = self._call_request(params)
        spoofed, computation = self._execute(raw, number, cap)
        if computation.is_error:
            from eth.exceptions import OutOfGas

            if isinstance(computation.error, OutOfGas):
                raise _server_error(f"gas required exceeds allowance ({cap})")
            self._raise_if_failed(computation)
        used = cap - computation.get_gas_remaining()  # before refunds: what the limit must cover
        lo = max(used - 1, spoofed.intrinsic_gas - 1)
        hi = cap
        optimistic = min(cap, (used + 2300) * 64 // 63)
        if self._succeeds(raw, number, optimistic):
            hi = optimistic
        else:
            lo = optimistic
        # binary search, stopping within 1.5% as geth does (the answer always succeeds)
        while hi - lo > 1 and (hi - lo) * 1000 > hi * 15:
            mid = (hi + lo) // 2
            if self._succeeds(raw, number, mid):
                hi = mid
            else:
                lo = mid
        return _qty(hi)

    def _succeeds(self, raw: dict[str, Any], number: int, gas: int) -> bool:
        try:
            _, computation = self._execute(raw, number, gas)
        except JsonRpcError:
            return False
        return not computation.is_error

    # -- sending -------------------------------------------------------------------------
    def eth_sendRawTransaction(self, params: list[Any]) -> str:
        raw_tx = _parse_data(_param(params, 0, "data"), "data")
        if not raw_tx:
            raise _invalid_params("empty transaction")
        from eth_tester.constants import BLOB_TX_TYPE

        if raw_tx[0] != BLOB_TX_TYPE:
            try:
                decoded = self.chain.get_vm().get_transaction_builder().decode(raw_tx)
            except Exception as exc:
                raise _invalid_params(f"could not decode the transaction: {exc}") from None
            tx_chain_id = getattr(decoded, "chain_id", None)
            if tx_chain_id is not None and tx_chain_id != self.chain_id:
                raise _server_error(f"invalid chain id for signer: have {tx_chain_id} want {self.chain_id}")
            if decoded.hash in self._tx_blocks:
                raise _server_error("already known")
        return self._send_and_mine(self.backend.send_raw_transaction, raw_tx)

    def eth_sendTransaction(self, params: list[Any]) -> str:
        obj = _param(params, 0, "transaction")
        raw = self.tx_request(obj, for_call=False)
        if raw["from"] not in self.accounts:
            raise _server_error("unknown account")
        if not raw["to"]:
            raw["to"] = b""
        if "gas" not in raw:
            estimate_request = {k: v for k, v in obj.items() if k not in ("gas", "nonce")}
            raw["gas"] = int(self.eth_estimateGas([estimate_request, "latest"]), 16)
        if "gas_price" not in raw and "max_fee_per_gas" not in raw:
            priority = raw.setdefault("max_priority_fee_per_gas", DEFAULT_PRIORITY_FEE)
            raw["max_fee_per_gas"] = 2 * _base_fee(self.chain.header) + priority
        elif "max_fee_per_gas" in raw:
            raw.setdefault("max_priority_fee_per_gas", min(DEFAULT_PRIORITY_FEE, raw["max_fee_per_gas"]))
        return self._send_and_mine(self.backend.send_transaction, raw)

    def _send_and_mine(self, send: Callable[[Any], bytes], transaction: Any) -> str:
        """Hand the transaction to eth-tester, mine it in a block of its own, return its hash."""
        self._refresh_pending_timestamp()
        try:
            tx_hash = send(transaction)
        except Exception as exc:
            raise _server_error(_validation_message(exc)) from None
        self.mine(1)
        return _hex(tx_hash)

    def evm_mine(self, params: list[Any]) -> str:
        self.mine(1)
        return "0x0"

    def anvil_mine(self, params: list[Any]) -> None:
        count = _parse_qty(params[0], "blocks") if params and params[0] is not None else 1
        if count > 100_000:
            raise _invalid_params("blocks: at most 100000 at a time")
        self.mine(count)
        return None

    # -- reads ---------------------------------------------------------------------------
    def web3_sha3(self, params: list[Any]) -> str:
        from eth_utils import keccak

        return _hex(keccak(_parse_data(_param(params, 0, "data"), "data")))

    def eth_gasPrice(self, params: list[Any]) -> str:
        return _qty(_base_fee(self.chain.header) + DEFAULT_PRIORITY_FEE)

    def _account_at(self, params: list[Any]) -> tuple[Any, bytes]:
        """The state and the address of an ``[address, block]`` request."""
        address = _parse_address(_param(params, 0, "address"), "address")
        number = self.block_number(_param(params, 1, "block", "latest"))
        return self.state_at(number), address

    def eth_getBalance(self, params: list[Any]) -> str:
        state, address = self._account_at(params)
        return _qty(state.get_balance(address))

    def eth_getTransactionCount(self, params: list[Any]) -> str:
        state, address = self._account_at(params)
        return _qty(state.get_nonce(address))

    def eth_getCode(self, params: list[Any]) -> str:
        state, address = self._account_at(params)
        return _hex(state.get_code(address))

    def eth_getStorageAt(self, params: list[Any]) -> str:
        address = _parse_address(_param(params, 0, "address"), "address")
        slot = _param(params, 1, "slot")
        if isinstance(slot, str) and len(slot) == 66:  # a 32-byte word rather than a quantity
            slot_int = int.from_bytes(_parse_data(slot, "slot"), "big")
        else:
            slot_int = _parse_qty(slot, "slot")
        number = self.block_number(_param(params, 2, "block", "latest"))
        return _word(self.state_at(number).get_storage(address, slot_int))

    def _mined_block(self, tag: Any):
        """The block ``tag`` names, or None where it is not mined yet (geth answers null)."""
        try:
            number = self.block_number(tag)
        except JsonRpcError as exc:
            if exc.code == -32000:
                return None
            raise
        return self.block_at(number)

    def eth_getBlockByNumber(self, params: list[Any]) -> dict[str, Any] | None:
        tag = _param(params, 0, "block")
        full = _parse_bool(_param(params, 1, "fullTransactions", False), "fullTransactions")
        block = self._mined_block(tag)
        return None if block is None else self.format_block(block, full)

    def eth_getBlockByHash(self, params: list[Any]) -> dict[str, Any] | None:
        block_hash = _parse_hash(_param(params, 0, "hash"), "hash")
        full = _parse_bool(_param(params, 1, "fullTransactions", False), "fullTransactions")
        try:
            block = self.block_by_hash(block_hash)
        except JsonRpcError:
            return None
        return self.format_block(block, full)

    def eth_getBlockTransactionCountByNumber(self, params: list[Any]) -> str | None:
        block = self._mined_block(_param(params, 0, "block"))
        return None if block is None else _qty(len(block.transactions))

    def eth_getBlockTransactionCountByHash(self, params: list[Any]) -> str | None:
        try:
            block = self.block_by_hash(_parse_hash(_param(params, 0, "hash"), "hash"))
        except JsonRpcError:
            return None
        return _qty(len(block.transactions))

    def eth_getTransactionByHash(self, params: list[Any]) -> dict[str, Any] | None:
        found = self.find_tx(_parse_hash(_param(params, 0, "hash"), "hash"))
        if found is None:
            return None
        block, index = found
        return self.format_tx(block, block.transactions[index], index)

    def eth_getTransactionReceipt(self, params: list[Any]) -> dict[str, Any] | None:
        found = self.find_tx(_parse_hash(_param(params, 0, "hash"), "hash"))
        if found is None:
            return None
        return self.format_receipt(*found)

    def eth_getBlockReceipts(self, params: list[Any]) -> list[dict[str, Any]] | None:
        block = self._mined_block(_param(params, 0, "block"))
        if block is None:
            return None
        return [self.format_receipt(block, i) for i in range(len(block.transactions))]

    def eth_feeHistory(self, params: list[Any]) -> dict[str, Any]:
        count = _parse_qty(_param(params, 0, "blockCount"), "blockCount")
        newest = self.block_number(_param(params, 1, "newestBlock"))
        percentiles = _param(params, 2, "rewardPercentiles", None)
        if percentiles is not None:
            if not isinstance(percentiles, list) or not all(
                isinstance(p, int | float) and 0 <= p <= 100 for p in percentiles
            ):
                raise _invalid_params("rewardPercentiles: expected numbers between 0 and 100")
            if any(b < a for a, b in zip(percentiles, percentiles[1:], strict=False)):
                raise _invalid_params("rewardPercentiles: must be ascending")
        count = max(0, min(count, 1024, newest + 1))
        oldest = newest - count + 1
        base_fees, ratios, rewards = [], [], []
        for number in range(oldest, newest + 1):
            block = self.block_at(number)
            header = block.header
            base_fee = _base_fee(header)
            base_fees.append(_qty(base_fee))
            ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
            if percentiles is not None:
                rewards.append([_qty(r) for r in self._rewards(block, base_fee, percentiles)])
        if count:
            if newest + 1 <= self.latest_number():
                next_header = self.block_at(newest + 1).header
            else:
                next_header = self.chain.header
            base_fees.append(_qty(_base_fee(next_header)))
        result: dict[str, Any] = {
            "oldestBlock": _qty(max(oldest, 0)),
            "baseFeePerGas": base_fees,
            "gasUsedRatio": ratios,
        }
        if percentiles is not None:
            result["reward"] = rewards
        return result

    def _rewards(self, block, base_fee: int, percentiles: list[float]) -> list[int]:
        if not block.transactions:
            return [0 for _ in percentiles]
        receipts = block.get_receipts(self.chain.chaindb)
        tips = []
        previous = 0
        for tx, receipt in zip(block.transactions, receipts, strict=True):
            gas_used, previous = receipt.gas_used - previous, receipt.gas_used
            if hasattr(tx, "max_priority_fee_per_gas"):
                tip = min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee)
            else:
                tip = tx.gas_price - base_fee
            tips.append((max(tip, 0), gas_used))
        tips.sort()
        total = sum(g for _, g in tips)
        out = []
        for p in percentiles:
            threshold = total * p / 100
            acc = 0
            chosen = tips[-1][0]
            for tip, gas in tips:
                acc += gas
                if acc >= threshold:
                    chosen = tip
                    break
            out.append(chosen)
        return out

    # -- logs and filters ----------------------------------------------------------------
    def _log_criteria(self, obj: Any) -> tuple[set[str] | None, list[set[str] | None]]:
        addresses = obj.get("address")
        if addresses is None:
            address_set = None
        else:
            items = addresses if isinstance(addresses, list) else [addresses]
            address_set = {_addr(_parse_address(a, "address")) for a in items}
        topics = obj.get("topics") or []
        if not isinstance(topics, list) or len(topics) > 4:
            raise _invalid_params("topics: expected an array of at most 4 positions")
        topic_sets: list[set[str] | None] = []
        for position in topics:
            if position is None:
                topic_sets.append(None)
            else:
                items = position if isinstance(position, list) else [position]
                topic_sets.append({_hex(_parse_hash(t, "topics")) for t in items} if items else None)
        return address_set, topic_sets

    @staticmethod
    def _matches(log: dict[str, Any], addresses: set[str] | None, topics: list[set[str] | None]) -> bool:
        if addresses is not None and log["address"] not in addresses:
            return False
        if len(topics) > len(log["topics"]):
            return False
        return all(wanted is None or log["topics"][i] in wanted for i, wanted in enumerate(topics))

    def _logs_between(self, first: int, last: int, addresses, topics) -> list[dict[str, Any]]:
        out = []
        for number in range(max(first, 0), last + 1):
            if self.chain.get_canonical_block_header_by_number(number).bloom == 0:
                continue
            out.extend(log for log in self.block_logs(number) if self._matches(log, addresses, topics))
        return out

    def _range(self, obj: dict[str, Any]) -> tuple[int, int]:
        latest = self.latest_number()

        def resolve(tag: Any, default: int) -> int:
            if tag is None:
                return default
            if tag in _LATEST_TAGS:
                return latest
            if tag == "earliest":
                return 0
            return _parse_qty(tag, "block")

        first = resolve(obj.get("fromBlock"), latest)
        last = resolve(obj.get("toBlock"), latest)
        return first, min(last, latest)

    @staticmethod
    def _filter_object(params: list[Any]) -> dict[str, Any]:
        obj = _param(params, 0, "filter")
        if not isinstance(obj, dict):
            raise _invalid_params("filter: expected an object")
        return obj

    def eth_getLogs(self, params: list[Any]) -> list[dict[str, Any]]:
        obj = self._filter_object(params)
        addresses, topics = self._log_criteria(obj)
        if obj.get("blockHash") is not None:
            if obj.get("fromBlock") is not None or obj.get("toBlock") is not None:
                raise _invalid_params("cannot specify both blockHash and fromBlock/toBlock")
            block = self.block_by_hash(_parse_hash(obj["blockHash"], "blockHash"))
            return self._logs_between(block.number, block.number, addresses, topics)
        first, last = self._range(obj)
        if first > self.latest_number():
            return []
        return self._logs_between(first, last, addresses, topics)

    def eth_newFilter(self, params: list[Any]) -> str:
        obj = self._filter_object(params)
        self._log_criteria(obj)  # validate now
        from_block = obj.get("fromBlock")
        if from_block is None or from_block in _LATEST_TAGS:
            first = self.latest_number() + 1  # as geth: only blocks mined after the filter
        else:
            first, _ = self._range({"fromBlock": from_block})
        return self._add_filter({"kind": "logs", "criteria": obj, "next": first})

    def eth_newBlockFilter(self, params: list[Any]) -> str:
        return self._add_filter({"kind": "blocks", "next": self.latest_number() + 1})

    def _add_filter(self, spec: dict[str, Any]) -> str:
        filter_id = self._next_filter
        self._next_filter += 1
        self._filters[filter_id] = spec
        return _qty(filter_id)

    def _get_filter(self, params: list[Any]) -> tuple[int, dict[str, Any]]:
        filter_id = _parse_qty(_param(params, 0, "id"), "id")
        spec = self._filters.get(filter_id)
        if spec is None:
            raise _server_error("filter not found")
        return filter_id, spec

    def eth_getFilterChanges(self, params: list[Any]) -> list[Any]:
        _, spec = self._get_filter(params)
        latest = self.latest_number()
        first = spec["next"]
        spec["next"] = max(first, latest + 1)
        if spec["kind"] == "blocks":
            return [_hex(self.block_at(n).hash) for n in range(first, latest + 1)]
        addresses, topics = self._log_criteria(spec["criteria"])
        _, last = self._range({"toBlock": spec["criteria"].get("toBlock")})
        return self._logs_between(first, last, addresses, topics)

    def eth_getFilterLogs(self, params: list[Any]) -> list[Any]:
        _, spec = self._get_filter(params)
        if spec["kind"] != "logs":
            raise _server_error("filter not found")
        return self.eth_getLogs([spec["criteria"]])

    def eth_uninstallFilter(self, params: list[Any]) -> bool:
        filter_id = _parse_qty(_param(params, 0, "id"), "id")
        return self._filters.pop(filter_id, None) is not None


def _decode_revert_reason(output: bytes) -> str | None:
    if output[:4] == bytes.fromhex("08c379a0"):
        try:
            from eth_abi import decode

            return decode(["string"], output[4:])[0]
        except Exception:
            return None
    if output[:4] == bytes.fromhex("4e487b71") and len(output) >= 36:
        return f"panic: 0x{int.from_bytes(output[4:36], 'big'):02x}"
    return None


def _vm_error_message(error: Exception) -> str:
    name = type(error).__name__
    if name == "OutOfGas":
        return "out of gas"
    if name == "InvalidInstruction":
        return "invalid opcode"
    return str(error) or name


def _validation_message(exc: Exception) -> str:
    """py-evm's validation errors, worded as geth words them (clients match on these)."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    nonce = re.search(r"nonce: expected (\d+), but got (\d+)", text, re.IGNORECASE)
    if nonce:
        expected, got = int(nonce.group(1)), int(nonce.group(2))
        kind = "nonce too low" if got < expected else "nonce too high"
        return f"{kind}: next nonce {expected}, tx nonce {got}"
    if "nonce" in lowered:
        return f"invalid nonce: {text}"
    if "cannot afford" in lowered or "insufficient" in lowered:
        return f"insufficient funds for gas * price + value: {text}"
    return text


# --------------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------------

_MAX_BODY = 16 * 1024 * 1024
_MAX_BATCH = 1000


def _error_response(code: int, message: str, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


class _RpcHandler(QuietHandler):
    server_version = "devstack-chain/0.1"
    node: _Node

    def _reply(self, status: int, payload: Any | None) -> None:
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:  # noqa: N802
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        # geth answers plain GETs on its HTTP endpoint with 200 and an empty body
        self._reply(200, None)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.rfile.read(length)
            self._reply(413, _error_response(-32600, "request too large"))
            return
        body = self.rfile.read(length)
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self._reply(200, _error_response(-32700, "parse error"))
            return
        if isinstance(request, list):
            if not request:
                self._reply(200, _error_response(-32600, "empty batch"))
                return
            if len(request) > _MAX_BATCH:
                self._reply(200, _error_response(-32600, "batch too large"))
                return
            responses = [r for r in (self._handle(item) for item in request) if r is not None]
            self._reply(200, responses)
        else:
            self._reply(200, self._handle(request))

    def _handle(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            request_id = request.get("id") if isinstance(request, dict) else None
            return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32600, "message": "invalid request"}}
        request_id = request.get("id")
        try:
            result = self.node.call(request["method"], request.get("params"))
            response = {"jsonrpc": "2.0", "id": request_id, "result": result}
        except JsonRpcError as exc:
            response = {"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}
        except Exception as exc:  # a bug or an unexpected py-evm error: never kill the server
            error = {"code": -32603, "message": f"internal error: {type(exc).__name__}: {exc}"}
            response = {"jsonrpc": "2.0", "id": request_id, "error": error}
        return response


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def load_artifact(contract_name: str, artifacts_dir: str | Path | None = None) -> dict[str, Any]:
    """The compiled artefact ``{"abi", "bytecode", ...}`` of ``infra/contracts/build/<name>.json``."""
    directory = Path(artifacts_dir) if artifacts_dir is not None else ARTIFACTS_DIR
    path = directory / f"{contract_name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no compiled artefact {path}: run `make contracts`")
    return json.loads(path.read_text())


class DevChain(LoopbackHTTPService):
    """An in-process dev chain served as JSON-RPC over HTTP on loopback.

    >>> chain = DevChain(); chain.start()
    >>> registries = chain.deploy_registries()   # {"ContentRegistry": "0x…", "ContentRegistryCompact": "0x…"}
    >>> chain.rpc_url, chain.chain_id, chain.funded_private_keys[0]
    >>> chain.stop()
    """

    _thread_name = "devstack-chain"
    _noun = "the chain"

    def __init__(
        self,
        chain_id: int = CHAIN_ID,
        accounts: int = 10,
        balance_wei: int = DEV_ACCOUNT_BALANCE_WEI,
        artifacts_dir: str | Path | None = None,
        verbose: bool = False,
    ) -> None:
        self._node = _Node(chain_id=chain_id, accounts=accounts, balance_wei=balance_wei)
        self.chain_id = chain_id
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir is not None else ARTIFACTS_DIR
        self.verbose = verbose
        self.registries: dict[str, str] = {}

    def _handler_class(self) -> type[_RpcHandler]:
        return type("DevChainHandler", (_RpcHandler,), {"node": self._node, "verbose": self.verbose})

    # -- facts ---------------------------------------------------------------------------
    @property
    def rpc_url(self) -> str:
        return self.url

    @property
    def funded_private_keys(self) -> list[str]:
        return ["0x" + key.hex() for key in self._node.private_keys]

    @property
    def funded_accounts(self) -> list[str]:
        from eth_utils import to_checksum_address

        return [to_checksum_address(a) for a in self._node.accounts]

    @property
    def block_number(self) -> int:
        with self._node.lock:
            return self._node.latest_number()

    def mine(self, blocks: int = 1) -> int:
        """Mine empty blocks; returns the new latest block number."""
        with self._node.lock:
            self._node.mine(blocks)
            return self._node.latest_number()

    # -- deployment ----------------------------------------------------------------------
    def web3(self, timeout: float = 30):
        from web3 import Web3

        return Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": timeout}))

    def deploy(self, contract_name: str, *constructor_args: Any, private_key: str | None = None) -> str:
        """Deploy ``infra/contracts/build/<contract_name>.json`` with a signed raw transaction
        sent over the HTTP endpoint; returns the checksummed address."""
        from eth_account import Account

        artefact = load_artifact(contract_name, self.artifacts_dir)
        w3 = self.web3()
        account = Account.from_key(private_key or self.funded_private_keys[0])
        factory = w3.eth.contract(abi=artefact["abi"], bytecode=artefact["bytecode"])
        _, receipt = _sign_and_send(w3, account, factory.constructor(*constructor_args), timeout=30)
        if receipt["status"] != 1 or not receipt["contractAddress"]:
            raise RuntimeError(f"deploying {contract_name} failed: {dict(receipt)}")
        return receipt["contractAddress"]

    def deploy_registries(self) -> dict[str, str]:
        """Deploy both registry layouts: {"ContentRegistry": addr, "ContentRegistryCompact": addr}."""
        self.registries = {name: self.deploy(name) for name in REGISTRY_CONTRACTS}
        return dict(self.registries)


def _sign_and_send(w3: Any, account: Any, contract_call: Any, timeout: float) -> tuple[Any, Any]:
    """Send ``contract_call`` from ``account`` (at its pending nonce) as a raw transaction signed
    locally and wait for it to be mined; returns ``(tx_hash, receipt)``."""
    tx = contract_call.build_transaction(
        {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending")}
    )
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.05)
    return tx_hash, receipt


def _send_registry_tx(
    function: str,
    rpc_url: str,
    registry_address: str,
    private_key: str,
    content_hash_hex: str,
    manifest_uri: str,
    timeout: float,
) -> dict[str, Any]:
    from eth_account import Account
    from web3 import Web3

    content_hash = bytes.fromhex(content_hash_hex.removeprefix("0x").removeprefix("0X"))
    if len(content_hash) != 32:
        raise ValueError("content_hash_hex must be 32 bytes of hex")
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    account = Account.from_key(private_key)
    registry = w3.eth.contract(address=Web3.to_checksum_address(registry_address), abi=_REGISTRY_CLIENT_ABI)
    contract_call = getattr(registry.functions, function)(content_hash, manifest_uri)
    tx_hash, receipt = _sign_and_send(w3, account, contract_call, timeout)
    if receipt["status"] != 1:
        raise RuntimeError(f"{function} transaction {Web3.to_hex(tx_hash)} reverted")
    return {"txHash": Web3.to_hex(tx_hash), "blockNumber": int(receipt["blockNumber"])}


def register_content(
    rpc_url: str,
    registry_address: str,
    private_key: str,
    content_hash_hex: str,
    manifest_uri: str,
    timeout: float = 60,
) -> dict[str, Any]:
    """Register ``content_hash_hex`` with ``manifest_uri`` on any EVM JSON-RPC endpoint, with a
    raw transaction signed locally; returns ``{"txHash": "0x…", "blockNumber": n}``."""
    return _send_registry_tx(
        "register", rpc_url, registry_address, private_key, content_hash_hex, manifest_uri, timeout
    )


def update_manifest(
    rpc_url: str,
    registry_address: str,
    private_key: str,
    content_hash_hex: str,
    manifest_uri: str,
    timeout: float = 60,
) -> dict[str, Any]:
    """Point an existing registration at another manifest (only its creator may): this is how a
    test makes the on-chain URI differ from the manifest's. Returns ``{"txHash", "blockNumber"}``."""
    return _send_registry_tx(
        "updateManifest", rpc_url, registry_address, private_key, content_hash_hex, manifest_uri, timeout
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.chain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8545)
    parser.add_argument("--no-deploy", action="store_true", help="do not deploy the registries")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)
    chain = DevChain(verbose=args.verbose)
    chain.start(args.host, args.port)
    print(f"RPC URL                 {chain.rpc_url}", flush=True)
    print(f"chain id                {chain.chain_id}", flush=True)
    if not args.no_deploy:
        for name, address in chain.deploy_registries().items():
            print(f"{name:<24}{address}", flush=True)
    print(f"funded account          {chain.funded_accounts[0]}", flush=True)
    print(f"its private key         {chain.funded_private_keys[0]}", flush=True)
    chain.serve_until_signalled()


if __name__ == "__main__":
    main()
