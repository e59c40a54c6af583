"""The `internetid` command line against the real local stack, run as a user runs it: a
subprocess, files on disk, exit codes, stdout and stderr."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
JOB_ID = re.compile(r"Job ([0-9a-f-]{36})")


def cli(*args: str, cwd: Path, api_url: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERNETID_")}
    argv = [sys.executable, "-m", "internetid_cli.main", *args]
    if api_url:
        argv += ["--api-url", api_url]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def verify(stack, tmp_path):
    """Run `internetid verify FILE` against the stack's registry and API."""
    def run(file: Path, manifest_uri: str, *extra: str, registry: str | None = None) -> subprocess.CompletedProcess:
        return cli("verify", str(file), "--manifest", manifest_uri,
                   "--registry", registry or stack.endpoints["registry_address"], *extra,
                   cwd=tmp_path, api_url=stack.endpoints["api_url"])
    return run


def test_small_file_goes_inline_and_verifies_ok(anchored, verify, tmp_path):
    data = os.urandom(5000)
    item = anchored(data)
    file = tmp_path / "note.txt"
    file.write_bytes(data)

    done = verify(file, item.manifest_uri)

    assert done.returncode == 0, done.stderr
    assert "inline" in done.stderr
    assert "Status:            OK" in done.stdout
    assert item.content_hash in done.stdout and item.creator in done.stdout
    assert done.stdout.count("[ok  ]") == 3

    as_json = verify(file, item.manifest_uri, "--json", "--quiet")
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert result["status"] == "OK" and result["fileHash"] == item.content_hash
    assert as_json.stderr == ""


def test_large_file_takes_the_presigned_upload(stack, api, anchored, verify, tmp_path):
    data = os.urandom(6 * MIB)
    item = anchored(data)
    file = tmp_path / "clip.mp4"
    file.write_bytes(data)

    done = verify(file, item.manifest_uri, "--json")

    assert done.returncode == 0, done.stderr + done.stdout
    assert "presigned upload" in done.stderr and "inline" not in done.stderr
    assert json.loads(done.stdout)["status"] == "OK"
    job = api.get(f"/api/verification-jobs/{JOB_ID.search(done.stderr).group(1)}").json()
    assert job["status"] == "completed" and job["progress"] == 100
    assert job["contentHash"] == item.content_hash and job["result"]["status"] == "OK"


def test_tampered_file_exits_1(anchored, verify, tmp_path):
    data = os.urandom(3000)
    item = anchored(data)
    file = tmp_path / "tampered.bin"
    file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))

    done = verify(file, item.manifest_uri)

    assert done.returncode == 1, done.stderr
    assert "Status:            FAIL" in done.stdout
    assert "[FAIL] file hash matches the manifest" in done.stdout


def test_proof_is_written_with_the_registration_tx(stack, anchored, verify, tmp_path):
    data = os.urandom(2048)
    item = anchored(data)
    file = tmp_path / "photo.png"
    file.write_bytes(data)
    output = tmp_path / "out" / "proof.json"

    done = verify(file, item.manifest_uri, "--proof", "--output", str(output))

    assert done.returncode == 0, done.stderr
    assert str(output) in done.stdout
    proof = json.loads(output.read_text())
    assert proof["verification"]["status"] == "OK"
    assert proof["content"] == {"file": "photo.png", "hash": item.content_hash}
    assert proof["tx"]["txHash"] == item.tx_hash and proof["tx"]["blockNumber"] == item.block_number
    assert proof["registry"].lower() == stack.endpoints["registry_address"].lower()


def test_proof_defaults_to_proof_json_in_the_current_directory(anchored, verify, tmp_path):
    data = os.urandom(100)
    item = anchored(data)
    (tmp_path / "a.txt").write_bytes(data)

    done = verify(tmp_path / "a.txt", item.manifest_uri, "--proof", "-q")

    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "proof.json").read_text())["tx"]["txHash"] == item.tx_hash


def test_bad_registry_address_exits_2_with_the_api_error(anchored, verify, tmp_path):
    file = tmp_path / "f.txt"
    file.write_bytes(b"anything")

    done = verify(file, "ipfs://QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", registry="0x1234")

    assert done.returncode == 2
    assert "registryAddress must be 0x followed by 40 hex characters" in done.stderr
    assert "HTTP 400" in done.stderr and "VALIDATION_ERROR" in done.stderr
    assert done.stdout == ""


def test_missing_file_exits_2(verify, tmp_path):
    done = verify(tmp_path / "missing.mp4", "ipfs://QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
    assert done.returncode == 2 and "no such file" in done.stderr


def test_no_wait_prints_the_job_and_the_job_still_completes(api, anchored, verify, tmp_path):
    data = os.urandom(5 * MIB)
    item = anchored(data)
    file = tmp_path / "big.bin"
    file.write_bytes(data)

    done = verify(file, item.manifest_uri, "--no-wait", "--json", "-q")

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["pollUrl"] == f"/api/verification-jobs/{printed['jobId']}"
    job = api.wait_for_job(printed["jobId"])
    assert job["status"] == "completed" and job["result"]["status"] == "OK"


def test_demo_round_trip_against_the_stack(stack, tmp_path):
    (tmp_path / ".stack").mkdir()
    (tmp_path / ".stack" / "endpoints.json").write_text(json.dumps(stack.endpoints))

    done = cli("demo", cwd=tmp_path)  # the API URL comes from the endpoints file

    assert done.returncode == 0, done.stderr + done.stdout
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5", "presigned upload"):
        assert step in done.stderr
    assert "Status:            OK" in done.stdout


def test_demo_without_endpoints_says_to_start_the_stack(tmp_path):
    done = cli("demo", cwd=tmp_path)
    assert done.returncode == 2 and "make up" in done.stderr


def test_ctrl_c_while_waiting_prints_the_job_and_internetid_cancel_cancels_it(stack, anchored, tmp_path, db):
    """A user presses Ctrl-C while the job runs (held at its manifest by a gate): the command
    exits 130 naming the job and how to poll or cancel it; `internetid cancel` then cancels it,
    and a second cancel of the finished job exits 2 with the API's INVALID_STATE."""
    import json as json_module
    import signal

    from tests.integration.conftest import Gate, history_rows, respond

    data = os.urandom(3000)
    item = anchored(data)
    file = tmp_path / "held.txt"
    file.write_bytes(data)
    api_url = stack.endpoints["api_url"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERNETID_")}
    with Gate(respond(200, json_module.dumps(item.manifest).encode())) as gate:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "internetid_cli.main", "verify", str(file), "--manifest", f"{gate.url}/m.json",
             "--registry", stack.endpoints["registry_address"], "--api-url", api_url],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            queued = next(line for line in waiting.stderr if "queued" in line)
            job_id = JOB_ID.search(queued).group(1)
            gate.next_arrival()  # the worker is inside the job; the command is polling it
            waiting.send_signal(signal.SIGINT)
            _, err = waiting.communicate(timeout=60)
        finally:
            waiting.kill()
        assert waiting.returncode == 130, err
        assert f"job {job_id}" in err
        assert f"curl -s {api_url}/api/verification-jobs/{job_id}" in err
        assert f"internetid cancel {job_id} --api-url {api_url}" in err

        cancelled = cli("cancel", job_id, cwd=tmp_path, api_url=api_url)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout == f"Job {job_id} cancelled\n"
        again = cli("cancel", job_id, cwd=tmp_path, api_url=api_url)
        assert again.returncode == 2 and "INVALID_STATE" in again.stderr and "cancelled" in again.stderr
    assert history_rows(db, job_id) == 0
