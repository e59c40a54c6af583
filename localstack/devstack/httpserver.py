"""The loopback HTTP server the in-process dev services (chain, IPFS node) run on.

``LoopbackHTTPService`` serves a request handler with a ``ThreadingHTTPServer`` in a daemon
thread: ``start``/``stop``, use as a context manager, and ``host``/``port``/``url`` while it
runs, and ``serve_until_signalled`` for a standalone run. ``QuietHandler`` is the handler base: HTTP/1.1, TCP_NODELAY, request logs only when
``verbose``.
"""

from __future__ import annotations

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

__all__ = ["LoopbackHTTPService", "QuietHandler"]


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    verbose = False

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if self.verbose:
            super().log_message(format, *args)


class LoopbackHTTPService:
    """Start/stop a ``ThreadingHTTPServer`` for ``_handler_class()`` in a daemon thread.

    Subclasses name the thread (``_thread_name``), say what they are in errors (``_noun``,
    e.g. "the chain") and build the handler class bound to their state.
    """

    _thread_name = "devstack-http"
    _noun = "the server"
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._server is not None:
            raise RuntimeError(f"{self._noun} is already running")
        server = ThreadingHTTPServer((host, port), self._handler_class())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=self._thread_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_until_signalled(self) -> None:
        """Serve until SIGTERM or Ctrl-C, then stop (``python -m devstack.<service>``)."""
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError(f"{self._noun} is not running")
        host, port = self._server.server_address[:2]
        return host, port

    @property
    def host(self) -> str:
        return self._address()[0]

    @property
    def port(self) -> int:
        return self._address()[1]

    @property
    def url(self) -> str:
        host, port = self._address()
        return f"http://{host}:{port}"
