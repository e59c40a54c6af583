"""Where user-supplied URLs (manifest, RPC) may lead: the server-side request forgery guard.

The rule (see the HTTP contract):
- link-local addresses and cloud metadata endpoints are ALWAYS refused;
- loopback, private, unique-local, unspecified, reserved and multicast addresses are refused
  unless the deployment allows private networks (the local stack does: its chain and IPFS node
  listen on loopback);
- everything else (globally routable unicast) is allowed.

A URL is checked twice: before the request (`check_url`, which resolves the host and refuses
if ANY of its addresses is disallowed) and again before the socket is connected
(`guarded_session`, which then connects to a checked address only), because a name can
resolve differently a moment later (DNS rebinding).
"""
from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from typing import Any, Callable, Mapping
from urllib.parse import SplitResult, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from ..errors import PermanentError, TransientError
from ..vocabulary import DNS_RESOLUTION_FAILED, URL_NOT_ALLOWED
from .limits import Fetched, Watchdog, active_watchdog, read_capped

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata and platform endpoints of cloud providers. Most sit in 169.254.0.0/16 (refused as
# link-local anyway); these are the ones outside it, or worth naming.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle instance metadata
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::23",  # AWS DNS over IPv6 (Nitro)
        "100.100.100.200",  # Alibaba Cloud metadata
        "192.0.0.192",  # Oracle Cloud (classic) metadata
        "168.63.129.16",  # Azure wire server
    )
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlNotAllowed(PermanentError):
    """The URL's scheme or one of the addresses it resolves to is refused by the rule."""

    code = URL_NOT_ALLOWED


def _embedded_ipv4(ip: IPAddress) -> list[IPAddress]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, NAT64): they must pass too."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[IPAddress] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def address_refusal(address: str | IPAddress, allow_private: bool) -> str | None:
    """What kind of refused address `address` is ("a private address", ...), or None when it
    may be contacted."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    for inner in _embedded_ipv4(ip):
        reason = address_refusal(inner, allow_private)
        if reason:
            return reason
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if allow_private:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private or not ip.is_global:
        return "a private address"
    return None


def check_address(address: str | IPAddress, allow_private: bool, what: str = "The URL") -> None:
    """Raise UrlNotAllowed when `address` is refused by the rule. The message names the kind of
    address only: which internal address a name resolved to is for the logs (`detail`)."""
    reason = address_refusal(address, allow_private)
    if reason:
        hint = (
            "use a public http(s) URL"
            if not allow_private
            else "link-local and cloud metadata addresses are never allowed"
        )
        raise UrlNotAllowed(f"{what} leads to {reason}, which is not allowed: {hint}.",
                            detail=f"{what} resolved to {address}")


def check_url_syntax(url: str) -> SplitResult:
    """Parse an http(s) URL with a host, or raise UrlNotAllowed saying what is wrong."""
    if not isinstance(url, str) or not url:
        raise UrlNotAllowed("The URL is empty: give an http:// or https:// URL.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UrlNotAllowed(f"The URL is malformed ({exc}).") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlNotAllowed(
            f"The URL scheme {parts.scheme or '(none)'!r} is not allowed: use http:// or https://."
        )
    if not parts.hostname:
        raise UrlNotAllowed("The URL has no host.")
    return parts


def resolve_host(host: str, port: int | None) -> list[str]:
    """All addresses `host` resolves to (a separate function so tests can fake DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def check_url(url: str, allow_private: bool) -> SplitResult:
    """Check scheme and host, resolve the host, and refuse if ANY address is disallowed.

    Raises UrlNotAllowed (permanent) for refused URLs and TransientError
    (`DNS_RESOLUTION_FAILED`) when the name cannot be resolved right now.
    """
    parts = check_url_syntax(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    checked_addresses(host, port, allow_private)
    return parts


def _connect_addresses(host: str, port: int | None) -> list[str]:
    """The addresses a connection to `host` goes to, resolved when the socket is opened."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def checked_addresses(host: str, port: int, allow_private: bool,
                      resolve: Callable[[str, int], list[str]] | None = None) -> list[str]:
    """Every address `host` resolves to (with `resolve`, else `resolve_host`), once all of them
    pass the rule; TransientError (`DNS_RESOLUTION_FAILED`) when the name cannot be resolved now."""
    try:
        addresses = (resolve or resolve_host)(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransientError(f"Could not resolve the host {host!r}.", code=DNS_RESOLUTION_FAILED,
                             detail=str(exc)) from exc
    if not addresses:
        raise TransientError(f"The host {host!r} has no address.", code=DNS_RESOLUTION_FAILED)
    for address in addresses:
        check_address(address, allow_private, what=f"The host {host!r}")
    return addresses


# --- connection-time check -------------------------------------------------------------------
# urllib3 opens every socket in `HTTPConnection._new_conn` (HTTPS wraps TLS around it
# afterwards). There the host is resolved again and checked, and the socket is connected only
# to an address that passed: every request of a session, redirects included, whatever DNS
# answers at that moment, and a refused address is never contacted (so no answer tells an open
# port from a closed one).


class _CheckedConnectMixin:
    allow_private: bool = False
    host: str
    port: int
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        watchdog = active_watchdog.get()
        if watchdog is not None:
            watchdog.adopt(self)
        name = self._dns_host
        addresses = checked_addresses(name, self.port, self.allow_private, _connect_addresses)
        try:
            for index, address in enumerate(addresses):
                self._dns_host = address  # connect to the checked address; TLS still names the host
                try:
                    return super()._new_conn()  # type: ignore[misc]
                except (NewConnectionError, ConnectTimeoutError):
                    if index == len(addresses) - 1:
                        raise
        finally:
            self._dns_host = name
        raise AssertionError("unreachable: checked_addresses returns at least one address")


@lru_cache(maxsize=2)
def _pool_classes(allow_private: bool) -> dict[str, type]:
    """Connection pools whose connections check their address; one set per rule variant."""
    attrs = {"allow_private": allow_private}
    http_conn = type("GuardedHTTPConnection", (_CheckedConnectMixin, HTTPConnection), attrs)
    https_conn = type("GuardedHTTPSConnection", (_CheckedConnectMixin, HTTPSConnection), attrs)
    http_pool = type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    return {"http": http_pool, "https": https_pool}


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose sockets connect only to allowed addresses, with a default timeout."""

    def __init__(self, allow_private: bool, timeout: float | tuple[float, float], **kwargs: Any) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        super().__init__(**kwargs)  # calls init_poolmanager, which needs allow_private

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.allow_private)
        # requests hands its trust store to each request it sends; `GuardedSession.fetch` goes to
        # the pools directly, so they get the same one here (not the system's).
        self.poolmanager.connection_pool_kw.update(cert_reqs="CERT_REQUIRED", ca_certs=DEFAULT_CA_BUNDLE_PATH)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through a proxy the peer is the proxy, so the check would be meaningless.
        raise UrlNotAllowed("Requests to user-supplied URLs are not sent through proxies.")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, *args, **kwargs)


