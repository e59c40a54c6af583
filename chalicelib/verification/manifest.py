"""Fetching and validating a creator's signed manifest (JSON with content_hash and signature).

A manifest URI comes from the client, so the fetch is defensive: only ipfs:// (through the
configured gateways) and http(s)://, the address rule on every hop, at most 3 redirects followed
by hand, timeouts, and a size cap enforced while the body streams in.

IPFS_GATEWAY may list several gateways: an ipfs:// manifest is asked of each in turn while they
fail transiently (timeout, refused connection, 5xx, 408/425/429), each under the same rule and
cap. Any other answer ends the search: a 404 or 410 (MANIFEST_NOT_FOUND), an oversized or
malformed body, a refused address. A gateway that answers is taken at its word about the content,
so the next one is not asked; a deployment lists gateways for availability, not for content
that only some of them hold.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urljoin

import requests
import urllib3

from ..config import Settings
from ..errors import PermanentError, TransientError
from ..vocabulary import (
    HASH_RE, MANIFEST_FETCH_FAILED, MANIFEST_INVALID, MANIFEST_NOT_FOUND,
    MANIFEST_TOO_LARGE, MANIFEST_TOO_MANY_REDIRECTS, SIGNATURE_RE, UNSUPPORTED_URI,
)
from .netguard import check_url, guarded_session

MIB = 1024 * 1024
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TRANSIENT_STATUSES = frozenset({408, 425, 429})

CID_RE = re.compile(r"^[A-Za-z0-9]+$")

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Manifest:
    """The fields of a manifest that verification uses, plus the whole JSON object."""

    uri: str
    cid: str | None
    content_hash: str
    signature: str
    creator_did: str | None
    raw: dict[str, Any] = field(repr=False)


def _invalid(message: str) -> PermanentError:
    return PermanentError(message, code=MANIFEST_INVALID)


def parse_manifest(data: bytes, max_bytes: int | None = MIB) -> dict[str, Any]:
    """Validate manifest bytes and return the JSON object.

    Requires a JSON object with `content_hash` (0x + 64 hex) and `signature` (0x + 130 hex);
    `creator_did`, when present, must be a string. Raises PermanentError MANIFEST_INVALID
    (or MANIFEST_TOO_LARGE) with a message saying what is wrong.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise PermanentError(
            f"The manifest is larger than {max_bytes} bytes.", code=MANIFEST_TOO_LARGE
        )
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _invalid(f"The manifest is not valid JSON ({exc}).") from exc
    if not isinstance(obj, dict):
        raise _invalid(f"The manifest must be a JSON object, not {type(obj).__name__}.")
    content_hash = obj.get("content_hash")
    if not isinstance(content_hash, str) or not HASH_RE.match(content_hash):
        raise _invalid("The manifest's content_hash must be 0x followed by 64 hex digits.")
    signature = obj.get("signature")
    if not isinstance(signature, str) or not SIGNATURE_RE.match(signature):
        raise _invalid("The manifest's signature must be 0x followed by 130 hex digits (65 bytes).")
    creator_did = obj.get("creator_did")
    if creator_did is not None and not isinstance(creator_did, str):
        raise _invalid("The manifest's creator_did must be a string.")
    return obj


def resolve_manifest_uri(uri: str, ipfs_gateway: str) -> tuple[str, str | None]:
    """Map a manifest URI to the http(s) URL to fetch, and its CID for ipfs:// URIs.

    `ipfs://CID[/path]` becomes `{gateway}/ipfs/CID[/path]`; http(s) URLs are used as they are.
    """
    if not isinstance(uri, str) or not uri:
        raise PermanentError("The manifest URI is empty.", code=UNSUPPORTED_URI)
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "ipfs":
        rest = uri[len("ipfs://"):] if uri[:7].lower() == "ipfs://" else ""
        cid, _, path = rest.partition("/")
        if not CID_RE.match(cid):
            raise PermanentError(
                f"The manifest URI {uri!r} has no valid CID: use ipfs://<CID>[/path].",
                code=UNSUPPORTED_URI,
            )
        # A path must stay inside the CID's directory on the gateway: no dot segments.
        if any(unquote(seg) in (".", "..") for seg in path.split("/")):
            raise PermanentError(
                f"The manifest URI {uri!r} has '.' or '..' path segments.", code=UNSUPPORTED_URI
            )
        url = f"{ipfs_gateway.rstrip('/')}/ipfs/{cid}"
        if path:
            url += "/" + quote(path, safe="/%:@!$&'()*+,;=-._~")
        return url, cid
    if scheme in ("http", "https"):
        return uri, None
    raise PermanentError(
        f"Unsupported manifest URI scheme {scheme or '(none)'!r}: "
        "use ipfs://<CID>[/path] or an http(s):// URL.",
        code=UNSUPPORTED_URI,
    )


