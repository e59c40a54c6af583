"""The shared result cache over real HTTP on the local stack: a lane with RESULT_CACHE_SECONDS on
answers a repeated verification from PostgreSQL without any RPC call (the jobs read the dev chain
through the counting proxy of tests/integration/deepchain.py), and the stack's own deployment,
with the cache off, reads the chain every time."""
from __future__ import annotations

import os

import pytest

from tests.integration.conftest import form, history_rows, own_lane
from tests.integration.deepchain import DeepChainProxy

pytestmark = [pytest.mark.integration, pytest.mark.emulator_neutral]  # the cache lives in the database


@pytest.fixture(scope="module")
def cached_lane(stack, tmp_path_factory):
    with own_lane(stack, tmp_path_factory.mktemp("cache-lane"), env_overrides={"RESULT_CACHE_SECONDS": "60"}) as lane:
        yield lane


@pytest.fixture
def proxy(stack):
    server = DeepChainProxy(stack.endpoints["rpc_url"])
    yield server
    server.close()


def verify_job(api, target: dict[str, str], data: bytes) -> dict:
    submitted = api.post("/api/verification-jobs/verify", **form(target, data))
    assert submitted.status_code == 202, submitted.text
    job = api.wait_for_job(submitted.json()["jobId"])
    assert job["status"] == "completed", job
    return job


def target_for(stack, proxy, manifest_uri: str) -> dict[str, str]:
    return {"registryAddress": stack.endpoints["registry_address"], "manifestURI": manifest_uri, "rpcUrl": proxy.url}


def test_a_repeated_verification_reuses_the_stored_result_without_rpc_calls(stack, cached_lane, proxy, anchored, db):
    data = os.urandom(700)
    item = anchored(data)
    target = target_for(stack, proxy, item.manifest_uri)
    first = verify_job(cached_lane.api, target, data)
    assert proxy.counts.calls > 0 and first["result"]["evidence"]["cached"] is False

    proxy.reset()
    first_sync = cached_lane.api.post("/api/verify", **form(target, data))
    # The API process's first request for this RPC URL asks the chain id once; the result itself
    # comes from the cache the worker filled.
    assert proxy.counts.methods == ["eth_chainId"]

    proxy.reset()
    second = verify_job(cached_lane.api, target, data)
    sync = cached_lane.api.post("/api/verify", **form(target, data))
    assert proxy.counts.calls == 0, proxy.counts.methods  # neither the job nor the sync request asked the node

    fresh = first["result"]
    for response in (first_sync, sync):
        assert response.status_code == 200, response.text
    for result in (second["result"], first_sync.json(), sync.json()):
        # the same checkedAt, blockNumber and blockHash as the fresh result, marked cached
        assert result == {**fresh, "evidence": {**fresh["evidence"], "cached": True}}
    assert second["jobId"] != first["jobId"]
    assert (history_rows(db, first["jobId"]), history_rows(db, second["jobId"])) == (1, 1)
    stored = db.execute("SELECT count(*) FROM result_cache WHERE content_hash = %s", (item.content_hash.lower(),))
    assert stored.fetchone()[0] == 1


def test_with_the_cache_off_every_verification_reads_the_chain(stack, api, proxy, anchored, db):
    data = os.urandom(700)
    item = anchored(data)
    target = target_for(stack, proxy, item.manifest_uri)
    verify_job(api, target, data)
    proxy.reset()
    again = verify_job(api, target, data)
    assert proxy.counts.calls > 0 and again["result"]["evidence"]["cached"] is False
    assert history_rows(db, again["jobId"]) == 1
    stored = db.execute("SELECT count(*) FROM result_cache WHERE content_hash = %s", (item.content_hash.lower(),))
    assert stored.fetchone()[0] == 0  # off means nothing written either
