"""The operator console in a real browser against the running stack: what it shows is what the
API says, its actions work through the API, markup in job fields stays text, and with an API key
set nothing privileged happens without it. Tests wait on what the page shows, never on time."""
from __future__ import annotations

import json
import os

import pytest
from playwright.sync_api import expect

from tests.integration.browser.conftest import Console, console_on, on_one_backend
from tests.integration.conftest import (
    API_KEY, EMPTY_QUEUE, Gate, form, forward_to, own_lane, respond, wait_for,
)

pytestmark = on_one_backend
ADMIN = {"x-api-key": API_KEY}
MARKUP = "<img src=x onerror=alert(1)>"
# The stats fields the console shows whenever the answer has them.
COUNTED = ("waiting", "active", "delayed", "awaitingUpload", "completed", "failed", "cancelled", "deadLetter")
MISSING_MANIFEST = "ipfs://QmYBL4FCdr7YmHm6UEeLGf6UQE2rMqkAEttbCFDNbm1u5o"  # not on the dev node


@pytest.fixture(scope="module")
def lane(stack, tmp_path_factory):
    """Queue figures of the redrive and cancel tests are this lane's alone."""
    with own_lane(stack, tmp_path_factory.mktemp("console-lane")) as running:
        yield running


@pytest.fixture
def lane_console(browser, lane):
    yield from console_on(browser, lane.api.base_url)


def submit(api, fields: dict, data: bytes, kind: str = "verify", name: str = "file.txt") -> str:
    response = api.post(f"/api/verification-jobs/{kind}", **form(fields, data, name=name))
    assert response.status_code == 202, response.text
    return response.json()["jobId"]


def target(stack, manifest_uri: str = MISSING_MANIFEST, **extra: str) -> dict:
    return {"registryAddress": stack.endpoints["registry_address"], "manifestURI": manifest_uri, **extra}


def test_filtering_by_status_and_type_shows_only_those_jobs(stack, api, anchored, console: Console):
    data = os.urandom(40)
    item = anchored(data)
    proof_id = submit(api, target(stack, item.manifest_uri), data, kind="proof")
    failed_id = submit(api, target(stack), b"x")
    for job_id in (proof_id, failed_id):
        api.wait_for_job(job_id)
    console.sign_in()

    console.page.get_by_label("Status", exact=True).select_option("failed")
    rows = wait_for(console.job_rows, lambda rows: failed_id in {r["id"] for r in rows}
                    and all(r["status"] == "failed" for r in rows), what="only failed jobs listed")
    assert proof_id not in {r["id"] for r in rows}

    console.page.get_by_label("Status", exact=True).select_option("")
    console.page.get_by_label("Type", exact=True).select_option("proof")
    rows = wait_for(console.job_rows, lambda rows: proof_id in {r["id"] for r in rows}
                    and all(r["type"] == "proof" for r in rows), what="only proof jobs listed")
    assert failed_id not in {r["id"] for r in rows}
    assert console.errors == []


def test_a_failed_jobs_page_shows_its_error_and_retry_takes_it_to_completed(stack, api, anchored, console):
    """The manifest's host answers 404 (a permanent failure), then serves the manifest again:
    Retry on the job's page runs the job to completion."""
    data = os.urandom(60)
    item = anchored(data)
    with Gate(respond(404, b"gone", "text/plain")) as host:
        host.open()
        job_id = submit(api, target(stack, f"{host.url}/manifest.json"), data)
        failed = api.wait_for_job(job_id)
        assert failed["status"] == "failed", failed
        console.sign_in()
        console.show_job(job_id)
        expect(console.page.locator("#job-error-code")).to_have_text("MANIFEST_NOT_FOUND")
        expect(console.page.locator("#job-error")).to_have_text(failed["error"])
        assert console.field("status") == "failed" and console.field("retryCount") == "0"

        host.answer = respond(200, json.dumps(item.manifest).encode())
        console.confirm("Retry job")
        expect(console.page.locator("#message")).to_contain_text("Retry accepted")
        expect(console.page.locator('#job-fields [data-field="status"]')).to_have_text("completed")
    expect(console.page.locator("#job-progress")).to_have_attribute("value", "100")
    expect(console.page.locator('#timeline [data-step="completed"]')).to_have_class("reached")
    expect(console.page.locator("#job-error-section")).to_be_hidden()
    assert api.get(f"/api/verification-jobs/{job_id}").json()["status"] == "completed"


def test_markup_in_a_file_name_is_shown_as_text_and_never_run(stack, api, anchored, console, tmp_path):
    """In the list, on the job's page and inside a proof's result (`content.file`); the proof
    downloads as proof.json with the job's result in it."""
    data = os.urandom(70)
    item = anchored(data)
    job_id = submit(api, target(stack, item.manifest_uri), data, kind="proof", name=MARKUP)
    job = api.wait_for_job(job_id)
    assert job["status"] == "completed" and job["result"]["content"]["file"] == MARKUP, job
    console.sign_in()
    row = wait_for(console.job_rows, lambda rows: job_id in {r["id"] for r in rows}, what="the job listed")
    assert [r["file"] for r in row if r["id"] == job_id] == [MARKUP]

    console.show_job(job_id)
    assert console.field("fileName") == MARKUP
    expect(console.page.locator('#result-readable [data-field="content.file"]')).to_have_text(MARKUP)
    assert MARKUP in console.page.locator("#result-json").text_content()
    assert console.page.locator("img").count() == 0  # no element was made from the markup
    with console.page.expect_download() as download:
        console.page.get_by_role("button", name="Download proof.json").click()
    assert download.value.suggested_filename == "proof.json"
    assert json.loads(open(download.value.path(), encoding="utf-8").read()) == job["result"]
    console.screenshot("console-job.png", tmp_path)
    assert console.dialogs == [] and console.errors == []


