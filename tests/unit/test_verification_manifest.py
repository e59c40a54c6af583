"""Fetching manifests: formats, size cap while streaming, redirects, status classification."""
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chalicelib.config import Settings
from chalicelib.errors import PermanentError, TransientError
from chalicelib.verification.manifest import fetch_manifest, parse_manifest, resolve_manifest_uri
from chalicelib.verification.netguard import UrlNotAllowed

VECTOR = Path(__file__).resolve().parents[1] / "fixtures" / "vectors" / "base-sepolia-manifest.json"
MANIFEST_BYTES = VECTOR.read_bytes()
MANIFEST = json.loads(MANIFEST_BYTES)
MIB = 1024 * 1024


class Server:
    """A local HTTP server whose routes are plain functions of the request handler."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        self.streamed = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.requests.append(self.path)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda request, address: None  # clients hang up on purpose
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def body(data, status=200, headers=()):
    def route(h):
        h.send_response(status)
        h.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)
    return route


def redirect(location, status=302):
    return body(b"", status, [("Location", location)])


@pytest.fixture()
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture()
def settings(server):
    return Settings(ipfs_gateway=server.base, allow_private_networks=True, http_timeout_seconds=5)


def test_parse_manifest_accepts_the_vector():
    assert parse_manifest(MANIFEST_BYTES)["content_hash"] == MANIFEST["content_hash"]


@pytest.mark.parametrize("data", [b"not json", b"\xff\xfe\x00", b"", b"{\"content_hash\": "])
def test_parse_manifest_refuses_non_json(data):
    with pytest.raises(PermanentError) as info:
        parse_manifest(data)
    assert info.value.code == "MANIFEST_INVALID"


@pytest.mark.parametrize("data", [b"[]", b"\"text\"", b"42", b"null"])
def test_parse_manifest_refuses_non_objects(data):
    with pytest.raises(PermanentError) as info:
        parse_manifest(data)
    assert info.value.code == "MANIFEST_INVALID"
    assert "object" in info.value.message


@pytest.mark.parametrize("field,value", [
    ("content_hash", None), ("content_hash", "0x1234"), ("content_hash", "0a" * 32),
    ("content_hash", "0x" + "g" * 64), ("content_hash", 42),
    ("signature", None), ("signature", "0x" + "ab" * 64), ("signature", "0x" + "zz" * 65),
    ("creator_did", 7),
])
def test_parse_manifest_refuses_bad_fields(field, value):
    manifest = dict(MANIFEST)
    if value is None:
        del manifest[field]
    else:
        manifest[field] = value
    with pytest.raises(PermanentError) as info:
        parse_manifest(json.dumps(manifest).encode())
    assert info.value.code == "MANIFEST_INVALID"
    assert field in info.value.message


def test_parse_manifest_caps_size():
    with pytest.raises(PermanentError) as info:
        parse_manifest(b" " * (MIB + 1) + b"{}")
    assert info.value.code == "MANIFEST_TOO_LARGE"


def test_http_manifest(server, settings):
    server.routes["/m.json"] = body(MANIFEST_BYTES, headers=[("Content-Type", "application/json")])
    manifest = fetch_manifest(server.base + "/m.json", settings)
    assert manifest.content_hash == MANIFEST["content_hash"]
    assert manifest.signature == MANIFEST["signature"]
    assert manifest.creator_did == MANIFEST["creator_did"]
    assert manifest.cid is None and manifest.uri == server.base + "/m.json"
    assert manifest.raw == MANIFEST


def test_ipfs_uri_goes_through_the_gateway(server, settings):
    cid = "QmYBL4FCdr7YmHm6UEeLGf6UQE2rMqkAEttbCFDNbm1u5o"
    server.routes[f"/ipfs/{cid}"] = body(MANIFEST_BYTES)
    server.routes[f"/ipfs/{cid}/dir/manifest.json"] = body(MANIFEST_BYTES)
    manifest = fetch_manifest(f"ipfs://{cid}", settings)
    assert manifest.cid == cid and manifest.uri == f"ipfs://{cid}"
    assert fetch_manifest(f"ipfs://{cid}/dir/manifest.json", settings).cid == cid
    assert server.requests == [f"/ipfs/{cid}", f"/ipfs/{cid}/dir/manifest.json"]


@pytest.mark.parametrize("uri", ["ftp://host/m.json", "ipfs://", "ipfs://bad cid/x", "ar://abc",
                                 "ipfs://Qmabc/../../api/v0/shutdown", "ipfs://Qmabc/%2e%2e/x", "", "m.json"])
def test_unsupported_uris(uri, settings):
    with pytest.raises(PermanentError) as info:
        fetch_manifest(uri, settings)
    assert info.value.code == "UNSUPPORTED_URI"


def test_resolve_manifest_uri():
    assert resolve_manifest_uri("ipfs://bafyabc/a b.json", "http://gw:8080/") == (
        "http://gw:8080/ipfs/bafyabc/a%20b.json", "bafyabc")
    assert resolve_manifest_uri("https://x.example/m.json", "http://gw") == ("https://x.example/m.json", None)


def test_non_json_and_non_object(server, settings):
    server.routes["/html"] = body(b"<html>hi</html>")
    server.routes["/list"] = body(b"[1, 2]")
    for path in ("/html", "/list"):
        with pytest.raises(PermanentError) as info:
            fetch_manifest(server.base + path, settings)
        assert info.value.code == "MANIFEST_INVALID"


def test_bad_hash_and_signature_formats(server, settings):
    server.routes["/h"] = body(json.dumps({**MANIFEST, "content_hash": "0xabc"}).encode())
    server.routes["/s"] = body(json.dumps({**MANIFEST, "signature": "0x" + "00" * 64}).encode())
    for path in ("/h", "/s"):
        with pytest.raises(PermanentError) as info:
            fetch_manifest(server.base + path, settings)
        assert info.value.code == "MANIFEST_INVALID"


def test_too_large_stops_reading_while_streaming(server, settings):
    total = 64 * MIB

    def endless(h):
        # No Content-Length: the client can only notice the size by counting.
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        chunk = b" " * 65536
        try:
            while server.streamed < total:
                h.wfile.write(chunk)
                server.streamed += len(chunk)
        except OSError:
            pass  # the client hung up, as it should

    server.routes["/big"] = endless
    with pytest.raises(PermanentError) as info:
        fetch_manifest(server.base + "/big", settings)
    assert info.value.code == "MANIFEST_TOO_LARGE"
    # Socket buffers absorb some data, but nowhere near the whole 64 MiB.
    assert server.streamed < 16 * MIB


def test_too_large_by_content_length_is_refused_before_reading(server, settings):
    def liar(h):
        h.send_response(200)
        h.send_header("Content-Length", str(10 * MIB))
        h.end_headers()
        h.wfile.write(b"{}")
    server.routes["/cl"] = liar
    with pytest.raises(PermanentError) as info:
        fetch_manifest(server.base + "/cl", settings)
    assert info.value.code == "MANIFEST_TOO_LARGE"


def test_cap_follows_settings(server, settings):
    server.routes["/m.json"] = body(MANIFEST_BYTES)
    with pytest.raises(PermanentError) as info:
        fetch_manifest(server.base + "/m.json", replace(settings, manifest_max_bytes=100))
    assert info.value.code == "MANIFEST_TOO_LARGE"


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_permanent_not_found(server, settings, status):
    server.routes["/x"] = body(b"nope", status)
    with pytest.raises(PermanentError) as info:
        fetch_manifest(server.base + "/x", settings)
    assert info.value.code == "MANIFEST_NOT_FOUND"
    assert not isinstance(info.value, TransientError)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_server_errors_are_transient(server, settings, status):
    server.routes["/x"] = body(b"later", status)
    with pytest.raises(TransientError) as info:
        fetch_manifest(server.base + "/x", settings)
    assert info.value.code == "MANIFEST_FETCH_FAILED"
    assert info.value.permanent is False


def test_connection_refused_is_transient(settings):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(TransientError) as info:
        fetch_manifest(f"http://127.0.0.1:{port}/m.json", settings)
    assert info.value.code == "MANIFEST_FETCH_FAILED"


def test_timeout_is_transient(server, settings):
    import time

    def slow(h):
        time.sleep(1.5)
        body(MANIFEST_BYTES)(h)
    server.routes["/slow"] = slow
    with pytest.raises(TransientError) as info:
        fetch_manifest(server.base + "/slow", replace(settings, http_timeout_seconds=0.3))
    assert info.value.code == "MANIFEST_FETCH_FAILED"


def test_up_to_three_redirects_are_followed(server, settings):
    server.routes["/r1"] = redirect("/r2", 301)
    server.routes["/r2"] = redirect(server.base + "/r3", 307)
    server.routes["/r3"] = redirect("r4", 308)
    server.routes["/r4"] = body(MANIFEST_BYTES)
    assert fetch_manifest(server.base + "/r1", settings).content_hash == MANIFEST["content_hash"]
    assert server.requests == ["/r1", "/r2", "/r3", "/r4"]


def test_more_than_three_redirects_are_refused(server, settings):
    for i in range(1, 5):
        server.routes[f"/r{i}"] = redirect(f"/r{i + 1}")
    server.routes["/r5"] = body(MANIFEST_BYTES)
    with pytest.raises(PermanentError) as info:
        fetch_manifest(server.base + "/r1", settings)
    assert info.value.code == "MANIFEST_TOO_MANY_REDIRECTS"
    assert "/r5" not in server.requests


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/"])
def test_redirect_to_metadata_is_refused(server, settings, target):
    server.routes["/evil"] = redirect(target)
    with pytest.raises(UrlNotAllowed) as info:
        fetch_manifest(server.base + "/evil", settings)
    assert info.value.code == "URL_NOT_ALLOWED"


def test_redirect_to_other_scheme_is_refused(server, settings):
    server.routes["/evil"] = redirect("file:///etc/passwd")
    with pytest.raises(UrlNotAllowed):
        fetch_manifest(server.base + "/evil", settings)


def test_private_manifest_url_refused_when_not_allowed(server, settings):
    server.routes["/m.json"] = body(MANIFEST_BYTES)
    with pytest.raises(UrlNotAllowed):
        fetch_manifest(server.base + "/m.json", replace(settings, allow_private_networks=False))
    assert server.requests == []


def test_slow_drip_is_cut_at_the_deadline(server, settings):
    import time

    def drip(h):
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            for _ in range(100):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    server.routes["/drip"] = drip
    started = time.monotonic()
    with pytest.raises(TransientError) as info:
        fetch_manifest(server.base + "/drip", replace(settings, http_timeout_seconds=0.5))
    assert info.value.code == "MANIFEST_FETCH_FAILED"
    assert time.monotonic() - started < 3


def test_gzip_manifest_is_decoded_and_a_gzip_bomb_is_capped(server, settings):
    import gzip
    server.routes["/gz"] = body(gzip.compress(MANIFEST_BYTES), headers=[("Content-Encoding", "gzip")])
    server.routes["/bomb"] = body(gzip.compress(b" " * (50 * MIB)), headers=[("Content-Encoding", "gzip")])
    assert fetch_manifest(server.base + "/gz", settings).content_hash == MANIFEST["content_hash"]
    with pytest.raises(PermanentError) as info:
        fetch_manifest(server.base + "/bomb", settings)
    assert info.value.code == "MANIFEST_TOO_LARGE"


def test_chunked_manifest(server, settings):
    def chunked(h):
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i in range(0, len(MANIFEST_BYTES), 100):
            part = MANIFEST_BYTES[i:i + 100]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        h.wfile.write(b"0\r\n\r\n")
    server.routes["/chunked"] = chunked
    assert fetch_manifest(server.base + "/chunked", settings).raw == MANIFEST
