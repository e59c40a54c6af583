"""Safeguards seen from outside, through the HTTP API of the running stack: hostile nesting
in a request body or a manifest, and a manifest URL that redirects to a cloud metadata address.

py_ecc (under eth-account) raises the interpreter's recursion limit to 100000; at that limit a
JSON document nested deeply enough overflows the C stack and kills the process (segfault)
instead of raising RecursionError. These tests check the answer AND that the API process and
the worker process are the very ones that were running before.
"""
from __future__ import annotations

import json
import os

from devstack.anchoring import ipfs_add
from tests.integration.conftest import Gate, assert_error, form, respond

NESTING = 100_000  # deep enough to crash a worker thread's C stack at py_ecc's recursion limit
METADATA_URL = "http://169.254.169.254/latest/meta-data/"


def nested(depth: int = NESTING) -> str:
    return "[" * depth + "]" * depth


def pid_of(process) -> int:
    assert process.alive(), f"{process.name} is not running; see {process.log_path}"
    return process.proc.pid


def test_a_deeply_nested_json_body_is_400_and_the_api_lives(stack, api):
    api_pid = pid_of(stack.api)
    body = ('{"registryAddress": "%s", "manifestURI": "ipfs://QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",'
            ' "contentHash": %s}' % (stack.endpoints["registry_address"], nested())).encode()
    for path in ("/api/verification-jobs/verify", "/api/verification-jobs/uploads"):
        response = api.post(path, data=body, headers={"content-type": "application/json"})
        assert_error(response, 400, "INVALID_JSON")

    assert api.get("/api/health").status_code == 200
    assert pid_of(stack.api) == api_pid


def test_a_deeply_nested_manifest_is_manifest_invalid_and_the_worker_lives(stack, api, anchored):
    data = os.urandom(64)
    item = anchored(data)
    hostile = json.dumps(item.manifest)[:-1] + f', "attestations": {nested()}}}'
    fields = {"registryAddress": stack.endpoints["registry_address"],
              "manifestURI": "ipfs://" + ipfs_add(stack.endpoints["ipfs_api_url"], hostile.encode())}
    api_pid, runner_pid = pid_of(stack.api), pid_of(stack.runner)

    assert_error(api.post("/api/verify", **form(fields, data)), 422, "MANIFEST_INVALID")
    submitted = api.post("/api/verification-jobs/verify", **form(fields, data))
    assert submitted.status_code == 202, submitted.text
    failed = api.wait_for_job(submitted.json()["jobId"])
    assert failed["status"] == "failed" and failed["errorCode"] == "MANIFEST_INVALID", failed
    assert failed["retryCount"] == 0  # permanent: it burns no retries

    good = {**fields, "manifestURI": item.manifest_uri}
    next_job = api.post("/api/verification-jobs/verify", **form(good, data)).json()["jobId"]
    assert api.wait_for_job(next_job)["result"]["status"] == "OK"
    assert (pid_of(stack.api), pid_of(stack.runner)) == (api_pid, runner_pid)


def test_a_manifest_url_redirecting_to_a_metadata_address_is_refused(stack, api):
    """The local stack allows private networks (its services are on loopback), never metadata
    addresses: the redirect is refused in the request and in the worker alike."""
    with Gate(respond(302, headers={"Location": METADATA_URL})) as redirector:
        redirector.open()
        fields = {"registryAddress": stack.endpoints["registry_address"],
                  "manifestURI": f"{redirector.url}/manifest.json"}
        body = assert_error(api.post("/api/verify", **form(fields, b"content")), 422, "URL_NOT_ALLOWED")
        assert "169.254.169.254" in body["error"]
        submitted = api.post("/api/verification-jobs/verify", **form(fields, b"content"))
        assert submitted.status_code == 202, submitted.text
        failed = api.wait_for_job(submitted.json()["jobId"])
        assert redirector.requests_seen == 2
    assert failed["status"] == "failed" and failed["errorCode"] == "URL_NOT_ALLOWED", failed
    assert failed["retryCount"] == 0
