"""Errors at the API's edges: every storage and queue call a route makes (put, exists, delete,
presign, send, receive, depth) meets a dependency that fails, and the route answers the
contract's JSON (503 with `Retry-After`, or its documented degraded answer), never a 500. The
failures are the kinds botocore raises (no connection, timeouts, AWS errors), and a client
that cannot even be made (a bad endpoint, no region)."""
from __future__ import annotations

import copy
import dataclasses
import json

import boto3.session
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, NoRegionError
from chalice.test import Client
from urllib3 import encode_multipart_formdata

import app
from chalicelib.aws import LazyClient
from chalicelib.vocabulary import CANCELLED, FAILED, QUEUED

from tests.unit.conftest import API_KEY

REGISTRY = "0x" + "ab" * 20
MANIFEST = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/manifest.json"
ADMIN = {"x-api-key": API_KEY}


class Broken:
    """A boto3 client whose every call raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            raise self.error
        return call


FAILURES = {
    "no connection": lambda: EndpointConnectionError(endpoint_url="https://aws.example"),
    "timeout": lambda: ConnectTimeoutError(endpoint_url="https://aws.example"),
    "aws error": lambda: ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "Op"),
}
UNMAKEABLE = {
    "bad endpoint": lambda: ValueError("Invalid endpoint: not a url"),
    "no region": lambda: NoRegionError(),
}


@pytest.fixture(params=[*FAILURES, *UNMAKEABLE])
def failure(request):
    return request.param


@pytest.fixture()
def broken(monkeypatch):
    """`broken(service, failure)`: the Storage or WorkQueue with its client failing as named."""
    def make(service, failure: str):
        attribute = "s3" if hasattr(service, "s3") else "sqs"
        if failure in FAILURES:
            client = LazyClient(attribute, Broken(FAILURES[failure]()))
        else:  # boto3 itself refuses to make the client
            class Session:
                def client(self, *args, **kwargs):
                    raise UNMAKEABLE[failure]()
            monkeypatch.setattr(boto3.session, "Session", Session)  # LazyClient imports boto3 when it first makes one
            client = LazyClient(attribute)
        changed = copy.copy(service)
        setattr(changed, attribute, client)
        return changed
    return make


@pytest.fixture()
def serve_with(monkeypatch, services):
    def serve(storage=None, queue=None):
        chosen = dataclasses.replace(services, storage=storage or services.storage, queue=queue or services.queue)
        monkeypatch.setattr(app, "services", lambda: chosen)
        return Client(app.app).http
    return serve


def assert_503(response, code: str) -> None:
    assert response.status_code == 503, response.body
    body = json.loads(response.body)
    assert set(body) == {"error", "code"} and body["code"] == code
    assert response.headers["Retry-After"].isdigit()


def inline_form():
    body, content_type = encode_multipart_formdata(
        [("registryAddress", REGISTRY), ("manifestURI", MANIFEST), ("file", ("a.txt", b"hello", "text/plain"))])
    return body, {"Content-Type": content_type}


def failed_job(store, **fields):
    job = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                           **fields)
    store.fail_job(job.id, "RPC unreachable", "RPC_UNAVAILABLE")
    return job


def test_storage_failures_are_503_or_the_documented_answer(serve_with, services, store, broken, failure):
    http = serve_with(storage=broken(services.storage, failure))
    body, headers = inline_form()
    assert_503(http.post("/api/verification-jobs/verify", body=body, headers=headers), "STORAGE_UNAVAILABLE")
    upload = json.dumps({"registryAddress": REGISTRY, "manifestURI": MANIFEST, "filename": "a.mp4"})
    assert_503(http.post("/api/verification-jobs/uploads", body=upload, headers={"Content-Type": "application/json"}),
               "STORAGE_UNAVAILABLE")
    assert store.jobs == {}  # nothing recorded for a file that could not be stored or signed
    retried = failed_job(store, object_key="inline/x")
    assert_503(http.post(f"/api/verification-jobs/{retried.id}/retry", headers=ADMIN), "STORAGE_UNAVAILABLE")
    assert store.get_job(retried.id).status == FAILED
    queued = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                              object_key="inline/y")
    cancelled = http.post(f"/api/verification-jobs/{queued.id}/cancel")
    assert cancelled.status_code == 200 and json.loads(cancelled.body)["status"] == CANCELLED  # the sweep deletes
    health = http.get("/api/health")
    assert health.status_code == 503 and json.loads(health.body)["checks"]["storage"].startswith("error")


def test_queue_failures_are_503_or_the_documented_answer(serve_with, services, store, broken, failure):
    http = serve_with(queue=broken(services.queue, failure))
    body, headers = inline_form()
    submitted = http.post("/api/verification-jobs/verify", body=body, headers=headers)
    assert submitted.status_code == 202  # recorded and stored: the sweeper sends it
    job = store.get_job(json.loads(submitted.body)["jobId"])
    assert (job.status, job.last_enqueued_at) == (QUEUED, None)
    retried = failed_job(store, content_hash="0x" + "11" * 32)
    assert http.post(f"/api/verification-jobs/{retried.id}/retry", headers=ADMIN).status_code == 202
    assert store.get_job(retried.id).last_enqueued_at is None  # the sweeper sends it
    assert_503(http.post("/api/verification-jobs/dead-letter/redrive", headers=ADMIN), "QUEUE_UNAVAILABLE")
    stats = http.get("/api/verification-jobs/stats")
    assert stats.status_code == 200 and json.loads(stats.body)["available"] is False
    health = http.get("/api/health")
    assert health.status_code == 503 and json.loads(health.body)["checks"]["queue"].startswith("error")
