"""Every validation rule of the HTTP contract gives its 4xx JSON error, over real HTTP,
on the synchronous and the job endpoints alike, and bad manifests or registries give clear
errors rather than 5xx."""
from __future__ import annotations

import json
import os

import pytest

from devstack.anchoring import ipfs_add
from tests.integration.conftest import assert_error, form

GOOD_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
SUBMIT_PATHS = ["/api/verify", "/api/proof", "/api/verification-jobs/verify", "/api/verification-jobs/proof"]


@pytest.fixture
def fields(stack):
    return {"registryAddress": stack.endpoints["registry_address"], "manifestURI": f"ipfs://{GOOD_CID}"}


@pytest.mark.parametrize("path", SUBMIT_PATHS)
@pytest.mark.parametrize("name,value,code", [
    ("registryAddress", "0x123", "VALIDATION_ERROR"),
    ("registryAddress", "", "VALIDATION_ERROR"),
    ("registryAddress", "0x" + "g" * 40, "VALIDATION_ERROR"),
    ("manifestURI", "ftp://example.com/m.json", "VALIDATION_ERROR"),
    ("manifestURI", "ipfs://not-a-cid", "VALIDATION_ERROR"),
    ("manifestURI", "https://example.com/" + "a" * 2048, "VALIDATION_ERROR"),
    ("manifestURI", "http://169.254.169.254/latest/meta-data/", "URL_NOT_ALLOWED"),
    ("rpcUrl", "ws://127.0.0.1:8545", "VALIDATION_ERROR"),
    ("rpcUrl", "http://169.254.169.254/", "URL_NOT_ALLOWED"),
    ("rpcUrl", "http://[fd00:ec2::254]/", "URL_NOT_ALLOWED"),
])
def test_bad_field_is_400(api, fields, path, name, value, code):
    response = api.post(path, **form({**fields, name: value}, b"content"))
    assert_error(response, 400, code, name)


@pytest.mark.parametrize("path", SUBMIT_PATHS)
def test_missing_file_is_400(api, fields, path):
    response = api.post(path, data=fields, files={"other": ("x", b"1")})
    assert_error(response, 400, "VALIDATION_ERROR", "file")


@pytest.mark.parametrize("path", SUBMIT_PATHS)
def test_empty_file_is_400(api, fields, path):
    assert_error(api.post(path, **form(fields, b"")), 400, "VALIDATION_ERROR", "file")


@pytest.mark.parametrize("path", SUBMIT_PATHS)
def test_disallowed_file_type_is_415(api, fields, path):
    response = api.post(path, **form(fields, b"MZ...", name="tool.exe", content_type="application/x-msdownload"))
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE", "file")


@pytest.mark.parametrize("path", SUBMIT_PATHS)
def test_file_over_inline_cap_is_413_pointing_to_uploads(api, fields, path):
    response = api.post(path, **form(fields, b"\0" * (4 * 1024 * 1024 + 1)))
    body = assert_error(response, 413, "PAYLOAD_TOO_LARGE", "file")
    assert "/api/verification-jobs/uploads" in body["error"]


@pytest.mark.parametrize("path", SUBMIT_PATHS)
def test_form_urlencoded_is_415(api, fields, path):
    body = assert_error(api.post(path, data=fields), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "multipart/form-data" in body["error"]


@pytest.mark.parametrize("path", ["/api/verify", "/api/proof"])
def test_sync_endpoints_take_no_json_hash(api, fields, path):
    body = assert_error(api.post(path, json={**fields, "contentHash": "0x" + "ab" * 32}), 415,
                        "UNSUPPORTED_MEDIA_TYPE")
    assert "multipart/form-data" in body["error"]


def test_malformed_multipart_is_400(api):
    response = api.post("/api/verification-jobs/verify", data=b"--x\r\nnot a part",
                        headers={"content-type": "multipart/form-data"})
    assert_error(response, 400, "INVALID_MULTIPART")


@pytest.mark.parametrize("content_hash", ["0x1234", "ab" * 32, "0x" + "z" * 64])
def test_bad_content_hash_is_400(api, fields, content_hash):
    response = api.post("/api/verification-jobs/verify", json={**fields, "contentHash": content_hash})
    assert_error(response, 400, "VALIDATION_ERROR", "contentHash")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"null"])
def test_non_json_body_is_400(api, raw):
    response = api.post("/api/verification-jobs/verify", data=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "INVALID_JSON")


def test_missing_fields_of_a_json_submission_are_400(api, fields):
    for missing in ("registryAddress", "manifestURI", "contentHash"):
        body = {**fields, "contentHash": "0x" + "ab" * 32}
        del body[missing]
        assert_error(api.post("/api/verification-jobs/verify", json=body), 400, "VALIDATION_ERROR", missing)


@pytest.mark.parametrize("query,field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"), ("offset=-1", "offset"),
    ("offset=2147483648", "offset"),
    ("status=done", "status"), ("type=hash", "type"),
])
def test_bad_list_query_is_400(api, query, field):
    response = api.get(f"/api/verification-jobs?{query}", headers={"x-api-key": "test-api-key"})
    assert_error(response, 400, "VALIDATION_ERROR", field)


def test_unknown_or_malformed_job_id_is_404(api):
    for job_id in ("3f1c4a52-0000-4000-8000-000000000000", "not-a-uuid", "1234567890"):
        body = assert_error(api.get(f"/api/verification-jobs/{job_id}"), 404, "NOT_FOUND")
        assert body["error"] == "Job not found"


def test_api_key_guards_listing_and_admin(api):
    assert_error(api.get("/api/verification-jobs"), 401, "UNAUTHORIZED")
    assert_error(api.get("/api/verification-jobs", headers={"x-api-key": "wrong"}), 401, "UNAUTHORIZED")
    assert_error(api.post("/api/verification-jobs/dead-letter/redrive"), 401, "UNAUTHORIZED")
    assert_error(api.post("/api/verification-jobs/3f1c4a52-0000-4000-8000-000000000000/retry"), 401, "UNAUTHORIZED")
    assert api.get("/api/verification-jobs", headers={"x-api-key": "test-api-key"}).status_code == 200


# --- manifests and registries that cannot be verified: clear errors, never a 5xx ----------

def _manifest_case(stack, api, manifest_bytes: bytes, registry: str | None = None):
    cid = ipfs_add(stack.endpoints["ipfs_api_url"], manifest_bytes)
    fields = {"registryAddress": registry or stack.endpoints["registry_address"], "manifestURI": f"ipfs://{cid}"}
    return api.post("/api/verify", **form(fields, b"some content"))


def test_non_json_manifest_is_a_clear_error(stack, api):
    body = assert_error(_manifest_case(stack, api, b"<html>not json</html>"), 422, "MANIFEST_INVALID")
    assert "JSON" in body["error"]


def test_manifest_over_one_mib_is_a_clear_error(stack, api):
    big = json.dumps({"padding": "x" * (1024 * 1024 + 10)}).encode()
    body = assert_error(_manifest_case(stack, api, big), 422, "MANIFEST_TOO_LARGE")
    assert "1 MiB" in body["error"] or "1048576" in body["error"]


def test_registry_address_without_code_is_a_clear_error(stack, api, anchored):
    data = os.urandom(64)
    item = anchored(data, register=False)
    fields = {"registryAddress": "0x" + "12" * 20, "manifestURI": item.manifest_uri}
    body = assert_error(api.post("/api/verify", **form(fields, data)), 422, "REGISTRY_NOT_FOUND")
    assert "0x1212" in body["error"].lower() or "no contract" in body["error"].lower()