def _fetch_failed(url: str, detail: str) -> TransientError:
    return TransientError(
        f"Could not fetch the manifest from {url}: {detail}.", code=MANIFEST_FETCH_FAILED
    )


def _read_capped(response: requests.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    """Read the body, stopping (and refusing) as soon as it exceeds `max_bytes`."""
    too_large = PermanentError(
        f"The manifest at {url} is larger than {max_bytes} bytes.", code=MANIFEST_TOO_LARGE
    )
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise too_large
    body = bytearray()
    while True:
        # read1 returns whatever one socket read brings, so a server dripping bytes slowly
        # cannot hold us past the deadline (iter_content would wait for a full chunk).
        chunk = response.raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            break
        body += chunk
        if len(body) > max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            raise _fetch_failed(url, "the download took too long")
    return bytes(body)


def _get(session: requests.Session, url: str, settings: Settings) -> tuple[int, str | None, bytes]:
    """One GET without following redirects: (status, Location, body of a 2xx answer)."""
    timeout = settings.http_timeout_seconds
    deadline = time.monotonic() + timeout
    try:
        # No Accept header: IPFS gateways negotiate on it and could answer with a DAG view.
        with session.get(url, stream=True, allow_redirects=False, timeout=timeout) as response:
            status = response.status_code
            if 200 <= status < 300:
                return status, None, _read_capped(response, url, settings.manifest_max_bytes, deadline)
            return status, response.headers.get("Location"), b""
    except (requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError) as exc:
        raise _invalid(f"The manifest at {url} could not be decoded ({exc}).") from exc
    except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError) as exc:
        raise _fetch_failed(url, "timed out") from exc
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _fetch_failed(url, str(exc) or type(exc).__name__) from exc


def fetch_bytes(url: str, settings: Settings) -> bytes:
    """GET `url` under the address rule, following at most 3 redirects by hand."""
    session = guarded_session(settings.allow_private_networks, settings.http_timeout_seconds)
    with session:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                check_url(url, settings.allow_private_networks)
            except TransientError as exc:  # DNS trouble
                raise _fetch_failed(url, exc.message) from exc
            status, location, body = _get(session, url, settings)
            if 200 <= status < 300:
                return body
            if status in REDIRECT_STATUSES and location:
                url = urljoin(url, location)
                continue
            if status in TRANSIENT_STATUSES or status >= 500:
                raise _fetch_failed(url, f"HTTP {status}")
            raise PermanentError(
                f"The manifest URL {url} answered HTTP {status}: check manifestURI.",
                code=MANIFEST_NOT_FOUND,
            )
    raise PermanentError(
        f"The manifest URL redirected more than {MAX_REDIRECTS} times.",
        code=MANIFEST_TOO_MANY_REDIRECTS,
    )


def fetch_from_first_available(urls: list[str], settings: Settings) -> bytes:
    """fetch_bytes from the first of `urls` that does not fail transiently (see the module
    docstring); when all of them do, one transient error naming each failure."""
    failures: list[TransientError] = []
    for url in urls:
        try:
            return fetch_bytes(url, settings)
        except TransientError as exc:
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    raise TransientError(
        f"No IPFS gateway delivered the manifest ({len(failures)} tried): "
        + "; ".join(exc.message for exc in failures),
        code=MANIFEST_FETCH_FAILED,
    ) from failures[-1]


def fetch_manifest(uri: str, settings: Settings) -> Manifest:
    """Fetch, size-check and validate the manifest at `uri` (ipfs:// or http(s)://)."""
    resolved = [resolve_manifest_uri(uri, gateway) for gateway in settings.ipfs_gateways]
    cid = resolved[0][1]
    data = fetch_from_first_available(list(dict.fromkeys(url for url, _ in resolved)), settings)
    obj = parse_manifest(data, settings.manifest_max_bytes)
    return Manifest(
        uri=uri,
        cid=cid,
        content_hash=obj["content_hash"],
        signature=obj["signature"],
        creator_did=obj.get("creator_did"),
        raw=obj,
    )
