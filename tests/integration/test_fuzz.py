"""The API fuzzed against its own OpenAPI document (schemathesis), on the running local stack.

Every operation of the document served at `/api/openapi.json` gets generated requests, valid
and invalid (schemathesis' examples, coverage and fuzzing phases), and every check schemathesis
has runs on each answer: no 5xx, status codes, content types, headers and bodies as documented,
what the document calls valid is accepted, what it calls invalid is refused. The links of each
submission's answer are followed to the job it created.

Bounded for `make test` (about a minute); `make fuzz` (FUZZ_MAX_EXAMPLES) runs longer.
"""
from __future__ import annotations

import json
import os

import hypothesis
import jsonschema
import pytest
import requests
import schemathesis
from chalicelib.apidoc import DOCUMENT_PATH
from schemathesis.checks import positive_data_acceptance
from schemathesis.config._phases import DEFAULT_UNEXPECTED_METHODS
from devstack.stack import Stack

from tests.integration.conftest import API_KEY

pytestmark = pytest.mark.emulator_neutral  # the API's answers against its document

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SYNC_OPERATIONS = {"POST /api/verify", "POST /api/proof"}
COMPLETE_UPLOAD = "POST /api/verification-jobs/{jobId}/upload/complete"
UPLOADS = "POST /api/verification-jobs/uploads"
SUBMISSIONS = {"POST /api/verification-jobs/verify", "POST /api/verification-jobs/proof", UPLOADS}
# A CID that decodes (of the dev IPFS node's kind); random strings almost never are one.
DECODABLE_MANIFEST_URI = "ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
MANIFEST_URI_SCHEMA = jsonschema.Draft202012Validator(
    json.loads(DOCUMENT_PATH.read_text())["components"]["schemas"]["ManifestURI"])


def _configure(schema: schemathesis.BaseSchema, api_url: str | None = None) -> schemathesis.BaseSchema:
    """Requests carry the API key (so the key-guarded operations are fuzzed past their 401)
    and each operation gets a bounded number of examples."""
    if api_url:
        schema.config.update(base_url=api_url)
    schema.config.update(headers={"x-api-key": API_KEY}, request_timeout=60)
    schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
    # Out of scope: TRACE and QUERY reach `chalice local`'s HTTP server (Python's http.server), which
    # answers 501 to methods it has no handler for, before the application sees them; in the
    # deployment API Gateway answers them.
    # Every other undeclared method is still probed and must get 405.
    schema.config.phases.coverage.unexpected_methods = DEFAULT_UNEXPECTED_METHODS - {"trace", "query"}
    return schema


@schemathesis.hook
def map_body(ctx: schemathesis.HookContext, body: object) -> object:
    """Random strings almost never decode as a CID, so without this every submission is refused
    and what happens to an accepted one is never checked. A manifest URI that the document calls
    valid (`ipfs://` and a CID-shaped name) is swapped for one that decodes: valid for valid, so a
    case meant to be invalid stays invalid."""
    manifest_uri = body.get("manifestURI") if isinstance(body, dict) else None
    if ctx.operation is not None and ctx.operation.label in SUBMISSIONS and isinstance(manifest_uri, str) \
            and manifest_uri.startswith("ipfs://") and MANIFEST_URI_SCHEMA.is_valid(manifest_uri):
        return {**body, "manifestURI": DECODABLE_MANIFEST_URI}
    return body



def positive_data_accepted_unless_unresolvable(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                                               case: schemathesis.Case) -> bool | None:
    """schemathesis' `positive_data_acceptance`, except for the documented answers that depend
    on the outside world, which no schema can foresee: 400 `DNS_RESOLUTION_FAILED` (a
    well-formed URL whose random host does not resolve), and 422/502 of the synchronous
    endpoints (the verification ran, and the generated manifest or registry did not hold up),
    and 400 for an `ipfs://` manifest URI whose CID does not decode (a CID's multibase and
    multihash are beyond what a JSON schema can say), and 400 `parts: …` of a multipart completion
    (the list disagrees with the parts storage holds, or names a part twice), and of an upload
    request 413 (a size over the configured limit of its kind of upload, which the description
    gives) or 400 for `multipart: true` without a size (a rule across two fields). Every other
    refusal of schema-valid data still fails."""
    body = _error_body(response)
    if response.status_code == 400 and body.get("code") == "DNS_RESOLUTION_FAILED":
        return None
    if response.status_code == 400 and body.get("field") == "manifestURI" and "valid CID" in body.get("error", ""):
        return None
    if case.operation.label in SYNC_OPERATIONS and response.status_code in (422, 502):
        return None
    if case.operation.label == UPLOADS and (response.status_code == 413 or (
            response.status_code == 400 and body.get("field") == "size" and "multipart upload needs" in body.get("error", ""))):
        return None
    if case.operation.label == COMPLETE_UPLOAD and response.status_code == 400 \
            and body.get("field") == "parts" and body.get("error", "").startswith("parts: "):
        return None
    return positive_data_acceptance(ctx, response, case)


