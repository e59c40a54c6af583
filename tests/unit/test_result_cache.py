"""The shared result cache, watched through the worker on a real (moto) work queue with the fake
store: a repeated verification within RESULT_CACHE_SECONDS makes no verification call and no
RPC call, and still gets its own result and history row. The core is stood in for (its calls
are what is counted); the chain id comes from a loopback JSON-RPC node, asked once."""
from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from chalicelib import result_cache, worker
from chalicelib.errors import PermanentError, TransientError
from chalicelib.vocabulary import COMPLETED, FAILED, QUEUED
from chalicelib.wiring import verification as verification_core

from tests.unit.conftest import LoopbackRpc, invoke_from_queue, make_settings
from tests.unit.test_worker import HASH, MANIFEST, REGISTRY, RESULT

PROOF = {"version": "1.0", "network": {"chainId": 31337, "name": "localhost"},
         "content": {"file": "first.mp4", "hash": HASH},
         "onchain": RESULT["onchain"], "signature": {"recovered": RESULT["recovered"], "valid": True},
         "verification": {"status": "OK"}, "evidence": RESULT["evidence"]}


@pytest.fixture(autouse=True)
def fresh_chain_ids():
    result_cache.chain_id_of.cache_clear()
    yield
    result_cache.chain_id_of.cache_clear()


def node(chain_id: int) -> LoopbackRpc:
    server = LoopbackRpc()
    server.answers["eth_chainId"] = (200, {"result": hex(chain_id)})
    return server


@pytest.fixture()
def rpc():
    server = node(31337)
    yield server
    server.close()


def cached_app(aws, services, serve, rpc, seconds: str = "60"):
    """app.py on moto and the fake store, the cache on (DATABASE_URL names no database: the fake
    store stands in for it) and the loopback node as RPC_URL."""
    settings = make_settings(aws, RESULT_CACHE_SECONDS=seconds,
                             DATABASE_URL="postgresql://unused.invalid/db", RPC_URL=rpc.url,
                             ALLOW_PRIVATE_NETWORKS="true")
    return serve(dataclasses.replace(services, settings=settings))


@pytest.fixture()
def core(monkeypatch):
    """Stand in for verify_hash and prove_hash: `value` is returned (or raised); calls counted."""
    outcome = {"value": RESULT, "proof": PROOF, "calls": []}

    def verify(file_hash, *args, **kwargs):
        outcome["calls"].append(("verify", file_hash))
        if isinstance(outcome["value"], Exception):
            raise outcome["value"]
        return outcome["value"]

    def prove(file_hash, file_name, *args, **kwargs):
        outcome["calls"].append(("proof", file_name))
        return {**outcome["proof"], "content": {"file": file_name, "hash": file_hash}}
    monkeypatch.setattr(verification_core(), "verify_hash", verify)
    monkeypatch.setattr(verification_core(), "prove_hash", prove)
    return outcome


def run_job(aws, store, app, job_type="verify", **fields):
    job = store.create_job(job_type=job_type, status=QUEUED,
                           **({"manifest_uri": MANIFEST, "registry_address": REGISTRY, "content_hash": HASH} | fields))
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps({"jobId": job.id}))
    invoke_from_queue(aws, aws.queue_url, app.process_verification_job)
    return store.get_job(job.id)


def test_a_repeated_verification_is_served_from_the_cache(aws, store, services, serve, rpc, core):
    app = cached_app(aws, services, serve, rpc)
    first, second = run_job(aws, store, app), run_job(aws, store, app)
    assert len(core["calls"]) == 1  # the second job made no verification call
    assert rpc.calls == ["eth_chainId"]  # asked once for the key; nothing for the hit
    assert (first.status, second.status) == (COMPLETED, COMPLETED)
    assert first.result == RESULT
    assert second.result["evidence"] == {**RESULT["evidence"], "cached": True}  # original checkedAt
    assert {k: v for k, v in second.result.items() if k != "evidence"} == \
        {k: v for k, v in RESULT.items() if k != "evidence"}
    assert [row["job_id"] for row in store.history] == [first.id, second.id]  # a history row each


def test_the_registry_address_and_hash_are_one_key_whatever_their_case(aws, store, services, serve, rpc, core):
    app = cached_app(aws, services, serve, rpc)
    run_job(aws, store, app, content_hash="0x" + "ab" * 32)
    run_job(aws, store, app, registry_address=REGISTRY.upper().replace("0X", "0x"), content_hash="0x" + "AB" * 32)
    assert len(core["calls"]) == 1


def test_an_expired_entry_is_verified_afresh(aws, store, services, serve, rpc, core):
    app = cached_app(aws, services, serve, rpc)
    run_job(aws, store, app)
    (key, (result, checked_at)), = store.cache.items()
    store.cache[key] = (result, checked_at - timedelta(seconds=61))
    again = run_job(aws, store, app)
    assert len(core["calls"]) == 2 and again.result["evidence"]["cached"] is False


def test_zero_seconds_turns_the_cache_off(aws, store, services, serve, rpc, core):
    app = cached_app(aws, services, serve, rpc, seconds="0")
    run_job(aws, store, app)
    again = run_job(aws, store, app)
    assert len(core["calls"]) == 2 and again.result["evidence"]["cached"] is False
    assert store.cache == {} and rpc.calls == []


def test_errors_are_not_cached(aws, store, services, serve, rpc, core):
    app = cached_app(aws, services, serve, rpc)
    core["value"] = PermanentError("no contract there", "REGISTRY_NOT_FOUND")
    assert run_job(aws, store, app).status == FAILED
    core["value"] = RESULT
    assert run_job(aws, store, app).result == RESULT
    assert len(core["calls"]) == 2


def test_another_manifest_uri_or_chain_misses(aws, store, services, serve, rpc, core):
    app = cached_app(aws, services, serve, rpc)
    run_job(aws, store, app)
    run_job(aws, store, app, manifest_uri=MANIFEST + "?v=2")
    other_chain = node(84532)
    try:
        run_job(aws, store, app, rpc_url=other_chain.url)
    finally:
        other_chain.close()
    assert len(core["calls"]) == 3
    assert sorted(key.chain_id for key in store.cache) == [31337, 31337, 84532]


def test_a_verify_result_is_not_served_as_a_proof_and_a_cached_proof_names_its_own_file(
        aws, store, services, serve, rpc, core):
    app = cached_app(aws, services, serve, rpc)
    run_job(aws, store, app)
    run_job(aws, store, app, job_type="proof", file_name="first.mp4")
    again = run_job(aws, store, app, job_type="proof", file_name="second.mp4")
    assert core["calls"] == [("verify", HASH), ("proof", "first.mp4")]
    assert again.result["content"] == {"file": "second.mp4", "hash": HASH}
    assert again.result["evidence"]["cached"] is True


def test_an_unreachable_cache_means_a_fresh_verification(aws, store, services, serve, rpc, core, monkeypatch):
    def down(*args):
        raise TransientError("Database unavailable", "DATABASE_UNAVAILABLE")
    monkeypatch.setattr(store, "cached_result", down)
    monkeypatch.setattr(store, "store_result", down)
    app = cached_app(aws, services, serve, rpc)
    assert run_job(aws, store, app).result == RESULT
