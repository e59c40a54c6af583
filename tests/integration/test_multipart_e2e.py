"""Multipart uploads end to end on the local stack: part URLs signed by the API, parts PUT to the
emulator over real HTTP, the completion checked against what storage holds, the worker verifying
the joined object; an expired upload's parts aborted by the stack's sweep (every 2 s).

A second API on the same services takes parts of S3's minimum (5 MiB) and goes multipart above
8 MiB, so that a test file is a few MiB; the sweep and the workers are the stack's own."""
from __future__ import annotations

import os

import pytest
import requests

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
