"""Limits on one outbound HTTP call: a wall-clock deadline for the whole call, and a cap on the
body counted after decompression.

urllib3's timeouts apply to each socket operation, so a server that sends one byte a second
(headers or body) never trips them. A `Watchdog` belongs to one session: the connections the
session opens register with it, and when a call outlives its deadline a timer shuts their
sockets down, so the blocked read fails at once and the call raises `DeadlineExceeded`. The
deadlines of the whole process share one timer thread (`chalicelib.alarms`), since a thread per
call (three per verification) cost more CPU than the verification's own JSON-RPC handling.

What it does not do: it cannot interrupt a DNS lookup (getaddrinfo cannot be cancelled; the
resolver's own timeouts bound it), and it expects one call at a time per session (the sessions
here serve one verification, sequentially), since an expiry cuts every socket of the session.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import requests
from urllib3.response import BaseHTTPResponse

from ..alarms import ALARMS

_CHUNK = 64 * 1024


class DeadlineExceeded(requests.exceptions.Timeout):
    """The whole call (connect, headers, body) took longer than its deadline."""


class BodyTooLarge(Exception):
    """The body, decompressed, is larger than the cap."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the answer is larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


class Watchdog:
    """Cuts the sockets of one session's connections when a call overruns its deadline."""

    def __init__(self) -> None:
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def adopt(self, connection: Any) -> None:
        """Watch an urllib3 connection (its `sock` attribute, TLS-wrapped or not) from now on."""
        with self._lock:
            self._connections.add(connection)

    def _cut(self, expired: threading.Event) -> None:
        expired.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Run the block under a wall-clock deadline; raise DeadlineExceeded when it overran,
        also when the cut left something that parsed (a status line, half the headers)."""
        expired = threading.Event()
        token = active_watchdog.set(self)
        overran = DeadlineExceeded(f"the call took longer than {seconds:g} s")
        alarm = ALARMS.set(seconds, lambda: self._cut(expired))
        try:
            yield
        except Exception as exc:
            if expired.is_set():
                raise overran from exc
            raise
        finally:
            ALARMS.cancel(alarm)
            active_watchdog.reset(token)
        if expired.is_set():
            raise overran




# The watchdog of the call in progress: connections opened during the call register with it.
active_watchdog: ContextVar[Watchdog | None] = ContextVar("active_watchdog", default=None)


@dataclass(frozen=True)
class Fetched:
    """One HTTP answer: its status, headers, and (for a 2xx) its whole body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


def read_capped(response: BaseHTTPResponse, max_bytes: int) -> bytes:
    """The decoded body, refused (BodyTooLarge) as soon as it exceeds `max_bytes`.

    `read1` with `decode_content` returns at most the bytes asked for after decompression
    (urllib3 >= 2.6), so a small compressed answer cannot grow in memory past the cap.
    """
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise BodyTooLarge(max_bytes)
    body = bytearray()
    while chunk := response.read1(min(_CHUNK, max_bytes + 1 - len(body)), decode_content=True):
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLarge(max_bytes)
    return bytes(body)
