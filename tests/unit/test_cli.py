"""The command-line client without the stack: arguments, settings, the inline/presigned choice,
exit codes, the streamed multipart body, and the HTTP client against a loopback server."""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import multipart
import pytest
import requests

from chalicelib.vocabulary import ALLOWED_CONTENT_TYPES as SERVER_CONTENT_TYPES
from internetid_cli import config, flow, main, report
from internetid_cli.api import ApiClient, ClientError, Submitted, Target, error_from_response
from internetid_cli.formdata import CHUNK_SIZE, StreamingForm

MIB = 1024 * 1024
REGISTRY = "0x" + "ab" * 20
MANIFEST = "ipfs://QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
TARGET = Target(REGISTRY, MANIFEST)


def parse_form(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes, str | None]]:
    """(name, filename, bytes, content type) of each part, in order, as the server parses them."""
    _, options = multipart.parse_options_header(content_type)
    parser = multipart.MultipartParser(io.BytesIO(body), options["boundary"], content_length=len(body),
                                       memory_limit=len(body) + 1, memfile_limit=len(body) + 1,
                                       spool_limit=len(body) + 1)
    return [(p.name, p.filename, p.raw, p.content_type) for p in parser]


def write(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


# --- arguments and settings ----------------------------------------------------------------

def test_verify_arguments_and_defaults():
    args = main.build_parser().parse_args(["verify", "clip.mp4", "--manifest", MANIFEST, "--registry", REGISTRY])
    assert args.command == "verify" and args.file == Path("clip.mp4")
    assert args.manifest == MANIFEST and args.registry == REGISTRY
    assert args.wait is True and args.proof is False and args.quiet is False and args.json is False
    assert args.output == Path("proof.json") and args.rpc_url is None and args.api_url is None

    args = main.build_parser().parse_args([
        "verify", "f", "--manifest", MANIFEST, "--registry", REGISTRY, "--rpc-url", "http://node:8545",
        "--proof", "--no-wait", "--api-url", "http://api", "--api-key", "k", "--output", "out/p.json", "-q",
    ])
    assert args.proof and not args.wait and args.quiet
    assert args.rpc_url == "http://node:8545" and args.api_url == "http://api" and args.api_key == "k"
    assert args.output == Path("out/p.json")


@pytest.mark.parametrize("argv", [
    ["verify", "f", "--registry", REGISTRY],
    ["verify", "f", "--manifest", MANIFEST],
    ["verify", "--manifest", MANIFEST, "--registry", REGISTRY],
    [],
])
def test_missing_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main.build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_demo_defaults_to_a_file_over_the_inline_cap():
    args = main.build_parser().parse_args(["demo"])
    assert args.size == 8 * MIB > config.MAX_INLINE
    assert main.build_parser().parse_args(["demo", "--size", "123", "--api-url", "http://x"]).size == 123


def test_api_url_resolution_order(tmp_path):
    assert config.resolve_api_url(None, {}, tmp_path) == config.DEFAULT_API_URL
    (tmp_path / ".stack").mkdir()
    (tmp_path / ".stack" / "endpoints.json").write_text(json.dumps({"api_url": "http://127.0.0.1:5555"}))
    assert config.resolve_api_url(None, {}, tmp_path) == "http://127.0.0.1:5555"
    env = {"INTERNETID_API_URL": "https://api.example/"}
    assert config.resolve_api_url(None, env, tmp_path) == "https://api.example"
    assert config.resolve_api_url("http://flag:1/", env, tmp_path) == "http://flag:1"


def test_inline_cap_defaults_to_4_mib_and_can_be_overridden():
    assert config.inline_max({}) == 4 * MIB
    assert config.inline_max({"INTERNETID_INLINE_MAX_BYTES": "1024"}) == 1024
    with pytest.raises(config.ConfigError):
        config.inline_max({"INTERNETID_INLINE_MAX_BYTES": "lots"})


@pytest.mark.parametrize("name, expected", [
    ("clip.mp4", "video/mp4"), ("notes.txt", "text/plain"), ("a.PNG", "image/png"), ("p.pdf", "application/pdf"),
    ("s.wav", "audio/wav"), ("m.json", "application/json"),
    ("page.html", "application/octet-stream"), ("data.bin", "application/octet-stream"),
    ("no-extension", "application/octet-stream"), ("archive.tar.gz", "application/octet-stream"),
])
def test_content_type_is_always_one_the_api_accepts(name, expected):
    assert config.content_type_for(name) == expected
    assert config.content_type_for(name) in SERVER_CONTENT_TYPES


def test_allowed_types_match_the_server():
    assert config.ALLOWED_CONTENT_TYPES == SERVER_CONTENT_TYPES


# --- inline or presigned -------------------------------------------------------------------

class FakeClient:
    """Records which path the flow takes; answers like the API would."""

    def __init__(self) -> None:
        self.base_url = "http://api"
        self.calls: list[str] = []
        self.job = {"status": "completed", "progress": 100, "result": {"status": "OK"}}

    def url(self, path: str) -> str:
        return "http://api" + path

    def submit_inline(self, kind, path, target, content_type, on_read=None):
        self.calls.append(f"inline:{kind}:{content_type}")
        return Submitted("job-1", "/api/verification-jobs/job-1")

    def create_upload(self, kind, target, filename, content_type, size):
        self.calls.append(f"create:{kind}:{filename}:{content_type}:{size}")
        return {"jobId": "job-2", "pollUrl": "/api/verification-jobs/job-2",
                "upload": {"url": "http://s3/bucket", "fields": {"key": "uploads/job-2"}, "maxBytes": 10 * MIB}}

    def upload_file(self, upload, path, content_type, on_read=None, on_restart=None):
        self.calls.append(f"upload:{upload['url']}")

    def wait_for_job(self, poll_url, on_update=None, timeout=0):
        self.calls.append(f"wait:{poll_url}")
        on_update(self.job)
        return self.job


@pytest.mark.parametrize("size, route", [(1, "inline"), (4 * MIB, "inline"), (4 * MIB + 1, "presigned"),
                                         (6 * MIB, "presigned")])
def test_route_follows_size(tmp_path, size, route):
    file = write(tmp_path / "clip.mp4", size)
    client = FakeClient()
    outcome = flow.run(client, "verify", file, TARGET, quiet=True, inline_limit=config.MAX_INLINE)
    assert outcome.path == route and outcome.result == {"status": "OK"}
    if route == "inline":
        assert client.calls == ["inline:verify:video/mp4", "wait:/api/verification-jobs/job-1"]
    else:
        assert client.calls == [f"create:verify:clip.mp4:video/mp4:{size}", "upload:http://s3/bucket",
                                "wait:/api/verification-jobs/job-2"]


def test_inline_cap_override_sends_small_files_to_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERNETID_INLINE_MAX_BYTES", "100")
    file = write(tmp_path / "f.txt", 101)
    client = FakeClient()
    flow.run(client, "proof", file, TARGET, quiet=True, inline_limit=config.inline_max())
    assert client.calls[0].startswith("create:proof:f.txt:text/plain:101")


def test_no_wait_stops_after_the_upload(tmp_path):
    client = FakeClient()
    outcome = flow.run(client, "verify", write(tmp_path / "big", 5 * MIB), TARGET, wait=False, quiet=True,
                       inline_limit=config.MAX_INLINE)
    assert outcome.result is None and outcome.job_id == "job-2"
    assert [c.split(":")[0] for c in client.calls] == ["create", "upload"]


def test_failed_job_is_an_error(tmp_path):
    client = FakeClient()
    client.job = {"status": "failed", "progress": 30, "error": "manifest not found", "errorCode": "MANIFEST_FETCH"}
    with pytest.raises(ClientError, match="manifest not found") as exc:
        flow.run(client, "verify", write(tmp_path / "f", 10), TARGET, quiet=True, inline_limit=config.MAX_INLINE)
    assert exc.value.code == "MANIFEST_FETCH"


def test_missing_and_empty_files_are_refused_before_any_request(tmp_path):
    client = FakeClient()
    with pytest.raises(config.ConfigError, match="no such file"):
        flow.run(client, "verify", tmp_path / "nope", TARGET, quiet=True, inline_limit=1)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(config.ConfigError, match="empty"):
        flow.run(client, "verify", tmp_path / "empty", TARGET, quiet=True, inline_limit=1)
    assert client.calls == []


# --- exit codes and output -----------------------------------------------------------------

@pytest.mark.parametrize("status, code", [("OK", 0), ("WARN", 1), ("FAIL", 1), (None, 2), ("weird", 2)])
def test_exit_code_mapping(status, code):
    assert report.exit_code(status) == code


def test_status_of_verify_results_and_proofs():
    assert report.result_status("verify", {"status": "WARN"}) == "WARN"
    assert report.result_status("proof", {"verification": {"status": "OK"}}) == "OK"
    assert report.result_status("proof", {}) is None
    assert report.result_status("verify", None) is None


def run_main(monkeypatch, tmp_path, outcome_or_error, argv):
    def fake_run(client, kind, file, target, **kwargs):
        if isinstance(outcome_or_error, BaseException):
            raise outcome_or_error
        return outcome_or_error

    monkeypatch.setattr(flow, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    return main.main(["verify", "f", "--manifest", MANIFEST, "--registry", REGISTRY, *argv])


VERIFY_RESULT = {"status": "FAIL", "fileHash": "0x" + "11" * 32, "recovered": "0x" + "22" * 20,
                 "onchain": {"creator": "0x" + "00" * 20, "manifestURI": "", "timestamp": 0},
                 "checks": {"manifestHashOk": False, "creatorOk": False, "manifestOk": False}}


def test_main_prints_a_summary_and_exits_1_on_fail(monkeypatch, tmp_path, capsys):
    outcome = flow.Outcome("verify", "inline", "j", "/p", job={}, result=VERIFY_RESULT)
    assert run_main(monkeypatch, tmp_path, outcome, []) == 1
    out = capsys.readouterr().out
    assert "Status:            FAIL" in out and VERIFY_RESULT["fileHash"] in out and "never registered" in out
    assert run_main(monkeypatch, tmp_path, outcome, ["--json"]) == 1
    assert json.loads(capsys.readouterr().out) == VERIFY_RESULT


def test_main_writes_the_proof(monkeypatch, tmp_path, capsys):
    proof = {"version": "1.0", "content": {"hash": "0x" + "11" * 32}, "tx": {"txHash": "0xabc", "blockNumber": 7},
             "verification": {"status": "OK"}}
    outcome = flow.Outcome("proof", "inline", "j", "/p", job={}, result=proof)
    assert run_main(monkeypatch, tmp_path, outcome, ["--proof", "--output", "out/p.json"]) == 0
    assert json.loads((tmp_path / "out" / "p.json").read_text()) == proof
    out = capsys.readouterr().out
    assert "out/p.json" in out and "0xabc (block 7)" in out


def test_main_no_wait_prints_the_job_and_exits_0(monkeypatch, tmp_path, capsys):
    outcome = flow.Outcome("verify", "presigned", "job-9", "/api/verification-jobs/job-9")
    assert run_main(monkeypatch, tmp_path, outcome, ["--no-wait"]) == 0
    out = capsys.readouterr().out
    assert "job-9" in out and "/api/verification-jobs/job-9" in out


def test_main_exits_2_with_the_api_error_on_stderr(monkeypatch, tmp_path, capsys):
    error = ClientError("submitting the file: registryAddress must be 0x followed by 40 hex characters",
                        status=400, code="VALIDATION_ERROR", field="registryAddress")
    assert run_main(monkeypatch, tmp_path, error, []) == 2
    err = capsys.readouterr().err
    assert "registryAddress must be" in err and "HTTP 400" in err and "VALIDATION_ERROR" in err


def test_main_exits_2_on_a_missing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main.main(["verify", "missing.mp4", "--manifest", MANIFEST, "--registry", REGISTRY, "-q"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_demo_without_the_local_stack_says_to_start_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INTERNETID_API_URL", raising=False)
    assert main.main(["demo", "-q"]) == 2
    assert "make up" in capsys.readouterr().err


# --- the streamed multipart body -----------------------------------------------------------

def test_form_has_fields_first_and_file_last_and_an_exact_length(tmp_path):
    file = write(tmp_path / 'we"ird\nname.mp4', 3 * CHUNK_SIZE + 17)
    fields = {"key": "uploads/abc", "Content-Type": "video/mp4", "policy": "eyJ4Ijoi", "x-amz-signature": "00ff"}
    form = StreamingForm(fields, file, file_content_type="video/mp4")
    body = b"".join(form)
    assert len(form) == len(body)
    assert form.content_type.startswith("multipart/form-data; boundary=")
    parts = parse_form(form.content_type, body)
    assert [p[0] for p in parts] == [*fields, "file"]
    assert [p[2].decode() for p in parts[:-1]] == list(fields.values())
    name, filename, data, content_type = parts[-1]
    assert data == file.read_bytes() and content_type == "video/mp4"
    assert filename == file.name  # quotes and line breaks escaped in the header, decoded by the server
    assert b'filename="we%22ird%0Aname.mp4"' in body
    assert b"".join(form) == body  # iterating again starts over (a retry resends the same body)


def test_form_streams_a_large_file_in_constant_memory(tmp_path):
    size = 20 * 1000 * 1000
    file = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with file.open("wb") as handle:
        for _ in range(20):
            chunk = os.urandom(size // 20)
            digest.update(chunk)
            handle.write(chunk)
    sent: list[int] = []
    form = StreamingForm({"key": "k"}, file, on_read=sent.append)
    seen = hashlib.sha256()
    total = 0
    largest = 0
    tracemalloc.start()
    try:
        for piece in form:
            total += len(piece)
            largest = max(largest, len(piece))
            seen.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == len(form) and sum(sent) == size
    assert largest <= CHUNK_SIZE
    assert peak < 4 * CHUNK_SIZE, f"peak {peak} bytes while streaming a {size}-byte file"
    assert len(sent) == -(-size // CHUNK_SIZE)


def test_form_refuses_a_file_that_changed_size(tmp_path):
    file = write(tmp_path / "f", 1000)
    form = StreamingForm({}, file)
    file.write_bytes(b"shorter")
    with pytest.raises(OSError, match="changed size"):
        b"".join(form)


# --- the HTTP client against a loopback server ----------------------------------------------

class Recorder:
    """A loopback server that answers from a script and keeps what it received."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers), "body": body})
                status, headers, payload = recorder.answers.pop(0) if recorder.answers else (204, {}, b"")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status: int, body: dict | str | bytes = b"", **headers: str) -> None:
        if isinstance(body, dict):
            body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
        elif isinstance(body, str):
            body = body.encode()
        self.answers.append((status, headers, body))


@pytest.fixture
def server():
    recorder = Recorder()
    yield recorder
    recorder.server.shutdown()
    recorder.server.server_close()


def test_upload_to_storage_streams_with_content_length(server, tmp_path):
    file = write(tmp_path / "clip.mp4", 5 * MIB + 3)
    fields = {"key": "uploads/j", "Content-Type": "video/mp4", "policy": "p", "x-amz-signature": "s"}
    progress: list[int] = []
    ApiClient(server.url).upload_file({"url": server.url + "/bucket", "fields": fields}, file, "video/mp4",
                                      on_read=progress.append)
    (request,) = server.requests
    assert request["method"] == "POST" and request["path"] == "/bucket"
    assert int(request["headers"]["Content-Length"]) == len(request["body"])
    assert "Transfer-Encoding" not in request["headers"]
    parts = parse_form(request["headers"]["Content-Type"], request["body"])
    assert [p[0] for p in parts] == [*fields, "file"] and parts[-1][2] == file.read_bytes()
    assert sum(progress) == file.stat().st_size


def test_upload_retries_a_storage_5xx_from_the_start_and_reports_4xx(server, tmp_path, monkeypatch):
    monkeypatch.setattr("internetid_cli.api.time.sleep", lambda s: None)
    file = write(tmp_path / "f.bin", 1000)
    upload = {"url": server.url + "/bucket", "fields": {"key": "k"}}
    restarts: list[bool] = []
    server.answer(503, "<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>")
    ApiClient(server.url).upload_file(upload, file, "application/octet-stream", on_restart=lambda: restarts.append(True))
    assert len(server.requests) == 2 and restarts == [True]
    first, second = ({**r["headers"], "body": r["body"]} for r in server.requests)
    assert parse_form(first["Content-Type"], first["body"]) == parse_form(second["Content-Type"], second["body"])

    server.answer(403, "<Error><Code>AccessDenied</Code><Message>Invalid according to Policy</Message></Error>")
    with pytest.raises(ClientError) as exc:
        ApiClient(server.url).upload_file(upload, file, "application/octet-stream")
    assert exc.value.status == 403 and exc.value.code == "AccessDenied" and "Policy" in str(exc.value)


def test_inline_submission_and_api_errors(server, tmp_path):
    file = write(tmp_path / "notes.txt", 2000)
    server.answer(202, {"mode": "async", "jobId": "j1", "status": "queued", "pollUrl": "/api/verification-jobs/j1"})
    submitted = ApiClient(server.url, api_key="secret").submit_inline("proof", file, TARGET, "text/plain")
    assert submitted == Submitted("j1", "/api/verification-jobs/j1")
    request = server.requests[0]
    assert request["path"] == "/api/verification-jobs/proof" and request["headers"]["x-api-key"] == "secret"
    parts = parse_form(request["headers"]["Content-Type"], request["body"])
    assert [(p[0], p[2]) for p in parts[:2]] == [("registryAddress", REGISTRY.encode()), ("manifestURI", MANIFEST.encode())]
    assert parts[-1][0] == "file" and parts[-1][1] == "notes.txt" and parts[-1][3] == "text/plain"

    server.answer(400, {"error": "registryAddress must be 0x followed by 40 hex characters",
                        "code": "VALIDATION_ERROR", "field": "registryAddress"})
    with pytest.raises(ClientError) as exc:
        ApiClient(server.url).submit_inline("verify", file, TARGET, "text/plain")
    assert (exc.value.status, exc.value.code, exc.value.field) == (400, "VALIDATION_ERROR", "registryAddress")


def test_sync_mode_answer_is_a_result(server, tmp_path):
    server.answer(200, {"mode": "sync", "result": {"status": "OK"}})
    submitted = ApiClient(server.url).submit_inline("verify", write(tmp_path / "f", 5), TARGET, "text/plain")
    assert submitted.result == {"status": "OK"} and submitted.job_id is None


def test_create_upload_sends_the_contract_fields(server):
    server.answer(201, {"jobId": "j", "pollUrl": "/api/verification-jobs/j", "upload": {}})
    ApiClient(server.url).create_upload("verify", Target(REGISTRY, MANIFEST, "http://rpc"), "a.mp4", "video/mp4", 99)
    request = server.requests[0]
    assert request["path"] == "/api/verification-jobs/uploads"
    assert json.loads(request["body"]) == {"type": "verify", "registryAddress": REGISTRY, "manifestURI": MANIFEST,
                                           "rpcUrl": "http://rpc", "filename": "a.mp4", "contentType": "video/mp4",
                                           "size": 99}


def test_polling_waits_out_throttling_5xx_and_network_errors(server):
    client = ApiClient(server.url)
    server.answer(429, {"error": "slow down"}, **{"Retry-After": "1"})
    server.answer(503, {"error": "database unavailable; try again shortly", "code": "DB"})
    server.answer(200, {"status": "processing", "progress": 50})
    server.answer(200, {"status": "completed", "progress": 100, "result": {"status": "OK"}})
    sleeps: list[float] = []
    seen: list[str] = []
    logged: list[str] = []
    client.log = logged.append
    job = client.wait_for_job("/api/verification-jobs/j", on_update=lambda j: seen.append(j["status"]),
                              interval=0.5, sleep=sleeps.append)
    assert job["status"] == "completed" and seen == ["processing", "completed"]
    # the 429's Retry-After, then the backoff of one failure, then back to the interval
    assert sleeps == [1.0, 1.0, 0.5]
    assert logged == ["The API's rate limit is reached (polling the job); waiting 1 s as its Retry-After says"]


def test_polling_network_errors_are_retried_and_4xx_is_final(monkeypatch):
    client = ApiClient("http://127.0.0.1:9")
    calls = []

    def flaky_get(url, timeout):
        calls.append(url)
        if len(calls) < 3:
            raise requests.ConnectionError("refused")
        response = requests.Response()
        response.status_code, response._content = 404, b'{"error": "Job not found", "code": "NOT_FOUND"}'
        return response

    monkeypatch.setattr(client.session, "get", flaky_get)
    with pytest.raises(ClientError, match="Job not found") as exc:
        client.wait_for_job("/api/verification-jobs/x", sleep=lambda s: None)
    assert exc.value.status == 404 and len(calls) == 3


def test_polling_gives_up_at_the_timeout():
    client = ApiClient("http://127.0.0.1:9")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    client.get_job = lambda url: {"status": "queued", "progress": 0}  # type: ignore[method-assign]
    with pytest.raises(ClientError, match="did not finish within 5s"):
        client.wait_for_job("/p", timeout=5, sleep=sleep, clock=lambda: now[0])


def test_error_messages_from_api_json_s3_xml_and_plain_text():
    def response(status: int, body: bytes) -> requests.Response:
        r = requests.Response()
        r.status_code, r._content, r.reason = status, body, "Bad"
        return r

    api = error_from_response(response(413, b'{"error": "too big", "code": "PAYLOAD_TOO_LARGE", "field": "size"}'), "x")
    assert str(api) == "x: too big (HTTP 413, PAYLOAD_TOO_LARGE, field size)"
    s3 = error_from_response(response(400, b"<Error><Code>EntityTooLarge</Code><Message>Too large</Message></Error>"), "up")
    assert (s3.code, s3.message) == ("EntityTooLarge", "up: Too large")
    plain = error_from_response(response(502, b"<html>Bad Gateway</html>"), "x")
    assert plain.status == 502 and "Bad Gateway" in plain.message


# --- the rate limit, cancelling, Ctrl-C ----------------------------------------------------

def test_a_429_is_waited_out_for_its_retry_after_however_often_it_comes(server, tmp_path):
    file = write(tmp_path / "notes.txt", 300)
    limited = {"error": "more than 100 requests in a minute from this client", "code": "RATE_LIMITED"}
    for seconds in ("7", "3", "2", "1"):  # more 429s than the attempts a 503 gets
        server.answer(429, limited, **{"Retry-After": seconds})
    server.answer(202, {"mode": "async", "jobId": "j1", "status": "queued", "pollUrl": "/api/verification-jobs/j1"})
    sleeps: list[float] = []
    logged: list[str] = []
    client = ApiClient(server.url, log=logged.append, sleep=sleeps.append)
    assert client.submit_inline("verify", file, TARGET, "text/plain").job_id == "j1"
    assert sleeps == [7.0, 3.0, 2.0, 1.0] and len(server.requests) == 5
    assert logged[0] == "The API's rate limit is reached (submitting the file); waiting 7 s as its Retry-After says"
    assert {len(r["body"]) for r in server.requests} == {len(server.requests[-1]["body"])}  # the whole form each time


def test_cancel_prints_the_cancelled_job_and_a_finished_one_exits_2(server, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.answer(200, {"jobId": "j5", "id": "j5", "status": "cancelled", "result": None})
    assert main.main(["cancel", "j5", "--api-url", server.url]) == 0
    assert capsys.readouterr().out == "Job j5 cancelled\n"
    assert server.requests[0]["method"] == "POST" and server.requests[0]["path"] == "/api/verification-jobs/j5/cancel"
    server.answer(409, {"error": "only unfinished jobs can be cancelled; this one is completed", "code": "INVALID_STATE"})
    assert main.main(["cancel", "j5", "--api-url", server.url]) == 2
    err = capsys.readouterr().err
    assert "this one is completed" in err and "HTTP 409" in err and "INVALID_STATE" in err


def test_ctrl_c_while_waiting_leaves_the_job_and_says_how_to_poll_or_cancel_it(tmp_path):
    client = FakeClient()

    def interrupted_wait(poll_url, on_update=None, timeout=0):
        raise KeyboardInterrupt
    client.wait_for_job = interrupted_wait
    with pytest.raises(flow.WaitInterrupted) as stopped:
        flow.run(client, "verify", write(tmp_path / "f", 10), TARGET, quiet=True, inline_limit=config.MAX_INLINE)
    assert (stopped.value.job_id, stopped.value.poll_url) == ("job-1", "/api/verification-jobs/job-1")


def test_main_on_ctrl_c_prints_the_job_id_and_the_commands_and_exits_130(monkeypatch, tmp_path, capsys):
    stopped = flow.WaitInterrupted("job-7", "/api/verification-jobs/job-7")
    assert run_main(monkeypatch, tmp_path, stopped, ["--api-url", "http://api.example"]) == 130
    err = capsys.readouterr().err
    assert "job job-7" in err
    assert "curl -s http://api.example/api/verification-jobs/job-7\n" in err
    assert "internetid cancel job-7 --api-url http://api.example" in err
    assert "curl -s -X POST http://api.example/api/verification-jobs/job-7/cancel" in err
    assert run_main(monkeypatch, tmp_path, KeyboardInterrupt(), []) == 130  # before any job exists


def test_a_cancelled_job_is_an_error(tmp_path):
    client = FakeClient()
    client.job = {"status": "cancelled", "progress": 10, "result": None}
    with pytest.raises(ClientError, match="was cancelled"):
        flow.run(client, "verify", write(tmp_path / "f", 10), TARGET, quiet=True, inline_limit=config.MAX_INLINE)
