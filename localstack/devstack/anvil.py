"""The dev chain: anvil, Foundry's dev node, on a free loopback port, with both registry layouts
deployed from the committed artefacts in infra/contracts/build/.

anvil comes from npm (`@foundry-rs/anvil`, pinned in localstack/package.json and its lockfile;
`npm ci` runs when the binary is missing). Its ten well-known dev accounts are funded; the
registries are deployed by the first one at nonces 0 and 1 of a fresh chain, so their addresses
are the same on every start (`ContentRegistry` at 0x5FbDB2315678afecb367f032d93F642f64180aa3).
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from web3 import Web3

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NPM_DIR = PROJECT_ROOT / "localstack"
ARTIFACTS_DIR = PROJECT_ROOT / "infra" / "contracts" / "build"
REGISTRY_CONTRACTS = ("ContentRegistry", "ContentRegistryCompact")
DEFAULT_CHAIN_ID = 31337
_LISTENING = re.compile(rb"Listening on 127\.0\.0\.1:(\d+)")


def anvil_binary() -> Path:
    """The native binary of the pinned npm package (its platform package's `bin/anvil`)."""

    def installed() -> list[Path]:
        return sorted(NPM_DIR.glob("node_modules/@foundry-rs/anvil-*/bin/anvil"))

    if not installed():
        # The wrapper's postinstall is not needed (npm warns that it is not approved).
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NPM_DIR, check=True)
    binaries = installed()
    if not binaries:
        raise RuntimeError(f"npm ci in {NPM_DIR} installed no anvil binary for this platform")
    return binaries[0]


def load_artifact(contract_name: str) -> dict[str, Any]:
    """The compiled artefact `{"abi", "bytecode", "deployedBytecode", ...}` of a registry contract."""
    return json.loads((ARTIFACTS_DIR / f"{contract_name}.json").read_text())


class Anvil:
    """One anvil process on loopback. `start()` returns once it listens (it answers JSON-RPC at
    once); `stop()` ends it. Its log goes to `log_dir/anvil.log` (a temporary directory by default)."""

    def __init__(self, chain_id: int = DEFAULT_CHAIN_ID, log_dir: Path | None = None) -> None:
        self.chain_id = chain_id
        self._state_dir = tempfile.TemporaryDirectory(prefix="anvil-")
        self.log_path = (log_dir or Path(self._state_dir.name)) / "anvil.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.rpc_url = ""
        self.funded_private_keys: list[str] = []
        self.registries: dict[str, str] = {}

    def start(self, timeout: float = 30.0) -> "Anvil":
        config = Path(self._state_dir.name) / "config.json"  # anvil writes its accounts and keys here
        argv = [str(anvil_binary()), "--host", "127.0.0.1", "--port", "0", "--chain-id", str(self.chain_id),
                "--config-out", str(config)]
        with open(self.log_path, "wb") as log:
            # A session of its own, like the stack's other children: Ctrl-C reaches the stack, which
            # stops anvil after the processes that use it.
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            self.rpc_url = f"http://127.0.0.1:{self._wait_for_port(timeout)}"
            self.funded_private_keys = json.loads(config.read_text())["private_keys"]
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, timeout: float) -> int:
        """The port anvil bound (`--port 0`), from its "Listening on" line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _LISTENING.search(self.log_path.read_bytes())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                raise self._failure(f"anvil exited with {self.process.returncode}")
            time.sleep(0.05)
        raise self._failure(f"anvil did not listen within {timeout}s")

    def _failure(self, reason: str) -> RuntimeError:
        """The error with anvil's last output (its log may live in a directory `stop()` removes)."""
        tail = self.log_path.read_text(errors="replace")[-2000:].strip()
        return RuntimeError(f"{reason}; its output ({self.log_path}):\n{tail}")

    def web3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))

    def rpc(self, method: str, *params: Any) -> Any:
        """One raw JSON-RPC call (anvil_* methods web3 has no name for); raises on an error answer."""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        answer = requests.post(self.rpc_url, json=body, timeout=30).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def mine(self, blocks: int) -> int:
        """Mine empty blocks (`anvil_mine`, about 100 a second here); returns the new head."""
        self.rpc("anvil_mine", hex(blocks))
        return int(self.rpc("eth_blockNumber"), 16)

    def deploy_registries(self) -> dict[str, str]:
        """Deploy both layouts from the first dev account: {"ContentRegistry": addr, "ContentRegistryCompact": addr}."""
        w3 = self.web3()
        deployer = w3.eth.accounts[0]  # anvil's dev accounts are unlocked: no signing needed
        for name in REGISTRY_CONTRACTS:
            artefact = load_artifact(name)
            factory = w3.eth.contract(abi=artefact["abi"], bytecode=artefact["bytecode"])
            receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": deployer}),
                                                          timeout=30, poll_latency=0.05)
            if receipt["status"] != 1:
                raise RuntimeError(f"deploying {name} failed: {dict(receipt)}")
            self.registries[name] = receipt["contractAddress"]
        return dict(self.registries)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._state_dir.cleanup()
