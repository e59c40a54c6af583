"""The server-side request forgery guard on the real fetch paths: a manifest fetched with
`fetch_manifest` and an RPC endpoint opened with `rpc.connected`, as the workers do.

Real sockets on loopback; only name resolution is faked (names cannot be made to resolve
differently here otherwise), and, where a test needs a host the rule allows with private
networks disallowed, 127.0.0.1 stands for a public host. Each test fails if the connection-time
check is lost, e.g. if a plain `requests.Session` replaces the guarded one.
"""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chalicelib.config import Settings
from chalicelib.verification import netguard
from chalicelib.verification.manifest import fetch_manifest
from chalicelib.verification.netguard import UrlNotAllowed
from chalicelib.verification.rpc import chain_id, connected

MANIFEST_BYTES = (Path(__file__).resolve().parents[1] / "fixtures" / "vectors" / "base-sepolia-manifest.json").read_bytes()
PUBLIC_ADDRESS = "93.184.216.34"
STANDS_FOR_PUBLIC = "127.0.0.1"
PRIVATE_PEER = "127.0.0.2"  # loopback: refused when private networks are disallowed
NO_PRIVATE = Settings(allow_private_networks=False, http_timeout_seconds=5)


class Site:
    """An HTTP server on `host`: GET /manifest.json serves the manifest, GET /go redirects to
    `redirect_to`; `paths` lists what was asked."""

    def __init__(self, host: str) -> None:
        self.paths: list[str] = []
        self.redirect_to = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                site.paths.append(self.path)
                if self.path == "/go":
                    self.send_response(302)
                    self.send_header("Location", site.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(MANIFEST_BYTES)))
                self.end_headers()
                self.wfile.write(MANIFEST_BYTES)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def public_site():
    site = Site(STANDS_FOR_PUBLIC)
    yield site
    site.close()


@pytest.fixture()
def private_site():
    site = Site(PRIVATE_PEER)
    yield site
    site.close()


@pytest.fixture()
def dns(monkeypatch):
    """Fake name resolution: `answers[name] = (what the pre-check sees, where sockets connect)`."""
    answers: dict[str, tuple[str, str]] = {}
    real_resolve, real_getaddrinfo = netguard.resolve_host, socket.getaddrinfo

    def resolve_host(host, port):  # the guard's pre-check
        return [answers[host][0]] if host in answers else real_resolve(host, port)

    def getaddrinfo(host, port, *args, **kwargs):  # what urllib3 connects to
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host][1], port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(netguard, "resolve_host", resolve_host)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture()
def loopback_one_is_public(monkeypatch):
    """Let 127.0.0.1 pass the rule as a public host would; every other address keeps the rule."""
    real = netguard.address_refusal

    def address_refusal(address, allow_private):
        if str(address).split("%", 1)[0] == STANDS_FOR_PUBLIC:
            return None
        return real(address, allow_private)

    monkeypatch.setattr(netguard, "address_refusal", address_refusal)


def test_dns_rebinding_of_a_manifest_host_is_refused_at_connect(private_site, dns):
    dns["rebind.example"] = (PUBLIC_ADDRESS, PRIVATE_PEER)  # public when checked, private when connected
    with pytest.raises(UrlNotAllowed) as info:
        fetch_manifest(f"http://rebind.example:{private_site.port}/manifest.json", NO_PRIVATE)
    assert info.value.code == "URL_NOT_ALLOWED"
    assert PRIVATE_PEER not in info.value.message and PRIVATE_PEER in info.value.detail  # the address is for the logs
    assert private_site.paths == []  # refused before a byte was sent


def test_the_same_manifest_is_fetched_when_the_name_stays_public(public_site, dns, loopback_one_is_public):
    """The control case: the guard refuses the rebinding above, not every fetch."""
    dns["public.example"] = (PUBLIC_ADDRESS, STANDS_FOR_PUBLIC)
    manifest = fetch_manifest(f"http://public.example:{public_site.port}/manifest.json", NO_PRIVATE)
    assert manifest.content_hash == json.loads(MANIFEST_BYTES)["content_hash"]


@pytest.mark.parametrize("target", [f"http://{PRIVATE_PEER}:{{port}}/manifest.json", "http://10.0.0.7/manifest.json",
                                    "http://192.168.1.1/manifest.json", "http://[fc00::1]/manifest.json"])
def test_redirect_from_an_allowed_host_to_a_private_address_is_refused(
        public_site, private_site, loopback_one_is_public, target):
    public_site.redirect_to = target.format(port=private_site.port)
    with pytest.raises(UrlNotAllowed) as info:
        fetch_manifest(f"http://{STANDS_FOR_PUBLIC}:{public_site.port}/go", NO_PRIVATE)
    assert info.value.code == "URL_NOT_ALLOWED"
    assert public_site.paths == ["/go"] and private_site.paths == []


def test_redirect_to_a_name_that_rebinds_to_a_private_address_is_refused_at_connect(
        public_site, private_site, dns, loopback_one_is_public):
    dns["inside.example"] = (PUBLIC_ADDRESS, PRIVATE_PEER)
    public_site.redirect_to = f"http://inside.example:{private_site.port}/manifest.json"
    with pytest.raises(UrlNotAllowed):
        fetch_manifest(f"http://{STANDS_FOR_PUBLIC}:{public_site.port}/go", NO_PRIVATE)
    assert public_site.paths == ["/go"] and private_site.paths == []


def test_dns_rebinding_of_an_rpc_host_is_refused_at_connect(rpc, dns):
    """`rpc.connected` is how a job opens its RPC endpoint."""
    port = int(rpc.url.rsplit(":", 1)[1])
    dns["rpc.example"] = (PUBLIC_ADDRESS, "127.0.0.1")
    with connected(f"http://rpc.example:{port}", NO_PRIVATE) as w3:
        with pytest.raises(UrlNotAllowed):
            chain_id(w3)
    assert rpc.calls == []