def _error_body(response: schemathesis.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


CHECKS = {"excluded_checks": [positive_data_acceptance], "additional_checks": [positive_data_accepted_unless_unresolvable]}


# Collected from the committed document (pytest parametrizes at import, before the stack runs;
# schemathesis' lazy fixture loader does not work with this pytest); the first test proves the
# stack serves exactly this document.
schema = _configure(schemathesis.openapi.from_path(str(DOCUMENT_PATH)))


def test_the_stack_serves_the_fuzzed_document(stack: Stack) -> None:
    served = requests.get(f"{stack.endpoints['api_url']}/api/openapi.json", timeout=30).json()
    assert served == json.loads(DOCUMENT_PATH.read_text())


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_answers_as_documented(case: schemathesis.Case, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.endpoints["api_url"], **CHECKS)


def _operations_by_id(document: dict) -> dict[str, tuple[str, str]]:
    return {operation["operationId"]: (method, path) for path, item in document["paths"].items()
            for method, operation in item.items() if isinstance(operation, dict) and "operationId" in operation}


def _body_pointer(expression: str, body: dict) -> object:
    """A `$response.body#/a/b` runtime expression on a JSON body (the only kind the document uses)."""
    prefix = "$response.body#/"
    assert expression.startswith(prefix), f"a link expression this test cannot read: {expression}"
    value: object = body
    for name in expression[len(prefix):].split("/"):
        value = value[name]  # type: ignore[index]
    return value


def test_every_link_of_a_submission_leads_to_the_job_it_created(stack: Stack, anchored) -> None:
    """Each link the document gives on a 202/201 submission, followed as written (operationId and
    runtime expression), answers 200 with the job that submission created. Checked with plain
    requests: schemathesis' state machine needs an API whose answers do not change between
    replays (a job it cancelled once is not cancellable again), which a queue is not."""
    api_url = stack.endpoints["api_url"]
    document = requests.get(f"{api_url}/api/openapi.json", timeout=30).json()
    operations = _operations_by_id(document)
    content = anchored(b"followed by its links")
    target = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": content.manifest_uri}
    headers = {"x-api-key": API_KEY}
    submissions = {
        "/api/verification-jobs/verify": ({**target, "contentHash": content.content_hash}, "202"),
        "/api/verification-jobs/proof": ({**target, "contentHash": content.content_hash}, "202"),
        "/api/verification-jobs/uploads": ({**target, "filename": "clip.mp4", "size": 10}, "201"),
    }
    followed = []
    for path, (body, status) in submissions.items():
        links = document["paths"][path]["post"]["responses"][status].get("links", {})
        assert links, f"{path}'s {status} answer has no links"
        for name, link in links.items():
            submitted = requests.post(f"{api_url}{path}", json=body, headers=headers, timeout=30)
            assert submitted.status_code == int(status), submitted.text
            method, template = operations[link["operationId"]]
            url = template
            for parameter, expression in link["parameters"].items():
                url = url.replace(f"{{{parameter}}}", str(_body_pointer(expression, submitted.json())))
            answer = requests.request(method, f"{api_url}{url}", headers=headers, timeout=30)
            assert answer.status_code == 200, f"{path} → {name}: {answer.status_code} {answer.text}"
            assert answer.json()["jobId"] == submitted.json()["jobId"], f"{path} → {name} reached another job"
            followed.append((path, name))
    assert len(followed) >= 2 * len(submissions)
