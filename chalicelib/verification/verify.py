"""One verification, from a file hash to a verify result or a proof.

Shared by the synchronous endpoints and the queue workers, so that both give the same answer.
Hashing the file (progress 10) and persisting the outcome (90, 100) belong to the callers.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Callable, NamedTuple

from ..config import Settings
from ..errors import TransientError
from ..timefmt import iso_now
from ..vocabulary import (PROGRESS_MANIFEST, PROGRESS_REGISTRY, PROGRESS_SIGNER, PROGRESS_TX,
                          RPC_ERROR)
from . import registration, registry, rpc
from .manifest import Manifest, fetch_manifest
from .result import Checks, build_proof, build_verify_result, compute_checks, evidence_dict, rpc_evidence
from .signature import recover_signer

Progress = Callable[[int], None]


def _report(progress: Progress | None, value: int) -> None:
    if progress is not None:
        progress(value)


def _check_inputs(file_hash: str, registry_address: str, rpc_url: str | None) -> tuple[str, str]:
    """Normalise the hash (lowercase) and the address (checksummed), refusing bad inputs
    before any network work."""
    rpc.require_rpc_url(rpc_url)
    return registry.checked_hash(file_hash), registry.checked_address(registry_address)


class _Evidence(NamedTuple):
    file_hash: str  # lowercase
    registry_address: str  # checksummed
    manifest: Manifest
    recovered: str
    entry: registry.OnchainEntry
    checks: Checks
    head: registry.PinnedBlock  # the block the entry was read at
    evidence: dict[str, Any]
    w3: Any


def _gather_evidence(
    file_hash: str, manifest_uri: str, registry_address: str, rpc_url: str | None,
    settings: Settings, progress: Progress | None, resources: ExitStack,
) -> _Evidence:
    """Steps shared by verify and proof: check the inputs, then manifest (30), signer (50),
    registry entry at the pinned head (70) and the checks. Two RPC round trips: the head with
    the chain id, then code and entry at that block."""
    file_hash, registry_address = _check_inputs(file_hash, registry_address, rpc_url)
    manifest = fetch_manifest(manifest_uri, settings)
    _report(progress, PROGRESS_MANIFEST)
    recovered = recover_signer(manifest.content_hash, manifest.signature)
    _report(progress, PROGRESS_SIGNER)
    w3 = resources.enter_context(rpc.connected(rpc_url, settings))
    head = registry.pin_block(w3)
    checked_at = iso_now()
    entry = registry.read_entry(w3, registry_address, file_hash, head.number)
    _report(progress, PROGRESS_REGISTRY)
    checks = compute_checks(file_hash, manifest, recovered, entry, manifest_uri)
    evidence = evidence_dict(head, checked_at, rpc_evidence(rpc_url, settings.rpc_url))
    return _Evidence(file_hash, registry_address, manifest, recovered, entry, checks, head, evidence, w3)


def verify_hash(file_hash: str, manifest_uri: str, registry_address: str, rpc_url: str | None,
                settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """The verify result for content whose SHA-256 is `file_hash` ("0x" + 64 hex).

    `rpc_url` is the effective URL (the client's, else the deployment's RPC_URL); None raises
    RPC_URL_REQUIRED. Raises PermanentError / TransientError (chalicelib.errors) on failure.
    """
    with ExitStack() as resources:
        ev = _gather_evidence(file_hash, manifest_uri, registry_address, rpc_url, settings, progress, resources)
    return build_verify_result(ev.file_hash, ev.recovered, ev.entry, ev.checks, ev.evidence)


def prove_hash(file_hash: str, file_name: str | None, manifest_uri: str, registry_address: str,
               rpc_url: str | None, settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """The proof document for content whose SHA-256 is `file_hash`; see verify_hash."""
    with ExitStack() as resources:
        ev = _gather_evidence(file_hash, manifest_uri, registry_address, rpc_url, settings, progress, resources)
        tx = None
        if ev.entry.registered:  # an unregistered hash has no registration to look for
            try:
                tx = registration.find_registration(ev.w3, ev.registry_address, ev.file_hash, settings,
                                                head=ev.head, registered_at=ev.entry.timestamp)
            except TransientError as exc:
                if exc.code != RPC_ERROR:
                    raise  # unreachable endpoint: retry the job
                # The provider answers but refuses eth_getLogs even for one block (method
                # disabled, pruned history): the registration tx is best-effort, as in the
                # original proof.
    _report(progress, PROGRESS_TX)
    return build_proof(
        file_hash=ev.file_hash,
        file_name=file_name,
        manifest=ev.manifest,
        manifest_uri=manifest_uri,
        registry_address=ev.registry_address,
        entry=ev.entry,
        recovered=ev.recovered,
        checks=ev.checks,
        tx=tx,
        evidence=ev.evidence,
    )
