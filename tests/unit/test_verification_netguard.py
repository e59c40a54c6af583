"""The address rule for user-supplied URLs, before the request and at connection time."""
import datetime
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest
import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib.errors import PermanentError, TransientError
from chalicelib.verification import netguard
from chalicelib.verification.netguard import (
    UrlNotAllowed,
    address_refusal,
    check_url,
    check_url_syntax,
    guarded_session,
)

ALWAYS_REFUSED = [
    "169.254.169.254",
    "169.254.170.2",
    "169.254.0.1",
    "fd00:ec2::254",
    "fe80::1",
    "fe80::1%eth0",
    "100.100.100.200",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
]
PRIVATE = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "fc00::1",
    "fd12:3456::1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "::ffff:127.0.0.1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"]


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_link_local_and_metadata_always_refused(address):
    assert address_refusal(address, allow_private=False)
    assert address_refusal(address, allow_private=True)


@pytest.mark.parametrize("address", PRIVATE)
def test_private_refused_unless_allowed(address):
    assert address_refusal(address, allow_private=False)
    assert address_refusal(address, allow_private=True) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_allowed(address):
    assert address_refusal(address, allow_private=False) is None
    assert address_refusal(address, allow_private=True) is None


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)",
                                 "example.com/x", "", "http://", "http://[::1/", "gopher://a"])
def test_syntax_refuses_other_schemes_and_missing_hosts(url):
    with pytest.raises(UrlNotAllowed) as info:
        check_url_syntax(url)
    assert info.value.code == "URL_NOT_ALLOWED"
    assert isinstance(info.value, PermanentError)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]:8545/",
    "http://100.100.100.200/",
])
@pytest.mark.parametrize("allow_private", [False, True])
def test_metadata_urls_refused_even_when_private_allowed(url, allow_private):
    with pytest.raises(UrlNotAllowed) as info:
        check_url(url, allow_private)
    assert "not allowed" in info.value.message


@pytest.mark.parametrize("url", ["http://127.0.0.1:8545", "http://10.0.0.5/rpc", "https://192.168.0.10/x",
                                 "http://[::1]:5001/ipfs/x"])
def test_private_urls_depend_on_setting(url):
    with pytest.raises(UrlNotAllowed):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True).hostname


def _fake_dns(monkeypatch, answers):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port, 0, 0) if ":" in a else (a, port)) for a in answers[host]]
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)


def test_hostname_resolving_to_metadata_is_refused(monkeypatch):
    _fake_dns(monkeypatch, {"evil.example": ["169.254.169.254"], "evil6.example": ["fd00:ec2::254"]})
    for url in ("https://evil.example/manifest.json", "http://evil6.example/"):
        with pytest.raises(UrlNotAllowed):
            check_url(url, allow_private=True)


def test_any_disallowed_address_refuses_the_host(monkeypatch):
    _fake_dns(monkeypatch, {"mixed.example": ["93.184.216.34", "10.0.0.7"], "ok.example": ["93.184.216.34"]})
    with pytest.raises(UrlNotAllowed):
        check_url("https://mixed.example/", allow_private=False)
    assert check_url("https://ok.example/", allow_private=False).hostname == "ok.example"


def test_unresolvable_host_is_transient(monkeypatch):
    _fake_dns(monkeypatch, {})
    with pytest.raises(TransientError) as info:
        check_url("https://nowhere.example/", allow_private=False)
    assert info.value.code == "DNS_RESOLUTION_FAILED"


# --- connection-time check -------------------------------------------------------------------

class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def local_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_session_refuses_disallowed_peer_at_connect(local_server):
    with pytest.raises(UrlNotAllowed):
        guarded_session(allow_private=False, timeout=5).get(local_server + "/")


def test_session_allows_private_peer_when_configured(local_server):
    response = guarded_session(allow_private=True, timeout=5).get(local_server + "/")
    assert response.status_code == 200 and response.content == b"hello"


def test_dns_rebinding_is_caught_at_connect(local_server, monkeypatch):
    # The pre-check sees a public address, the connection then goes to loopback.
    monkeypatch.setattr(netguard, "resolve_host", lambda host, port: ["93.184.216.34"])
    url = local_server.replace("127.0.0.1", "localhost") + "/"
    check_url(url, allow_private=False)  # passes: DNS "said" public
    with pytest.raises(UrlNotAllowed):
        guarded_session(allow_private=False, timeout=5).get(url)


def test_session_applies_default_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the TCP connection, never answers
    try:
        session = guarded_session(allow_private=True, timeout=0.3)
        with pytest.raises(requests.exceptions.Timeout):
            session.get(f"http://127.0.0.1:{listener.getsockname()[1]}/")
    finally:
        listener.close()


def test_session_ignores_environment_proxies(local_server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://169.254.169.254:3128")
    monkeypatch.setenv("http_proxy", "http://169.254.169.254:3128")
    session = guarded_session(allow_private=True, timeout=5)
    assert session.trust_env is False
    assert session.get(local_server + "/").status_code == 200


def test_https_connections_are_checked_before_the_tls_handshake():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # a TCP peer that would never complete TLS
    try:
        with pytest.raises(UrlNotAllowed):
            guarded_session(allow_private=False, timeout=2).get(f"https://127.0.0.1:{listener.getsockname()[1]}/")
    finally:
        listener.close()


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that no trust store holds, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_a_fetch_refuses_a_certificate_no_trust_store_holds(tmp_path):
    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed(tmp_path))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            guarded_session(allow_private=True, timeout=5).fetch("GET", f"https://127.0.0.1:{server.server_port}/", 1000)
    finally:
        server.server_close()
