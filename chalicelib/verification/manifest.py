"""Fetching and validating a creator's signed manifest (JSON with content_hash and signature).

A manifest URI comes from the client, so the fetch is defensive: only ipfs:// (through the
configured gateways) and http(s)://, the address rule on every hop, at most 3 redirects followed
by hand, a deadline for each whole request, and a size cap enforced (after decompression) while
the body streams in.

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
from .limits import BodyTooLarge, Fetched
from .netguard import GuardedSession, check_url, guarded_session

MIB = 1024 * 1024
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TRANSIENT_STATUSES = frozenset({408, 425, 429})

CID_RE = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Manifest:
    """The fields of a manifest that verification uses, plus the whole JSON object."""

    uri: str
    cid: str | None
    content_hash: str
    signature: str
    creator_did: str | None
    raw: dict[str, Any] = field(repr=False)


def _invalid(message: str, detail: str | None = None) -> PermanentError:
    return PermanentError(message, code=MANIFEST_INVALID, detail=detail)


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


def _fetch_failed(detail: str, cause: str | None = None) -> TransientError:
    return TransientError(f"Could not fetch the manifest: {detail}.", code=MANIFEST_FETCH_FAILED,
                          detail=cause)


def _get(session: GuardedSession, url: str, settings: Settings) -> Fetched:
    """One GET without following redirects, within the session's deadline and the size cap."""
    try:
        # No Accept header: IPFS gateways negotiate on it and could answer with a DAG view.
        return session.fetch("GET", url, settings.manifest_max_bytes)
    except BodyTooLarge as exc:
        raise PermanentError(f"The manifest is larger than {exc.max_bytes} bytes.",
                             code=MANIFEST_TOO_LARGE) from exc
    except (requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError) as exc:
        raise _invalid("The manifest could not be decoded.", detail=f"{url}: {exc}") from exc
    except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError) as exc:
        raise _fetch_failed("timed out", f"{url}: {exc}") from exc
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _fetch_failed("the host could not be reached", f"{url}: {type(exc).__name__}: {exc}") from exc


def fetch_bytes(url: str, settings: Settings) -> bytes:
    """GET `url` under the address rule, following at most 3 redirects by hand.

    Messages say what went wrong, not where: the URL may be a gateway's with a key in it, and
    a redirect's target is the host's business; the logs get the URL (`detail`)."""
    session = guarded_session(settings.allow_private_networks, settings.http_timeout_seconds)
    with session:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                check_url(url, settings.allow_private_networks)
            except TransientError as exc:  # DNS trouble
                raise _fetch_failed(exc.message.rstrip("."), f"{url}: {exc.detail}") from exc
            answer = _get(session, url, settings)
            if 200 <= answer.status < 300:
                return answer.body
            location = answer.headers.get("Location")
            if answer.status in REDIRECT_STATUSES and location:
                url = urljoin(url, location)
                continue
            if answer.status in TRANSIENT_STATUSES or answer.status >= 500:
                raise _fetch_failed(f"HTTP {answer.status}", url)
            raise PermanentError(
                f"The manifest URL answered HTTP {answer.status}: check manifestURI.",
                code=MANIFEST_NOT_FOUND, detail=url,
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
        code=MANIFEST_FETCH_FAILED, detail="; ".join(str(exc.detail) for exc in failures),
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
