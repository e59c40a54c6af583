"""The verification core: hashing, manifests, signatures, registry reads, results and proofs.

Pure of AWS and the database, so the API, the workers and the tests share it as it is.
"""
import sys

from .hashing import sha256_stream
from .manifest import Manifest, fetch_manifest, parse_manifest
from .netguard import UrlNotAllowed, check_url, check_url_syntax, guarded_session
from .registration import RegistrationTx, find_registration
from .registry import OnchainEntry, PinnedBlock, chain_id, connect, pin_block, read_entry
from .result import build_proof, build_verify_result, compute_checks, network_name
from .verify import prove_hash, verify_hash
from .signature import recover_signer

# py_ecc (imported by eth-account) raises the interpreter's recursion limit to 100000 for its
# own use. With it, a deeply nested JSON document (a request body or a hostile manifest)
# overflows the C stack and kills the process instead of raising RecursionError. We need no
# deep recursion: put a sane limit back.
MAX_RECURSION = 5000
if sys.getrecursionlimit() > MAX_RECURSION:
    sys.setrecursionlimit(MAX_RECURSION)

__all__ = [
    "Manifest",
    "OnchainEntry",
    "PinnedBlock",
    "RegistrationTx",
    "UrlNotAllowed",
    "build_proof",
    "build_verify_result",
    "chain_id",
    "check_url",
    "check_url_syntax",
    "compute_checks",
    "connect",
    "fetch_manifest",
    "find_registration",
    "guarded_session",
    "network_name",
    "parse_manifest",
    "pin_block",
    "prove_hash",
    "read_entry",
    "recover_signer",
    "sha256_stream",
    "verify_hash",
]
