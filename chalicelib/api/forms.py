"""The HTTP layer's parsing: what clients send, validated, with the 4xx answers of the contract.

Handlers hand over the raw pieces of a request (headers, body, query); everything that can be
wrong with them is caught here, so that nothing downstream sees unvalidated input.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Mapping

import multipart

from chalicelib.config import Settings
from chalicelib.errors import ApiError, JobError
from chalicelib.verification.netguard import check_url
from chalicelib.vocabulary import (
    ADDRESS_RE, ALLOWED_CONTENT_TYPES, CONTROL_CHARACTER_RE, HASH_RE, HTTP_URL_RE, INVALID_JSON,
    INVALID_MULTIPART, IPFS_URI_RE, JOB_TYPES, MAX_ETAG_LENGTH, MAX_FILE_NAME_LENGTH, MAX_UPLOAD_PARTS,
    MAX_URI_LENGTH, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, VALIDATION_ERROR, VERIFY,
)


@dataclass(frozen=True)
class Target:
    """What to check a file against: the same three inputs for every kind of submission."""

    registry_address: str
    manifest_uri: str
    rpc_url: str | None


@dataclass(frozen=True)
class InlineFile:
    data: bytes
    file_name: str | None
    content_type: str


@dataclass(frozen=True)
class Submission:
    """A verify/proof request: a target and either an inline file or a client-computed hash."""

    target: Target
    file: InlineFile | None = None
    content_hash: str | None = None


@dataclass(frozen=True)
class UploadRequest:
    job_type: str
    target: Target
    file_name: str
    content_type: str | None
    size: int | None
    multipart: bool  # S3 multipart (a presigned PUT per part) rather than one presigned POST


def bad_field(field: str, message: str) -> ApiError:
    return ApiError(VALIDATION_ERROR, message, field)


def _text(fields: Mapping[str, Any], name: str, required: bool) -> str | None:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise bad_field(name, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise bad_field(name, f"{name} must be a string")
    return _printable(name, value).strip()  # a tab or newline is refused, not stripped


def _printable(name: str, value: str) -> str:
    if CONTROL_CHARACTER_RE.search(value):
        raise bad_field(name, f"{name} must not contain control characters")
    return value


def _file_name(name: str, value: str | None) -> str | None:
    """A client's file name, kept as data only: printable and at most MAX_FILE_NAME_LENGTH."""
    if value is not None and len(value) > MAX_FILE_NAME_LENGTH:
        raise bad_field(name, f"{name} is longer than {MAX_FILE_NAME_LENGTH} characters")
    return value if value is None else _printable(name, value)


def _checked_url(settings: Settings, field: str, url: str) -> None:
    """Apply the address rule now; the worker applies it again when it connects."""
    try:
        check_url(url, settings.allow_private_networks)
    except JobError as exc:
        raise ApiError(exc.code, f"{field}: {exc.message}", field, status=400) from exc


def parse_target(settings: Settings, fields: Mapping[str, Any]) -> Target:
    registry = _text(fields, "registryAddress", True)
    if not ADDRESS_RE.match(registry):
        raise bad_field("registryAddress", "registryAddress must be 0x followed by 40 hex characters")
    manifest_uri = _text(fields, "manifestURI", True)
    if len(manifest_uri) > MAX_URI_LENGTH:
        raise bad_field("manifestURI", f"manifestURI is longer than {MAX_URI_LENGTH} characters")
    if manifest_uri.startswith("ipfs://"):
        if not IPFS_URI_RE.match(manifest_uri):
            raise bad_field("manifestURI", "manifestURI must be ipfs://<CID>[/path] with a valid CID")
    elif HTTP_URL_RE.match(manifest_uri):
        _checked_url(settings, "manifestURI", manifest_uri)
    else:
        raise bad_field("manifestURI", "manifestURI must be ipfs://<CID>[/path] or an http(s):// URL")
    rpc_url = _text(fields, "rpcUrl", False)
    if rpc_url is not None:
        if len(rpc_url) > MAX_URI_LENGTH or not HTTP_URL_RE.match(rpc_url):
            raise bad_field("rpcUrl", "rpcUrl must be an http(s):// URL")
        _checked_url(settings, "rpcUrl", rpc_url)
    elif not settings.rpc_url:
        raise bad_field("rpcUrl", "rpcUrl is required: this deployment has no default RPC_URL")
    return Target(registry_address=registry, manifest_uri=manifest_uri, rpc_url=rpc_url)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _check_content_type(content_type: str, field: str = "file") -> None:
    if content_type not in ALLOWED_CONTENT_TYPES:
        raise ApiError(
            UNSUPPORTED_MEDIA_TYPE,
            f"file type {content_type or '(none)'} is not accepted; allowed: {', '.join(sorted(ALLOWED_CONTENT_TYPES))}",
            field,
        )


def _too_large(settings: Settings) -> ApiError:
    return ApiError(
        PAYLOAD_TOO_LARGE,
        f"files over {settings.max_inline_upload_bytes} bytes cannot travel inline; "
        "use POST /api/verification-jobs/uploads and upload the file straight to storage",
        "file",
    )


