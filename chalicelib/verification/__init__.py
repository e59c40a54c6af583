"""The verification core: hashing, manifests, signatures, registry reads, results and proofs.

Pure of AWS and the database, so the API, the workers and the tests share it as it is.

Its names are imported on first use (PEP 562): `web3` and `eth_account` take about a second to
import, and every Lambda function of a Chalice app imports `app.py`, so the routes that never
verify must not pay for them. `from chalicelib.verification import sha256_stream` or the URL
guard (`netguard`) load neither; `verify_hash` loads them. The product reaches the core through
`chalicelib.wiring.verification()`, once per process.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

# Where each public name lives.
_HOMES = {
    "sha256_stream": "hashing",
    "Manifest": "manifest", "fetch_manifest": "manifest", "parse_manifest": "manifest",
    "UrlNotAllowed": "netguard", "check_url": "netguard", "check_url_syntax": "netguard",
    "guarded_session": "netguard",
    "RegistrationTx": "registration", "find_registration": "registration",
    "OnchainEntry": "registry", "PinnedBlock": "registry", "pin_block": "registry", "read_entry": "registry",
    "chain_id": "rpc", "connect": "rpc", "connected": "rpc",
    "build_proof": "result", "build_verify_result": "result", "compute_checks": "result",
    "network_name": "result",
    "prove_hash": "verify", "verify_hash": "verify",
    "recover_signer": "signature",
}
_SUBMODULES = frozenset(_HOMES.values())

# py_ecc (imported by eth-account) raises the interpreter's recursion limit to 100000 for its
# own use. With it, a deeply nested JSON document (a request body or a hostile manifest)
# overflows the C stack and kills the process instead of raising RecursionError. We need no
# deep recursion: put a sane limit back whenever a name of the core is first loaded.
MAX_RECURSION = 5000


def _restore_recursion_limit() -> None:
    if sys.getrecursionlimit() > MAX_RECURSION:
        sys.setrecursionlimit(MAX_RECURSION)


def __getattr__(name: str) -> Any:
    """Load a public name, or a submodule asked for as `from chalicelib.verification import registry`."""
    if name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _restore_recursion_limit()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | _SUBMODULES)


__all__ = sorted(_HOMES)
