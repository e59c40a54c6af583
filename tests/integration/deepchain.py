"""A JSON-RPC proxy in front of a dev chain that counts the calls it forwards and can make the
chain look much longer than it is, for tests and benchmarks of registrations far behind the head.

anvil mines a few hundred empty blocks a second here, so a chain of millions of blocks cannot be
built. The proxy inserts `gap` empty blocks after real block `after`: the real block after it
was mined with its timestamp moved forward by `(gap + 1) * seconds_per_block`
(`evm_setNextBlockTimestamp`), and the inserted blocks get the timestamps in between, so the
chain's timestamps stay regular. Requests and answers are rewritten accordingly.

What it does not do: it rewrites only what the verification core uses (eth_blockNumber,
eth_getBlockByNumber, eth_getCode, eth_call, eth_getLogs with numeric ranges), inserted blocks
carry only number, hash, parentHash and timestamp, and only one gap is supported. Any other
method is forwarded unchanged.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from web3 import Web3


@dataclass
class Gap:
    after: int = 0  # the last real block before the inserted blocks
    blocks: int = 0  # how many blocks are inserted
    seconds_per_block: int = 2
    after_timestamp: int = 0  # the timestamp of real block `after`

    def to_real(self, number: int) -> int:
        """The real block whose state a virtual block has (an inserted block: the one before)."""
        if number <= self.after:
            return number
        return max(self.after, number - self.blocks)

    def to_virtual(self, number: int) -> int:
        return number if number <= self.after else number + self.blocks

    def inserted(self, number: int) -> bool:
        return self.after < number <= self.after + self.blocks


@dataclass
class Counts:
    round_trips: int = 0  # HTTP requests
    methods: list[str] = field(default_factory=list)  # JSON-RPC requests, batch members one by one

    @property
    def calls(self) -> int:
        return len(self.methods)


class DeepChainProxy:
    """`url` forwards to `upstream`; `counts` holds what it forwarded since `reset()`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.gap = Gap()
        self.counts = Counts()
        self._lock = threading.Lock()
        self._session = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                batch = body if isinstance(body, list) else [body]
                with proxy._lock:
                    proxy.counts.round_trips += 1
                    proxy.counts.methods.extend(request.get("method", "") for request in batch)
                answers = [proxy.answer(request) for request in batch]
                data = json.dumps(answers if isinstance(body, list) else answers[0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.counts = Counts()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._session.close()

    # --- building the gap --------------------------------------------------------------------

    def _upstream(self, method: str, params: list[Any]) -> Any:
        answer = self._session.post(self.upstream, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                         "params": params}, timeout=60).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def insert_blocks(self, blocks: int, seconds_per_block: int = 2) -> int:
        """Make the chain `blocks` blocks longer after its current head (mines one real block);
        returns the new virtual head."""
        assert self.gap.blocks == 0, "one gap only"
        head = self._upstream("eth_getBlockByNumber", ["latest", False])
        after, after_timestamp = int(head["number"], 16), int(head["timestamp"], 16)
        self._upstream("evm_setNextBlockTimestamp", [after_timestamp + (blocks + 1) * seconds_per_block])
        self._upstream("evm_mine", [])
        self.gap = Gap(after, blocks, seconds_per_block, after_timestamp)
        return self.gap.to_virtual(after + 1)

    # --- rewriting ---------------------------------------------------------------------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        method, params = request.get("method"), list(request.get("params") or [])
        reply = {"jsonrpc": "2.0", "id": request.get("id")}
        try:
            reply["result"] = self._result(method, params)
        except RuntimeError as exc:
            reply["error"] = {"code": -32000, "message": str(exc)}
        return reply

    def _block_param(self, tag: Any) -> Any:
        return hex(self.gap.to_real(int(tag, 16))) if isinstance(tag, str) and tag.startswith("0x") else tag

    def _result(self, method: str, params: list[Any]) -> Any:
        gap = self.gap
        if method == "eth_blockNumber":
            return hex(gap.to_virtual(int(self._upstream(method, params), 16)))
        if method == "eth_getBlockByNumber":
            tag = params[0]
            if isinstance(tag, str) and tag.startswith("0x") and gap.inserted(int(tag, 16)):
                return self._inserted_block(int(tag, 16))
            block = self._upstream(method, [self._block_param(tag), *params[1:]])
            if block is not None:
                block["number"] = hex(gap.to_virtual(int(block["number"], 16)))
            return block
        if method in ("eth_getCode", "eth_call") and len(params) > 1:
            return self._upstream(method, [params[0], self._block_param(params[1]), *params[2:]])
        if method == "eth_getLogs":
            return self._logs(params[0])
        return self._upstream(method, params)

    def _inserted_block(self, number: int) -> dict[str, Any]:
        gap = self.gap

        def block_hash(n: int) -> str:
            return Web3.to_hex(Web3.keccak(text=f"inserted block {n}"))

        return {"number": hex(number), "hash": block_hash(number), "parentHash": block_hash(number - 1),
                "timestamp": hex(gap.after_timestamp + (number - gap.after) * gap.seconds_per_block),
                "transactions": [], "logsBloom": "0x" + "00" * 256}

    def _logs(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        gap = self.gap
        lo, hi = int(query["fromBlock"], 16), int(query["toBlock"], 16)
        segments = []
        if lo <= gap.after:
            segments.append((lo, min(hi, gap.after)))
        if hi > gap.after + gap.blocks:
            segments.append((max(lo, gap.after + gap.blocks + 1) - gap.blocks, hi - gap.blocks))
        logs = []
        for real_lo, real_hi in segments:
            for log in self._upstream("eth_getLogs", [{**query, "fromBlock": hex(real_lo), "toBlock": hex(real_hi)}]):
                log["blockNumber"] = hex(gap.to_virtual(int(log["blockNumber"], 16)))
                logs.append(log)
        return logs
