"""Turning a result into what the user reads and the exit code scripts act on."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXIT_OK = 0        # the content checks out
EXIT_MISMATCH = 1  # WARN or FAIL: verified, and something does not match
EXIT_ERROR = 2     # could not verify: bad input, HTTP error, failed job, network, missing file
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)

CHECKS = (
    ("manifestHashOk", "file hash matches the manifest"),
    ("creatorOk", "manifest signer is the on-chain creator"),
    ("manifestOk", "on-chain manifest URI matches"),
)


def result_status(kind: str, result: dict[str, Any] | None) -> str | None:
    """OK/WARN/FAIL of a verify result or of a proof's `verification` section."""
    if not isinstance(result, dict):
        return None
    if kind == "proof":
        return (result.get("verification") or {}).get("status")
    return result.get("status")


def exit_code(status: str | None) -> int:
    if status == "OK":
        return EXIT_OK
    if status in ("WARN", "FAIL"):
        return EXIT_MISMATCH
    return EXIT_ERROR  # a result without a status is not something to trust


def _when(timestamp: Any) -> str:
    if not isinstance(timestamp, int) or timestamp <= 0:
        return "never registered"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(result: dict[str, Any]) -> str:
    """The verify result for people; `--json` gives the same result for programs."""
    onchain = result.get("onchain") or {}
    checks = result.get("checks") or {}
    lines = [
        f"Status:            {result.get('status')}",
        f"File hash:         {result.get('fileHash')}",
        f"Manifest signer:   {result.get('recovered')}",
        f"On-chain creator:  {onchain.get('creator')}",
        f"On-chain manifest: {onchain.get('manifestURI') or '-'}",
        f"Registered:        {_when(onchain.get('timestamp'))}",
        "Checks:",
    ]
    for key, label in CHECKS:
        mark = "ok  " if checks.get(key) else "FAIL"
        lines.append(f"  [{mark}] {label}")
    return "\n".join(lines)


def proof_summary(proof: dict[str, Any], output: Path) -> str:
    verification = proof.get("verification") or {}
    tx = proof.get("tx") or {}
    lines = [
        f"Status:            {verification.get('status')}",
        f"File hash:         {(proof.get('content') or {}).get('hash')}",
        f"Registration tx:   {tx.get('txHash') or 'not found'}"
        + (f" (block {tx['blockNumber']})" if tx.get("blockNumber") is not None else ""),
        f"Proof written to   {output}",
    ]
    return "\n".join(lines)


def write_proof(proof: dict[str, Any], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(proof, indent=2) + "\n")
