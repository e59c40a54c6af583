"""The OpenAPI document in chalicelib/openapi.json: valid, complete, served as stored, and true to
the HTTP contract. No network, no services."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from chalice.test import Client
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

import app
from chalicelib import apidoc, vocabulary

DOC_PATH = Path(app.__file__).parent / "chalicelib" / "openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
API_KEY_OPERATIONS = {
    ("/api/verification-jobs", "get"),
    ("/api/verification-jobs/activity", "get"),
    ("/api/verification-jobs/{jobId}/retry", "post"),
    ("/api/verification-jobs/dead-letter/redrive", "post"),
}


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(DOC_PATH.read_text(encoding="utf-8"))


def _template(path: str) -> str:
    """Path with its parameter names blanked: Chalice's `{job_id}` is the document's `{jobId}`."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def _operations(doc: dict) -> set[tuple[str, str]]:
    return {(_template(path), method) for path, item in doc["paths"].items() for method in item
            if method in HTTP_METHODS}


def _schema(doc: dict, name: str) -> dict:
    return doc["components"]["schemas"][name]


def _resolve(doc: dict, node: dict) -> dict:
    while "$ref" in node:
        target = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _validator(doc: dict, schema: dict) -> OAS31Validator:
    """A validator for a schema of the document, with its `#/components/...` references resolvable."""
    return OAS31Validator({"components": doc["components"], "allOf": [schema]})


def test_document_is_valid_openapi(doc: dict) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.")


def test_file_is_canonically_formatted() -> None:
    text = DOC_PATH.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


def test_every_route_is_documented_and_nothing_else(doc: dict) -> None:
    routes = {(_template(path), method.lower()) for path, methods in app.app.routes.items() for method in methods}
    assert routes == _operations(doc)


def test_path_parameters_are_declared(doc: dict) -> None:
    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (path, method)


def test_served_document_equals_the_file(doc: dict) -> None:
    with Client(app.app) as client:
        response = client.http.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body) == doc


def test_api_key_security_on_listing_retry_and_redrive_only(doc: dict) -> None:
    scheme = doc["components"]["securitySchemes"]["ApiKeyAuth"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "x-api-key"}
    assert "security" not in doc
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            secured = (path, method) in API_KEY_OPERATIONS
            assert ("security" in operation) == secured, (path, method)
            if secured:
                assert operation["security"] == [{"ApiKeyAuth": []}]
                assert "401" in operation["responses"]


def test_job_schema_has_every_contract_field(doc: dict) -> None:
    job = _schema(doc, "Job")
    contract = {"id", "jobId", "type", "status", "progress", "contentHash", "manifestUri", "registryAddress",
                "rpcUrl", "result", "error", "retryCount", "createdAt", "startedAt", "completedAt", "updatedAt"}
    assert contract | {"errorCode", "fileName"} == set(job["properties"]) == set(job["required"])
    assert _resolve(doc, job["properties"]["status"])["enum"] == list(vocabulary.JOB_STATUSES)
    assert _resolve(doc, job["properties"]["type"])["enum"] == list(vocabulary.JOB_TYPES)


def test_job_schema_accepts_what_job_to_api_returns(doc: dict) -> None:
    from datetime import datetime, timezone

    from chalicelib.jobs import Job, job_to_api

    now = datetime(2025, 10, 6, 18, 19, 40, 512000, tzinfo=timezone.utc)
    base = {name: None for name in Job.__dataclass_fields__}
    base.update(id="3f2b8c1e-7d4a-4e0b-9a61-2c5d8e9f0a17", type="verify", status="queued", progress=0,
                manifest_uri="ipfs://x", registry_address="0x" + "ab" * 20, retry_count=0, attempts=0,
                created_at=now, updated_at=now)
    validator = _validator(doc, {"$ref": "#/components/schemas/Job"})
    validator.validate(job_to_api(Job(**base)))
    example = _schema(doc, "VerifyResult")["example"]
    validator.validate(job_to_api(Job(**{**base, "status": "completed", "progress": 100, "result": example,
                                         "content_hash": example["fileHash"], "started_at": now,
                                         "completed_at": now})))


def test_stats_schema(doc: dict) -> None:
    stats = _schema(doc, "Stats")
    fields = {"available", "waiting", "active", "delayed", "completed", "failed", "deadLetter"}
    assert fields <= set(stats["required"]) and set(stats["properties"]) == set(stats["required"]) | {"byType", "largeFiles"}
    assert stats["properties"]["available"]["type"] == "boolean"
    figures = _schema(doc, "QueueFigures")
    assert set(figures["required"]) == {"waiting", "active", "delayed", "deadLetter"}
    assert set(stats["properties"]["byType"]["properties"]) == {"verify", "proof"}