def parse_submission(
    settings: Settings, headers: Mapping[str, str], body: bytes | None, allow_hash: bool = True
) -> Submission:
    """A multipart form with a file, or (when allowed) JSON with `contentHash` instead."""
    media_type = _media_type(headers.get("content-type"))
    body = body or b""
    if media_type == "multipart/form-data":
        if len(body) > settings.max_inline_upload_bytes + 64 * 1024:
            raise _too_large(settings)
        fields, upload = _parse_multipart(headers["content-type"], body)
        target = parse_target(settings, fields)
        if upload is None:
            raise bad_field("file", "file is required (a multipart part named 'file')")
        _file_name("file", upload.file_name)
        if not upload.data:
            raise bad_field("file", "file is empty")
        if len(upload.data) > settings.max_inline_upload_bytes:
            raise _too_large(settings)
        _check_content_type(upload.content_type)
        return Submission(target=target, file=upload)
    if media_type == "application/json" and allow_hash:
        data = _json_object(body)
        target = parse_target(settings, data)
        content_hash = _text(data, "contentHash", True)
        if not HASH_RE.match(content_hash):
            raise bad_field("contentHash", "contentHash must be 0x followed by 64 hex characters")
        return Submission(target=target, content_hash=content_hash.lower())
    accepted = "multipart/form-data or application/json" if allow_hash else "multipart/form-data"
    raise ApiError(UNSUPPORTED_MEDIA_TYPE, f"send the request as {accepted}")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError) as exc:
        raise ApiError(INVALID_JSON, "the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(INVALID_JSON, "the body must be a JSON object")
    return data


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], InlineFile | None]:
    _, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise ApiError(INVALID_MULTIPART, "multipart body without a boundary")
    fields: dict[str, str] = {}
    upload: InlineFile | None = None
    try:
        parser = multipart.MultipartParser(
            io.BytesIO(body), boundary, content_length=len(body), memory_limit=len(body) + 1,
            memfile_limit=len(body) + 1, spool_limit=len(body) + 1,
        )
        for part in parser:
            if part.filename is not None or part.name == "file":
                if part.name == "file":
                    upload = InlineFile(
                        data=part.raw, file_name=part.filename or None,
                        content_type=_media_type(part.content_type) or "application/octet-stream",
                    )
            else:
                fields[part.name] = part.value
    except (multipart.MultipartError, UnicodeDecodeError) as exc:
        raise ApiError(INVALID_MULTIPART, f"malformed multipart body: {exc}") from exc
    return fields, upload


def parse_upload_request(settings: Settings, body: bytes | None) -> UploadRequest:
    data = _json_object(body or b"")
    job_type = _text(data, "type", False) or VERIFY
    if job_type not in JOB_TYPES:
        raise bad_field("type", f"type must be {' or '.join(map(repr, JOB_TYPES))}")
    target = parse_target(settings, data)
    file_name = _file_name("filename", _text(data, "filename", True))
    content_type = _text(data, "contentType", False)
    if content_type is not None:
        content_type = _media_type(content_type)
        _check_content_type(content_type, "contentType")
    size = data.get("size")
    if size is not None:
        size = _json_integer(size)
        if size is None or size < 1:
            raise bad_field("size", "size must be a positive integer (bytes)")
    asked = data.get("multipart")  # unset: multipart for a file over the threshold
    if asked is not None and not isinstance(asked, bool):
        raise bad_field("multipart", "multipart must be true or false")
    multipart_upload = asked if asked is not None else (size is not None and size > settings.multipart_threshold_bytes)
    if multipart_upload and size is None:
        raise bad_field("size", "a multipart upload needs the file's size (bytes), to sign a URL per part")
    limit = settings.max_multipart_upload_bytes if multipart_upload else settings.max_upload_bytes
    if size is not None and size > limit:
        raise ApiError(PAYLOAD_TOO_LARGE, f"files over {limit} bytes are not accepted", "size")
    return UploadRequest(job_type, target, file_name, content_type, size, multipart_upload)


def _json_integer(value: Any) -> int | None:
    """A JSON number that is an integer, as JSON Schema counts them (3.0 is the integer 3); None
    for anything else, booleans included."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_completed_parts(body: bytes | None) -> list[tuple[int, str]]:
    """`{"parts": [{"partNumber", "etag"}, ...]}` of a multipart completion: (number, ETag) pairs in
    part-number order, each number once."""
    parts = _json_object(body or b"").get("parts")
    if not isinstance(parts, list) or not parts:
        raise bad_field("parts", "parts must be a non-empty list of {partNumber, etag}")
    if len(parts) > MAX_UPLOAD_PARTS:
        raise bad_field("parts", f"an upload has at most {MAX_UPLOAD_PARTS} parts")
    found: dict[int, str] = {}
    for index, part in enumerate(parts):
        number = part.get("partNumber") if isinstance(part, dict) else None
        etag = part.get("etag") if isinstance(part, dict) else None
        number = _json_integer(number)
        if number is None or not 1 <= number <= MAX_UPLOAD_PARTS:
            raise bad_field("parts", f"parts[{index}].partNumber must be a whole number from 1 to {MAX_UPLOAD_PARTS}")
        if not isinstance(etag, str) or not etag.strip() or len(etag) > MAX_ETAG_LENGTH \
                or CONTROL_CHARACTER_RE.search(etag):
            raise bad_field("parts", f"parts[{index}].etag (part {number}) must be the ETag S3 answered for the part")
        if number in found:
            raise bad_field("parts", f"parts: part {number} is listed twice")
        found[number] = etag.strip()
    return sorted(found.items())
