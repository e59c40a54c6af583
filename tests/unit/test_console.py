"""The operator console's files and its read endpoint, through Chalice's test client: what is
served, under which headers, and what the activity report counts (on the fake store). The page
itself is tested in a real browser in tests/integration/browser/."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from chalicelib.console import STATIC
from chalicelib.vocabulary import COMPLETED, FAILED, QUEUED

from tests.unit.conftest import API_KEY
from tests.unit.test_endpoints import MANIFEST, REGISTRY, error, http, use  # noqa: F401 (fixtures)

KEY = {"x-api-key": API_KEY}


def assert_locked_down(response) -> None:
    policy = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy and "http" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path,media_type", [
    ("/console", "text/html"), ("/console/console.js", "text/javascript"), ("/console/console.css", "text/css"),
])
def test_console_files_are_served_locked_down(http, path, media_type):
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(media_type)
    assert_locked_down(response)


@pytest.mark.parametrize("path", ["/console/missing.js", "/console/index.html", "/console/..%2Fapp.py"])
def test_other_names_are_a_json_404(http, path):
    response = http.get(path)
    assert (response.status_code, error(response)["code"]) == (404, "NOT_FOUND")
    assert_locked_down(response)


def test_the_page_needs_nothing_from_elsewhere_and_nothing_inline():
    """Offline and under the policy: no absolute URL, no inline script or style, and no way for
    the script to write markup (fields are set as text)."""
    page = (STATIC / "index.html").read_text()
    script = (STATIC / "console.js").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert re.findall(r"<script[^>]*>", page) == ['<script type="module" src="console/console.js">']
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", script)
    for writes_markup in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", ".style"):
        assert writes_markup not in script, writes_markup


def test_a_job_shows_its_file_name_as_data(http, store):
    job = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY,
                           file_name="<img src=x onerror=alert(1)>")
    assert json.loads(http.get(f"/api/verification-jobs/{job.id}").body)["fileName"] == "<img src=x onerror=alert(1)>"


def finished(store, status, code=None, minutes_ago=0):
    job = store.create_job(job_type="verify", status=QUEUED, manifest_uri=MANIFEST, registry_address=REGISTRY)
    if status == FAILED:
        store.fail_job(job.id, "x", code)
    else:
        store.complete_job(job.id, {"status": "OK"}, {"status": "OK"})
    moved = store.jobs[job.id].completed_at - timedelta(minutes=minutes_ago)
    store.put(store.jobs[job.id], completed_at=moved)


def test_activity_counts_finished_jobs_per_minute_and_failures_per_code(http, store):
    finished(store, COMPLETED)
    finished(store, FAILED, "MANIFEST_NOT_FOUND")
    finished(store, FAILED, "RPC_UNAVAILABLE", minutes_ago=30)
    finished(store, FAILED, "RPC_UNAVAILABLE", minutes_ago=31)
    finished(store, FAILED, "RPC_UNAVAILABLE", minutes_ago=90)  # outside the default hour
    body = json.loads(http.get("/api/verification-jobs/activity", headers=KEY).body)
    assert len(body["minutes"]) == 60 and body["minutes"][0]["minute"].endswith(":00.000Z")
    assert sum(m["completed"] for m in body["minutes"]) == 1
    assert sum(m["failed"] for m in body["minutes"]) == 3
    assert body["failuresByCode"] == [{"errorCode": "RPC_UNAVAILABLE", "count": 2},
                                      {"errorCode": "MANIFEST_NOT_FOUND", "count": 1}]
    day = json.loads(http.get("/api/verification-jobs/activity?minutes=1440", headers=KEY).body)
    assert len(day["minutes"]) == 1440 and day["failuresByCode"][0] == {"errorCode": "RPC_UNAVAILABLE", "count": 3}


@pytest.mark.parametrize("minutes", ["0", "1441", "-5", "hour", "", "60&minutes=5"])
def test_activity_window_bounds(http, minutes):
    response = http.get(f"/api/verification-jobs/activity?minutes={minutes}", headers=KEY)
    assert (response.status_code, error(response)["field"]) == (400, "minutes")


def test_activity_needs_the_key_when_one_is_set(http):
    response = http.get("/api/verification-jobs/activity")
    assert (response.status_code, error(response)["code"]) == (401, "UNAUTHORIZED")