def test_result_schemas(doc: dict) -> None:
    verify = _schema(doc, "VerifyResult")
    assert set(verify["required"]) == {"status", "fileHash", "recovered", "onchain", "checks", "evidence"}
    proof = _schema(doc, "Proof")
    assert "tx" in proof["properties"] and "tx" not in proof["required"]
    assert set(proof["required"]) == {"version", "generated_at", "network", "registry", "content", "manifest",
                                      "onchain", "signature", "verification", "evidence"}
    assert "revoked" in _schema(doc, "Onchain")["required"]
    assert set(_schema(doc, "Evidence")["required"]) == {"chainId", "blockNumber", "blockHash", "checkedAt", "cached", "rpc"}
    assert set(_schema(doc, "Evidence")["properties"]["rpc"]["required"]) == {"host", "deploymentNode"}


def test_the_results_the_core_builds_match_their_schemas(doc: dict) -> None:
    from tests.unit.test_verification_result import EVIDENCE, MANIFEST, RegistrationTx, _vector_inputs
    from chalicelib.verification.result import build_proof, build_verify_result, compute_checks
    from chalicelib.verification.registry import OnchainEntry

    revoked = OnchainEntry(creator="0x" + "ab" * 20, manifest_uri="", timestamp=1759774786)
    checks = compute_checks(MANIFEST.content_hash, MANIFEST, revoked.creator, revoked, MANIFEST.uri)
    _validator(doc, {"$ref": "#/components/schemas/VerifyResult"}).validate(
        build_verify_result(MANIFEST.content_hash, revoked.creator, revoked, checks, EVIDENCE))
    proof = build_proof(**_vector_inputs(tx=RegistrationTx(tx_hash="0x" + "cd" * 32, block_number=7)))
    _validator(doc, {"$ref": "#/components/schemas/Proof"}).validate(proof)


def test_error_schema(doc: dict) -> None:
    error = _schema(doc, "Error")
    assert set(error["properties"]) == {"error", "code", "field"}
    assert set(error["required"]) == {"error", "code"}


@pytest.mark.parametrize("path", ["/api/verification-jobs/verify", "/api/verification-jobs/proof",
                                  "/api/verify", "/api/proof"])
def test_inline_submissions(doc: dict, path: str) -> None:
    operation = doc["paths"][path]["post"]
    responses = operation["responses"]
    assert {"400", "413", "415", "422", "502"} <= set(responses)
    too_large = _resolve(doc, responses["413"])
    assert "PAYLOAD_TOO_LARGE" in too_large["description"]
    assert "/api/verification-jobs/uploads" in too_large["description"]
    form = _resolve(doc, operation["requestBody"]["content"]["multipart/form-data"]["schema"])
    assert set(form["required"]) == {"file", "registryAddress", "manifestURI"}
    assert set(form["properties"]) == {"file", "registryAddress", "manifestURI", "rpcUrl"}
    encoding = operation["requestBody"]["content"]["multipart/form-data"]["encoding"]["file"]["contentType"]
    assert set(encoding.split(", ")) == vocabulary.ALLOWED_CONTENT_TYPES
    assert "URL_NOT_ALLOWED" in _resolve(doc, responses["400"])["description"]
    assert "MANIFEST_INVALID" in responses["422"]["description"]


def test_job_submissions_are_async_with_sync_fallback(doc: dict) -> None:
    for path in ("/api/verification-jobs/verify", "/api/verification-jobs/proof"):
        operation = doc["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        assert set(content) == {"multipart/form-data", "application/json"}
        assert "contentHash" in _resolve(doc, content["application/json"]["schema"])["required"]
        responses = operation["responses"]
        assert "Location" in responses["202"]["headers"]
        assert responses["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/EnqueueResponse")
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SyncEnqueueResponse")


def test_list_query_parameters(doc: dict) -> None:
    params = {p["name"]: p for p in doc["paths"]["/api/verification-jobs"]["get"]["parameters"]}
    assert set(params) == {"status", "type", "limit", "offset"}
    empty = {"type": "string", "maxLength": 0}  # an empty filter is no filter
    status, empty_status = params["status"]["schema"]["anyOf"]
    job_type, empty_type = params["type"]["schema"]["anyOf"]
    assert _resolve(doc, status)["enum"] == list(vocabulary.JOB_STATUSES) and empty_status == empty
    assert _resolve(doc, job_type)["enum"] == list(vocabulary.JOB_TYPES) and empty_type == empty
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}
    assert params["offset"]["schema"] == {"type": "integer", "minimum": 0, "maximum": vocabulary.LIST_OFFSET_MAX,
                                          "default": 0}


