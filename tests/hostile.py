"""Hostile HTTP answers for the tests: a gzip bomb, and a server that drips its answer one byte
at a time. Shared by the unit tests (tests/unit/test_hostile_nodes.py) and the stack's
(tests/integration/test_hostile.py)."""
from __future__ import annotations

import time
import zlib
from functools import lru_cache
from http.server import BaseHTTPRequestHandler

BOMB_DECODED_BYTES = 400 * 1024 * 1024  # what the answer grows to once decompressed
DRIP_INTERVAL_SECONDS = 0.2
DRIP_FOR_SECONDS = 60.0  # a caller without a deadline is held this long, then gets a broken answer


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """About 400 KB of gzip that decompresses to BOMB_DECODED_BYTES of spaces (valid JSON
    whitespace: a reader that inflates it all sees no error before its memory is gone)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    chunk = b" " * (1024 * 1024)
    return b"".join(packer.compress(chunk) for _ in range(BOMB_DECODED_BYTES // len(chunk))) + packer.flush()


def send_bomb(handler: BaseHTTPRequestHandler) -> None:
    body = gzip_bomb()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def drip(handler: BaseHTTPRequestHandler) -> None:
    """Send a status line and headers one byte every DRIP_INTERVAL_SECONDS (each byte resets
    a per-read timeout), for DRIP_FOR_SECONDS, then hang up; stop when the caller goes away."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * 10_000
    stop = time.monotonic() + DRIP_FOR_SECONDS
    try:
        for byte in head:
            if time.monotonic() > stop:
                break
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(DRIP_INTERVAL_SECONDS)
    except OSError:
        pass  # the caller gave up: what the deadline is for
    handler.close_connection = True


def peak_rss_mib(pid: int | str = "self") -> float:
    """The most resident memory a process has had so far (VmHWM), in MiB: a spike shows even
    after the memory is given back."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return kib / 1024
