"""Shared by the unit tests: a JSON-RPC endpoint on loopback whose answers the test chooses."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class LoopbackRpc:
    """A JSON-RPC endpoint at ``url`` (127.0.0.1, a free port).

    Each POST is answered with ``answer(method, params)``, a ``(status, payload)`` pair: a dict
    payload is sent as the JSON-RPC response (``jsonrpc`` and the request's ``id`` added), bytes as
    they are. By default the answer is the one set in ``answers[method]``, else a null result.
    ``calls`` lists the methods asked, in order (a JSON-RPC batch's one by one), ``round_trips``
    counts the POSTs. A GET goes to ``get(handler)`` (404 here).
    """

    def __init__(self):
        self.answers = {}
        self.calls = []
        self.round_trips = 0
        rpc = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rpc.get(self)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answers = [rpc.respond(request) for request in (body if isinstance(body, list) else [body])]
                rpc.round_trips += 1
                # A batch is answered as a whole: its first non-200 answer stands for all of it.
                status = next((status for status, _ in answers if status != 200), 200)
                payloads = [payload for _, payload in answers]
                if status != 200 or not isinstance(body, list):
                    payload = next(p for (s, p) in answers if s == status)
                else:
                    payload = b"[" + b",".join(payloads) + b"]"
                send(self, status, payload, "application/json")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def respond(self, request):
        """(status, body bytes) for one JSON-RPC request object."""
        self.calls.append(request["method"])
        status, payload = self.answer(request["method"], request["params"])
        if isinstance(payload, dict):
            payload = json.dumps({"jsonrpc": "2.0", "id": request["id"], **payload}).encode()
        return status, payload

    def answer(self, method, params):
        return self.answers.get(method, (200, {"result": None}))

    def get(self, handler):
        handler.send_error(404)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler, status, body, content_type=None):
    """Answer a request with ``body`` and its length (and a Content-Type when given)."""
    handler.send_response(status)
    if content_type:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture()
def rpc():
    server = LoopbackRpc()
    yield server
    server.close()
