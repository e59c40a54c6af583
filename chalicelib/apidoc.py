"""The parts of the OpenAPI document (`chalicelib/openapi.json`) that come from the vocabulary.

The document is written by hand except for what the vocabulary already says: the enumerations,
the input patterns and limits, the accepted content types and the lists of error codes. This
module writes those parts into the document; `python -m chalicelib.apidoc` rewrites the file,
and tests/unit/test_openapi.py checks that the committed file is what it would write. It does
not write the rest of the document (paths, prose, examples).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from chalicelib.vocabulary import (
    ACTIVITY_MINUTES_DEFAULT, ACTIVITY_MINUTES_MAX, ADDRESS_PATTERN, CONTENT_TYPE_PATTERN, CONTENT_TYPES_LISTED, ERROR_CODES,
    ErrorCode, HASH_PATTERN, JOB_FAILURE_CODES, JOB_STATUSES, JOB_TYPES, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX,
    LIST_OFFSET_MAX, MAX_ETAG_LENGTH, MAX_FILE_NAME_LENGTH, MAX_UPLOAD_PARTS, MAX_URI_LENGTH, MIN_UPLOAD_PART_BYTES,
    PRINTABLE_PATTERN, RAISED_IN_JOBS, UPLOAD_MULTIPART, UPLOAD_POST, VERDICTS,
    verification_codes,
)

DOCUMENT_PATH = Path(__file__).resolve().parent / "openapi.json"
JOBS = "/api/verification-jobs"
INLINE_SUBMISSIONS = (f"{JOBS}/verify", f"{JOBS}/proof", "/api/verify", "/api/proof")
FALLBACK = "Synchronous fallback only (no queue configured): "


def code_list(codes: Iterable[ErrorCode | str]) -> str:
    """"`A` (what it means), `B`, …" for codes of the vocabulary."""
    found = [ERROR_CODES[c] if isinstance(c, str) else c for c in codes]
    return ", ".join(f"`{c.name}` ({c.meaning})" if c.meaning else f"`{c.name}`" for c in found)


def _permanent_sentence() -> str:
    return f"the verification failed for a reason that retrying cannot fix. Codes: {code_list(verification_codes(True))}."


def _transient_sentence() -> str:
    return ("the manifest host, IPFS gateway or RPC endpoint failed; try again. "
            f"Codes: {code_list(verification_codes(False))}.")


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _retries_paragraph() -> str:
    permanent = [c for c in RAISED_IN_JOBS if ERROR_CODES[c].permanent]
    transient = [c for c in RAISED_IN_JOBS if not ERROR_CODES[c].permanent]
    return (f"**Retries.** A permanent error ({code_list([*verification_codes(True), *permanent])}) fails the job "
            f"at once. A transient one ({code_list([*verification_codes(False), *transient])}) puts the job back "
            "to `queued` with `retryCount` raised and `error`/`errorCode` holding the last attempt's error; the "
            "queue redelivers it after an exponential backoff (`RETRY_BASE_SECONDS`, doubled each time). "
            "Deliveries are at least once, and every step is safe to repeat: a job completes, and writes its "
            "verification history row, exactly once.")


def _with_paragraph(text: str, start: str, paragraph: str) -> str:
    """`text` with its paragraph that begins with `start` replaced."""
    parts = text.split("\n\n")
    return "\n\n".join(paragraph if part.startswith(start) else part for part in parts)


def _derived() -> list[tuple[tuple[str, ...], Callable[[Any], Any]]]:
    """(path in the document, new value from the old one) for every derived part."""
    schemas = ("components", "schemas")
    types = ", ".join(CONTENT_TYPES_LISTED)
    parts: list[tuple[tuple[str, ...], Callable[[Any], Any]]] = [
        ((*schemas, "JobType", "enum"), lambda _: list(JOB_TYPES)),
        ((*schemas, "JobStatus", "enum"), lambda _: list(JOB_STATUSES)),
        ((*schemas, "VerificationStatus", "enum"), lambda _: list(VERDICTS)),
        ((*schemas, "RegistryAddress", "pattern"), lambda _: ADDRESS_PATTERN),
        ((*schemas, "ContentHash", "pattern"), lambda _: HASH_PATTERN),
        ((*schemas, "ManifestURI", "maxLength"), lambda _: MAX_URI_LENGTH),
        ((*schemas, "RpcUrl", "maxLength"), lambda _: MAX_URI_LENGTH),
        ((*schemas, "UploadRequest", "properties", "filename", "maxLength"), lambda _: MAX_FILE_NAME_LENGTH),
        *(((*schemas, *field, "pattern"), lambda _: PRINTABLE_PATTERN) for field in (
            ("ManifestURI",), ("RpcUrl",), ("UploadRequest", "properties", "filename"),
            ("CompletedParts", "properties", "parts", "items", "properties", "etag"))),
        ((*schemas, "UploadRequest", "properties", "contentType", "pattern"), lambda _: CONTENT_TYPE_PATTERN),
        ((*schemas, "UploadRequest", "properties", "contentType", "description"), lambda _: (
            f"The file's media type (parameters are ignored); one of: {types}. When given, the presigned POST "
            "pins it: send the same `Content-Type` field.")),
        ((*schemas, "Job", "properties", "errorCode", "description"), lambda _: (
            f"Machine code of `error`: a verification code ({code_list(verification_codes(True))}; "
            f"{code_list(verification_codes(False))}) or one of {code_list(JOB_FAILURE_CODES)}.")),
        (("paths", f"{JOBS}/{{jobId}}", "get", "description"),
         lambda text: _with_paragraph(text, "**Retries.**", _retries_paragraph())),
        (("paths", JOBS, "get", "parameters", "2", "schema"),
         lambda _: {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}),
        (("paths", JOBS, "get", "parameters", "3", "schema"),
         lambda _: {"type": "integer", "minimum": 0, "maximum": LIST_OFFSET_MAX, "default": 0}),
        (("paths", f"{JOBS}/activity", "get", "parameters", "0", "schema"), lambda _: {
            "type": "integer", "minimum": 1, "maximum": ACTIVITY_MINUTES_MAX, "default": ACTIVITY_MINUTES_DEFAULT}),
        (("paths", f"{JOBS}/activity", "get", "responses", "400", "description"), lambda _: (
            f"`VALIDATION_ERROR` with `field` `minutes` (not a whole number from 1 to {ACTIVITY_MINUTES_MAX}).")),
        ((*schemas, "PresignedPost", "properties", "method", "const"), lambda _: UPLOAD_POST),
        *(((*schemas, name, "properties", "method", "const"), lambda _: UPLOAD_MULTIPART)
          for name in ("MultipartUpload", "UploadStatus")),
        *(((*schemas, name, "properties", "partSize", "minimum"), lambda _: MIN_UPLOAD_PART_BYTES)
          for name in ("MultipartUpload", "UploadStatus")),
        *((path, lambda _: MAX_UPLOAD_PARTS) for path in (
            (*schemas, "MultipartUpload", "properties", "parts", "maxItems"),
            (*schemas, "PartUrl", "properties", "partNumber", "maximum"),
            (*schemas, "CompletedParts", "properties", "parts", "maxItems"),
            (*schemas, "CompletedParts", "properties", "parts", "items", "properties", "partNumber", "maximum"),
            (*schemas, "UploadStatus", "properties", "parts", "items", "properties", "partNumber", "maximum"))),
        ((*schemas, "CompletedParts", "properties", "parts", "items", "properties", "etag", "maxLength"),
         lambda _: MAX_ETAG_LENGTH),
    ]
    for path in INLINE_SUBMISSIONS:
        prefix = FALLBACK if path.startswith(JOBS) else ""
        operation = ("paths", path, "post")
        parts += [
            ((*operation, "responses", "422", "description"), lambda _, p=prefix: p + _capital_if(p, _permanent_sentence())),
            ((*operation, "responses", "502", "description"), lambda _, p=prefix: p + _capital_if(p, _transient_sentence())),
            ((*operation, "requestBody", "content", "multipart/form-data", "encoding", "file", "contentType"),
             lambda _: types),
        ]
    return parts


def _capital_if(prefix: str, sentence: str) -> str:
    return sentence if prefix else _capital(sentence)


def render(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with its derived parts rewritten from the vocabulary (a new object)."""
    result = json.loads(json.dumps(document))
    for path, value in _derived():
        node = result
        for key in path[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = int(path[-1]) if isinstance(node, list) else path[-1]
        node[last] = value(node[last])
    return result


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    current = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    text = dumps(render(current))
    changed = text != DOCUMENT_PATH.read_text(encoding="utf-8")
    DOCUMENT_PATH.write_text(text, encoding="utf-8")
    print(f"{DOCUMENT_PATH.name}: {'rewritten' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