def test_other_statuses(doc: dict) -> None:
    paths = doc["paths"]
    assert set(paths["/api/verification-jobs/uploads"]["post"]["responses"]) >= {"201", "400", "413", "415"}
    assert set(paths["/api/verification-jobs/{jobId}"]["get"]["responses"]) >= {"200", "404"}
    assert set(paths["/api/verification-jobs/{jobId}/retry"]["post"]["responses"]) >= {"202", "401", "404", "409"}
    assert set(paths["/api/verification-jobs/dead-letter/redrive"]["post"]["responses"]) >= {"200", "401"}
    assert set(paths["/api/health"]["get"]["responses"]) == {"200", "503"}
    async_doc = paths["/api/verification-jobs/{jobId}"]["get"]["description"]
    for word in ("awaiting_upload", "processing", "retryCount", "dead-letter", "UPLOAD_EXPIRED", "85"):
        assert word in async_doc


def _examples(node: object):
    """(schema, example) pairs of every media type object and schema that carries an example."""
    if isinstance(node, dict):
        if "schema" in node and "example" in node:
            yield node["schema"], node["example"]
        elif "example" in node and "type" in node:
            yield {k: v for k, v in node.items() if k != "example"}, node["example"]
        for value in node.values():
            yield from _examples(value)
    elif isinstance(node, list):
        for value in node:
            yield from _examples(value)


def test_examples_match_their_schemas(doc: dict) -> None:
    pairs = list(_examples(doc))
    assert len(pairs) > 10
    for schema, example in pairs:
        _validator(doc, schema).validate(example)


# --- the vocabulary's parts of the document ---------------------------------------------------

def test_committed_document_is_what_the_generator_writes() -> None:
    """Enumerations, patterns, limits, content types and code lists come from the vocabulary:
    run `python -m chalicelib.apidoc` after changing it."""
    text = DOC_PATH.read_text(encoding="utf-8")
    assert apidoc.dumps(apidoc.render(json.loads(text))) == text


def test_generator_follows_the_vocabulary(doc: dict, monkeypatch) -> None:
    monkeypatch.setattr(apidoc, "JOB_STATUSES", (*vocabulary.JOB_STATUSES, "paused"))
    rendered = apidoc.render(doc)
    assert rendered["components"]["schemas"]["JobStatus"]["enum"][-1] == "paused"
    assert rendered != doc


def _setting_names() -> set[str]:
    source = (Path(app.__file__).parent / "chalicelib" / "config.py").read_text(encoding="utf-8")
    return set(re.findall(r'env\.get\("([A-Z_]+)"\)', source))


def test_every_code_the_document_names_is_in_the_vocabulary_and_back() -> None:
    named = set(re.findall(r"`([A-Z][A-Z_]{3,})`", DOC_PATH.read_text(encoding="utf-8")))
    named |= {node for node in re.findall(r'"code": "([A-Z_]+)"', DOC_PATH.read_text(encoding="utf-8"))}
    assert named - _setting_names() - set(vocabulary.VERDICTS) <= set(vocabulary.ERROR_CODES)
    assert set(vocabulary.ERROR_CODES) <= named


def test_generator_script_rewrites_a_stale_document(tmp_path, monkeypatch, capsys) -> None:
    stale = json.loads(DOC_PATH.read_text(encoding="utf-8"))
    stale["components"]["schemas"]["JobType"]["enum"] = ["verify"]
    target = tmp_path / "openapi.json"
    target.write_text(apidoc.dumps(stale), encoding="utf-8")
    monkeypatch.setattr(apidoc, "DOCUMENT_PATH", target)
    assert apidoc.main() == 0 and "rewritten" in capsys.readouterr().out
    assert target.read_text(encoding="utf-8") == DOC_PATH.read_text(encoding="utf-8")


def test_counted_routes_document_the_429_and_the_others_do_not(doc: dict) -> None:
    from chalicelib.api.ratelimit import counted

    for path, item in doc["paths"].items():
        for method, operation in item.items():
            documented = operation["responses"].get("429") == {"$ref": "#/components/responses/RateLimited"}
            assert documented == counted(path), (path, method)
