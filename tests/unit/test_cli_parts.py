"""The CLI's part uploads, against a loopback server that stands in for S3's presigned PUTs: each
part arrives as the file's bytes with its length, a retried part is sent whole again, and a part
in flight is streamed from the file rather than held in memory."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from internetid_cli.api import ApiClient
from internetid_cli.multipart import send_parts

from tests.loopback import send

RECEIVE_BLOCK = 64 * 1024


class PartSink:
    """Takes PUT /part/<n>, hashing the body as it arrives (never holding it); answers 500 to the
    first try of the parts in `fail_first`, as a storage hiccup would."""

    def __init__(self, fail_first: set[int]) -> None:
        self.received: dict[int, tuple[int, str]] = {}  # part -> (Content-Length, sha256 of the body)
        self.tries: dict[int, int] = {}
        self.fail_first, self.lock = fail_first, threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802
                number = int(self.path.rsplit("/", 1)[1])
                length, digest, left = int(self.headers["Content-Length"]), hashlib.sha256(), 0
                left = length
                while left:
                    block = self.rfile.read(min(RECEIVE_BLOCK, left))
                    digest.update(block)
                    left -= len(block)
                with sink.lock:
                    sink.tries[number] = sink.tries.get(number, 0) + 1
                    failing = number in sink.fail_first and sink.tries[number] == 1
                    if not failing:
                        sink.received[number] = (length, digest.hexdigest())
                if failing:
                    send(self, 500, b"try again")
                    return
                self.send_response(200)
                self.send_header("ETag", f'"{digest.hexdigest()[:32]}"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "PartSink":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, number: int) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/part/{number}"


def slice_sha256(path: Path, offset: int, length: int) -> str:
    with path.open("rb") as handle:
        handle.seek(offset)
        return hashlib.sha256(handle.read(length)).hexdigest()


@pytest.fixture()
def client(monkeypatch) -> ApiClient:
    monkeypatch.setattr("internetid_cli.api.time.sleep", lambda seconds: None)  # the retry's pause
    return ApiClient("http://127.0.0.1:1")


def test_each_part_is_the_files_bytes_and_a_retried_part_is_sent_whole(tmp_path, client):
    part_size = 300 * 1024 + 7  # not a multiple of any block size
    file = tmp_path / "master.mov"
    file.write_bytes(os.urandom(3 * part_size + 1234))
    sent: list[int] = []
    with PartSink(fail_first={2}) as sink:
        etags = send_parts(client.put_part, file, [{"partNumber": n, "url": sink.url(n)} for n in (1, 2, 3, 4)],
                           part_size, sent.append)
    assert sink.tries == {1: 1, 2: 2, 3: 1, 4: 1}
    for number in (1, 2, 3, 4):
        offset = (number - 1) * part_size
        length = min(part_size, file.stat().st_size - offset)
        assert sink.received[number] == (length, slice_sha256(file, offset, length)), number
        assert etags[number] == f'"{sink.received[number][1][:32]}"'
    assert sorted(sent) == sorted(sink.received[n][0] for n in (1, 2, 3, 4))


# Run in a fresh interpreter: in this one, moto's mock (a session fixture of the unit suite) wraps
# `requests` and buffers every body it sees, which is not what the CLI does.
SEND_AND_MEASURE = """
import sys, tracemalloc
from pathlib import Path
from internetid_cli.api import ApiClient
from internetid_cli.multipart import send_parts
file, part_size, urls = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
client = ApiClient("http://127.0.0.1:1")
tracemalloc.start()
send_parts(client.put_part, file, [{"partNumber": n, "url": u} for n, u in enumerate(urls, 1)], part_size,
           lambda sent: None)
print(tracemalloc.get_traced_memory()[1])
"""


def test_a_part_in_flight_is_streamed_from_the_file_not_held_in_memory(tmp_path):
    part_size = 16 * 1024 * 1024
    file = tmp_path / "master.mov"
    with file.open("wb") as handle:
        for _ in range(2 * 16):
            handle.write(os.urandom(1024 * 1024))
    with PartSink(fail_first=set()) as sink:
        measured = subprocess.run([sys.executable, "-c", SEND_AND_MEASURE, str(file), str(part_size),
                                   sink.url(1), sink.url(2)], capture_output=True, text=True, timeout=120)
    assert measured.returncode == 0, measured.stderr
    peak = int(measured.stdout.strip())
    assert sink.received[2] == (part_size, slice_sha256(file, part_size, part_size))
    assert peak < part_size / 4, f"{peak} bytes allocated at the peak for two parts of {part_size}"