class GuardedSession(requests.Session):
    """A requests.Session for user-supplied URLs whose `fetch` calls are bounded in time and size."""

    def __init__(self, allow_private: bool, timeout: float, max_redirects: int) -> None:
        super().__init__()
        self.trust_env = False  # no HTTP(S)_PROXY: the connected peer must be the real server
        self.max_redirects = max_redirects
        self.deadline_seconds = timeout
        self.watchdog = Watchdog()
        adapter = GuardedAdapter(allow_private, timeout)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def fetch(self, method: str, url: str, max_bytes: int, data: bytes | None = None,
              headers: Mapping[str, str] | None = None) -> Fetched:
        """One request, redirects not followed, finished within `deadline_seconds` from the
        first byte sent to the last byte read (DeadlineExceeded otherwise); the body of a 2xx
        answer is read up to `max_bytes` after decompression (BodyTooLarge beyond).

        Sent through the adapter's guarded urllib3 pool directly, with the session's headers:
        requests' own layers (preparing, cookies, hooks, the environment) cost 0.6 of the 1.4 ms
        of CPU a call took (measured on loopback), and a fetch uses none of them. Failures are
        urllib3's exceptions (`urllib3.exceptions.HTTPError`), not requests'."""
        adapter = self.get_adapter(url)  # a GuardedAdapter: the only one mounted, for http and https
        with self.watchdog.deadline(self.deadline_seconds):
            response = adapter.poolmanager.urlopen(
                method, url, body=data, headers={**self.headers, **(headers or {})}, redirect=False,
                retries=False, preload_content=False, timeout=adapter.timeout)
            try:
                body = read_capped(response, max_bytes) if 200 <= response.status < 300 else b""
            except BaseException:
                response.close()
                raise
            if 200 <= response.status < 300:
                response.release_conn()  # read to its end: the connection may serve the next call
            else:
                response.close()  # a body left unread: the connection cannot serve again
            return Fetched(response.status, response.headers, body)


def guarded_session(allow_private: bool, timeout: float, max_redirects: int = 3) -> GuardedSession:
    """A session for user-supplied URLs: the address rule on every connection, a default
    timeout per socket operation and a deadline per `fetch`, no proxies or .netrc from the
    environment, and at most `max_redirects` automatic redirects (each redirect target is
    checked when its socket connects)."""
    return GuardedSession(allow_private, timeout, max_redirects)
