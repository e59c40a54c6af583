"""What clients read about failures: a code and a short message, never a secret or an internal
detail (RPC URL paths with provider keys, database hosts and passwords, account ids, ARNs, the
address a name resolved to); those stay in the log. And control characters or over-long names
are a 400 before anything is stored."""
from __future__ import annotations

import json
import logging

import pytest

from chalicelib.config import Settings
from chalicelib.db import Database
from chalicelib.errors import TransientError
from chalicelib.verification.rpc import chain_id, connected
from chalicelib.vocabulary import DATABASE_UNAVAILABLE
from tests.unit.conftest import make_settings
from tests.unit.test_endpoints import HASH, JSON_HEADERS, MANIFEST, REGISTRY, error, form, hash_job, http, use  # noqa: F401

PROVIDER_KEY = "k3y-0f-the-provider"
DB_SECRET = "db-password-9"
ACCOUNT_ARN = "arn:aws:iam::123456789012:role/internetid-worker"
LOCAL = Settings(allow_private_networks=True, http_timeout_seconds=2)


def test_health_says_which_check_failed_by_code_only(http, store, monkeypatch, caplog):
    def down():
        raise TransientError("Database unavailable", DATABASE_UNAVAILABLE,
                             detail=f'connection to server at "db.internal.example" failed; {ACCOUNT_ARN}')
    monkeypatch.setattr(store, "ping", down)
    with caplog.at_level(logging.WARNING):
        response = http.get("/api/health")
    assert response.status_code == 503
    assert json.loads(response.body)["checks"]["database"] == "error: DATABASE_UNAVAILABLE"
    assert "db.internal.example" not in response.body.decode() and "123456789012" not in response.body.decode()
    assert any("db.internal.example" in getattr(r, "detail", "") for r in caplog.records)  # the log keeps it


def test_a_dependency_outage_is_a_503_without_its_details(http, store, monkeypatch):
    def down(**_values):
        raise TransientError("Database unavailable", DATABASE_UNAVAILABLE, detail=f"password={DB_SECRET}")
    monkeypatch.setattr(store, "create_job", down)
    response = http.post("/api/verification-jobs/verify", headers=JSON_HEADERS, body=hash_job())
    assert (response.status_code, error(response)["code"]) == (503, "DATABASE_UNAVAILABLE")
    assert DB_SECRET not in response.body.decode()


def test_the_database_adapter_keeps_host_and_password_out_of_the_message():
    database = Database(f"postgresql://iid:{DB_SECRET}@127.0.0.1:1/iid", 1)  # nothing listens on port 1
    try:
        with pytest.raises(TransientError) as info:
            database.ping()
    finally:
        database.close()
    assert info.value.code == DATABASE_UNAVAILABLE
    assert "127.0.0.1" not in info.value.message and DB_SECRET not in info.value.message


def test_an_unreachable_rpc_url_with_a_key_in_its_path_is_not_echoed(rpc):
    settings = LOCAL
    closed = "http://127.0.0.1:1/v3/" + PROVIDER_KEY
    with pytest.raises(TransientError) as info:
        with connected(closed, settings) as w3:
            chain_id(w3)
    assert info.value.code == "RPC_UNAVAILABLE" and PROVIDER_KEY not in info.value.message
    rpc.answers["eth_chainId"] = (500, b"upstream says /v3/" + PROVIDER_KEY.encode())
    with pytest.raises(TransientError) as info:
        with connected(rpc.url + "/v3/" + PROVIDER_KEY, settings) as w3:
            chain_id(w3)
    assert info.value.message == "The RPC endpoint answered HTTP 500 during eth_chainId."


def test_a_sync_502_does_not_echo_the_deployments_rpc_url(http, use, aws):
    use(settings=make_settings(aws, RPC_URL="http://127.0.0.1:1/v3/" + PROVIDER_KEY, QUEUE_URL=None,
                               ALLOW_PRIVATE_NETWORKS="true", IPFS_GATEWAY="http://127.0.0.1:1"))
    response = http.post("/api/verification-jobs/verify", headers=JSON_HEADERS, body=hash_job())
    assert response.status_code == 502 and PROVIDER_KEY not in response.body.decode()


# --- control characters and long names: 400, and nothing stored ------------------------------

def _stored(aws) -> list:
    return aws.s3.list_objects_v2(Bucket=aws.bucket).get("Contents", [])


@pytest.mark.parametrize("file_name", ["clip\x00.txt", "clip\n.txt", "clip\x7f.txt", "a" * 256 + ".txt"])
def test_an_inline_file_name_with_control_characters_or_too_long_is_400_before_storing(http, aws, store, file_name):
    body, headers = form()
    body = body.replace(b'filename="clip.txt"', b'filename="' + file_name.encode() + b'"')
    response = http.post("/api/verification-jobs/verify", headers=headers, body=body)
    assert (response.status_code, error(response)["code"], error(response)["field"]) == (400, "VALIDATION_ERROR", "file")
    assert _stored(aws) == [] and store.jobs == {}


@pytest.mark.parametrize("field,value", [("manifestURI", MANIFEST + "\x00"), ("rpcUrl", "http://127.0.0.1:8545/\x01"),
                                         ("registryAddress", REGISTRY + "\x00"),
                                         ("manifestURI", MANIFEST + "\t")])  # refused, not stripped: as documented
def test_control_characters_in_any_field_are_400(http, aws, store, field, value):
    response = http.post("/api/verification-jobs/verify", headers=JSON_HEADERS, body=hash_job(**{field: value}))
    assert (response.status_code, error(response)["field"]) == (400, field)
    body, headers = form(**{field: value})
    response = http.post("/api/verification-jobs/verify", headers=headers, body=body)
    assert (response.status_code, error(response)["field"]) == (400, field)
    assert _stored(aws) == [] and store.jobs == {}


@pytest.mark.parametrize("file_name", ["clip\x00.mp4", "\x1b[31mred.mp4", "a" * 300])
def test_an_upload_file_name_with_control_characters_or_too_long_is_400(http, store, file_name):
    request = {"registryAddress": REGISTRY, "manifestURI": MANIFEST, "filename": file_name}
    response = http.post("/api/verification-jobs/uploads", headers=JSON_HEADERS, body=json.dumps(request).encode())
    assert (response.status_code, error(response)["field"]) == (400, "filename")
    assert store.jobs == {}
