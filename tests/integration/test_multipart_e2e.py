"""Multipart uploads end to end on the local stack: part URLs signed by the API, parts PUT to the
emulator over real HTTP, the completion checked against what storage holds, the worker verifying
the joined object; an expired upload's parts aborted by the stack's sweep (every 2 s).

A second API on the same services takes parts of S3's minimum (5 MiB) and goes multipart above
8 MiB, so that a test file is a few MiB; the sweep and the workers are the stack's own."""
from __future__ import annotations

import json
import os
import threading
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from internetid_cli import flow
from internetid_cli.api import ApiClient, ClientError, Target
from internetid_cli.multipart import ResumeState

from tests.integration.conftest import assert_error, aws_client, extra_api, history_rows, wait_for

PART = 5 * 1024 * 1024
THRESHOLD = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def small_parts(stack, tmp_path_factory):
    with extra_api(stack, {"MULTIPART_PART_SIZE_BYTES": str(PART), "MULTIPART_THRESHOLD_BYTES": str(THRESHOLD)},
                   tmp_path_factory.mktemp("multipart-api")) as api:
        yield api


def create(api, stack, item, size: int, **extra) -> dict:
    body = {"type": "verify", "registryAddress": stack.endpoints["registry_address"],
            "manifestURI": item.manifest_uri, "filename": "master.mov", "contentType": "video/quicktime",
            "size": size, **extra}
    response = api.post("/api/verification-jobs/uploads", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def put_parts(upload: dict, data: bytes, numbers: set[int] | None = None) -> dict[int, str]:
    """PUT the parts (the chosen ones, or all) to their presigned URLs; part number -> ETag."""
    size, etags = upload["partSize"], {}
    for part in upload["parts"]:
        number = part["partNumber"]
        if numbers is None or number in numbers:
            answer = requests.put(part["url"], data=data[(number - 1) * size:number * size], timeout=60)
            assert answer.status_code == 200, answer.text
            etags[number] = answer.headers["ETag"]
    return etags


def complete(api, created: dict, etags: dict[int, str]) -> requests.Response:
    return api.post(created["upload"]["completeUrl"],
                    json={"parts": [{"partNumber": n, "etag": e} for n, e in sorted(etags.items())]})


def open_uploads(stack, key: str) -> list[dict]:
    s3 = aws_client(stack, "s3")
    listed = s3.list_multipart_uploads(Bucket=stack.endpoints["upload_bucket"], Prefix=key)
    return listed.get("Uploads", [])


def test_a_multipart_upload_completes_and_verifies(stack, small_parts, anchored, db):
    data = os.urandom(2 * PART + 4321)  # over the threshold: multipart without asking
    item = anchored(data)
    created = create(small_parts, stack, item, len(data))
    upload = created["upload"]
    assert upload["method"] == "MULTIPART" and upload["partSize"] == PART and len(upload["parts"]) == 3
    etags = put_parts(upload, data)

    status = small_parts.get(f"{created['pollUrl']}/upload").json()
    assert [p["partNumber"] for p in status["parts"]] == [1, 2, 3] and status["missing"] == []

    response = complete(small_parts, created, etags)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == created["pollUrl"]
    job = small_parts.wait_for_job(created["jobId"])
    assert job["status"] == "completed", job
    assert job["contentHash"] == item.content_hash and job["result"]["status"] == "OK"
    assert history_rows(db, created["jobId"]) == 1
    assert open_uploads(stack, f"uploads/{created['jobId']}") == []


def test_a_part_list_that_does_not_match_storage_is_refused_naming_the_part(stack, small_parts, anchored):
    data = os.urandom(2 * PART + 10)
    item = anchored(data)
    created = create(small_parts, stack, item, len(data))
    etags = put_parts(created["upload"], data)
    swapped = {**etags, 2: etags[3], 3: etags[2]}
    body = assert_error(complete(small_parts, created, swapped), 400, "VALIDATION_ERROR", "parts")
    assert "part 2" in body["error"] and "ETag" in body["error"]
    assert small_parts.get(created["pollUrl"]).json()["status"] == "awaiting_upload"
    # The right list still completes it.
    assert complete(small_parts, created, etags).status_code == 202
    assert small_parts.wait_for_job(created["jobId"])["result"]["status"] == "OK"


def test_an_expired_upload_fails_and_leaves_no_parts(stack, small_parts, anchored, db):
    data = os.urandom(2 * PART + 10)
    item = anchored(data)
    created = create(small_parts, stack, item, len(data))
    put_parts(created["upload"], data, numbers={1, 2})
    key = f"uploads/{created['jobId']}"
    assert len(open_uploads(stack, key)) == 1
    db.execute("UPDATE verification_jobs SET upload_expires_at = now() - interval '1 second' WHERE id = %s",
               (created["jobId"],))
    job = small_parts.wait_for_job(created["jobId"])
    assert (job["status"], job["errorCode"]) == ("failed", "UPLOAD_EXPIRED")
    wait_for(lambda: open_uploads(stack, key), lambda uploads: uploads == [], what="the expired upload aborted")
    assert_error(small_parts.get(f"{created['pollUrl']}/upload"), 409, "UPLOAD_EXPIRED")


def test_up_to_the_threshold_the_upload_is_still_one_presigned_post(stack, api, anchored):
    """The stack's own API keeps the defaults: 1 GiB is a presigned POST, a byte more is multipart.
    (tests/integration/test_uploads_e2e.py sends files through the presigned POST.)"""
    item = anchored(b"threshold")
    assert create(api, stack, item, 1024 ** 3)["upload"]["method"] == "POST"
    over = create(api, stack, item, 1024 ** 3 + 1)
    assert over["upload"]["method"] == "MULTIPART" and len(over["upload"]["parts"]) == 17
    assert api.post(f"{over['pollUrl']}/cancel").status_code == 200
    wait_for(lambda: open_uploads(stack, f"uploads/{over['jobId']}"), lambda uploads: uploads == [],
             what="the cancelled upload aborted")


class CountingClient(ApiClient):
    """The CLI's real client, recording the parts it PUTs; `fail_part` breaks one part for good,
    as a connection lost mid-upload would."""

    def __init__(self, base_url: str, fail_part: int | None = None) -> None:
        super().__init__(base_url)
        self.fail_part, self.sent, self.lock = fail_part, set(), threading.Lock()

    def put_part(self, url: str, data: bytes, attempts: int = 3) -> str:
        number = int(parse_qs(urlparse(url).query)["partNumber"][0])
        if number == self.fail_part:
            raise ClientError(f"uploading a part to storage: connection lost (part {number})")
        etag = super().put_part(url, data, attempts)
        with self.lock:
            self.sent.add(number)
        return etag


def test_an_interrupted_upload_resumed_by_the_cli_sends_only_the_missing_parts(stack, small_parts, anchored,
                                                                               tmp_path):
    data = os.urandom(3 * PART + 100)  # four parts
    item = anchored(data)
    file = tmp_path / "master.mov"
    file.write_bytes(data)
    state = ResumeState(tmp_path / "state.json")
    target = Target(stack.endpoints["registry_address"], item.manifest_uri)

    def verify(client: CountingClient) -> flow.Outcome:
        return flow.run(client, "verify", file, target, quiet=True, inline_limit=0, timeout=120, state=state)

    first = CountingClient(small_parts.base_url, fail_part=3)
    with pytest.raises(ClientError, match="connection lost"):
        verify(first)
    assert 3 not in first.sent and first.sent  # some parts landed before the interruption
    job_id = json.loads((tmp_path / "state.json").read_text())[ResumeState.key(small_parts.base_url, file)]["jobId"]

    second = CountingClient(small_parts.base_url)
    outcome = verify(second)
    assert second.sent == {1, 2, 3, 4} - first.sent
    assert (outcome.path, outcome.job_id, outcome.result["status"]) == ("multipart", job_id, "OK")
    assert json.loads((tmp_path / "state.json").read_text()) == {}  # forgotten once complete