def test_with_an_api_key_set_actions_are_refused_without_it_and_the_key_form_appears(stack, api, console):
    job_id = submit(api, target(stack), b"refused")
    assert api.wait_for_job(job_id)["status"] == "failed"
    page = console.page

    console.open()  # the job list needs the key: the page asks for it
    expect(page.locator("#key-view")).to_be_visible()
    expect(page.locator("#key-reason")).to_contain_text("API key")
    expect(page.locator("#main-view")).to_be_hidden()

    console.show_job(job_id)  # a job's page is public, its actions are not
    console.confirm("Retry job")
    expect(page.locator("#key-view")).to_be_visible()
    assert api.get(f"/api/verification-jobs/{job_id}").json()["status"] == "failed"  # nothing was retried

    console.sign_in("not-the-key")
    expect(page.locator("#key-reason")).to_contain_text("refused")
    console.sign_in()
    expect(page.locator("#main-view")).to_be_visible()
    expect(page.locator("#key-view")).to_be_hidden()
    assert page.evaluate("Object.values(sessionStorage)") == [API_KEY]
    assert page.evaluate("localStorage.length") == 0


def test_redrive_empties_the_dead_letter_queue(stack, lane, anchored, lane_console):
    """A job whose RPC endpoint fails on every attempt ends in the lane's dead-letter queue; the
    endpoint recovers, and Redrive on the console moves the message back and the job completes."""
    data = os.urandom(80)
    item = anchored(data)
    with Gate(respond(503, b"overloaded", "text/plain")) as rpc:
        rpc.open()
        job_id = submit(lane.api, target(stack, item.manifest_uri, rpcUrl=rpc.url), data)
        lane.api.wait_for_job(job_id, until=lambda j: j["status"] == "failed")
        wait_for(lane.dead_letter_depth, lambda d: d["visible"] == 1, what="the message in the dead-letter queue")
        lane_console.sign_in()
        expect(lane_console.page.locator('[data-count="deadLetter"] dd')).to_have_text("1")

        rpc.answer = forward_to(stack.endpoints["rpc_url"])
        lane_console.confirm("Redrive dead-letter queue")
        expect(lane_console.page.locator("#message")).to_contain_text("moved 1")
        expect(lane_console.page.locator('[data-count="deadLetter"] dd')).to_have_text("0")
        assert lane.dead_letter_depth() == EMPTY_QUEUE
        done = lane.api.wait_for_job(job_id, until=lambda j: j["status"] == "completed")
    assert done["result"]["status"] == "OK"


def test_cancel_ends_a_waiting_job(stack, lane, lane_console):
    """With the lane's workers stopped, a submitted job waits in the queue; Cancel ends it."""
    lane.runner.stop()
    try:
        job_id = submit(lane.api, target(stack), b"waiting")
        assert lane.api.get(f"/api/verification-jobs/{job_id}").json()["status"] == "queued"
        lane_console.sign_in()
        lane_console.show_job(job_id)
        lane_console.confirm("Cancel job")
        message = lane_console.page.locator("#message")
        expect(message).to_be_visible()  # the action's outcome, whichever it is
        assert "Job cancelled" in message.inner_text()
        expect(lane_console.page.locator('#job-fields [data-field="status"]')).to_have_text("cancelled")
        assert lane.api.get(f"/api/verification-jobs/{job_id}").json()["status"] == "cancelled"
        expect(lane_console.page.locator("#cancel-job")).to_be_hidden()
    finally:
        lane.restart_runner()


def test_counts_match_the_stats_api(stack, api, console, tmp_path):
    """Every count the stats answer has is on the page, with the same value once both have
    settled (other tests' jobs may still be finishing)."""
    counts = api.stats()
    if counts["completed"] == counts["failed"]:  # make them differ, so that a mix-up shows
        api.wait_for_job(submit(api, target(stack), b"one more failure"))
    console.sign_in()
    expect(console.page.locator("#main-view")).to_be_visible()

    def both():
        stats = api.stats()
        return {name: stats[name] for name in COUNTED if name in stats}, console.counts()
    expected, shown = wait_for(both, lambda pair: pair[0] == pair[1], what="the page's counts equal to the API's")
    assert set(shown) >= {"waiting", "active", "delayed", "completed", "failed", "deadLetter"}
    expect(console.page.locator("#chart svg")).to_be_visible()
    expect(console.page.locator("#chart-summary")).to_contain_text("In the last 60 minutes")
    console.screenshot("console-main.png", tmp_path)
    assert console.dialogs == [] and console.errors == []
