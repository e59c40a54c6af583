"""Supervision like Lambda's: a runner or API process that dies is started again, and the stack
gives up (naming the process and its log) only when a child keeps dying."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable

import requests

from devstack.process import ManagedProcess, Supervisor
from tests.integration.conftest import form


def wait_for(state: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait until `state()` holds (the timeout only keeps a broken build from hanging)."""
    deadline = time.monotonic() + timeout
    while not state():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_killed_runner_is_started_again_and_a_job_queued_after_completes(stack, api, anchored, caplog):
    caplog.set_level(logging.WARNING, logger="devstack")
    killed = stack.runner.proc
    stack.runner.signal(signal.SIGKILL)
    killed.wait(10)
    wait_for(lambda: stack.runner.alive() and stack.runner.proc.pid != killed.pid, "a new runner process")
    assert f"the runner process exited with code {-signal.SIGKILL}; starting it again" in caplog.text

    data = os.urandom(1500)
    item = anchored(data)
    fields = {"registryAddress": stack.endpoints["registry_address"], "manifestURI": item.manifest_uri}
    job_id = api.post("/api/verification-jobs/verify", **form(fields, data)).json()["jobId"]
    job = api.wait_for_job(job_id)
    assert job["status"] == "completed", job
    assert job["result"]["status"] == "OK"


def test_killed_api_is_started_again_on_its_port(stack, api):
    killed = stack.api.proc
    stack.api.signal(signal.SIGKILL)
    killed.wait(10)
    wait_for(lambda: stack.api.alive() and stack.api.proc.pid != killed.pid, "a new API process")
    wait_for(lambda: answers(f"{api.base_url}/api/health"), "the restarted API to answer")


def test_a_child_that_keeps_exiting_makes_the_supervisor_give_up_naming_it_and_its_log(tmp_path):
    child = ManagedProcess("flaky", [sys.executable, "-c", "import sys; sys.exit(3)"], dict(os.environ), tmp_path)
    supervisor = Supervisor([child], max_restarts=3, window_seconds=600, interval_seconds=0.05)
    child.start()
    supervisor.start()
    try:
        assert supervisor.failed.wait(60), "the supervisor never gave up"
    finally:
        supervisor.stop()
        child.stop()
    assert "the flaky process exited 4 times" in supervisor.failure
    assert "last exit code 3" in supervisor.failure
    assert str(child.log_path) in supervisor.failure
    assert not child.alive()
