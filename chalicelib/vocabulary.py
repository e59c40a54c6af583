"""The service's one vocabulary: job types and statuses, error codes, input patterns.

Every other module, the SQL migrations (checked by tests/unit/test_vocabulary.py and
tests/integration/test_jobs_db.py) and the OpenAPI document (generated parts, see
chalicelib/apidoc.py) take these words from here, so that they cannot drift apart.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# --- jobs ------------------------------------------------------------------------------------

VERIFY = "verify"
PROOF = "proof"
JOB_TYPES = (VERIFY, PROOF)

AWAITING_UPLOAD = "awaiting_upload"
QUEUED = "queued"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
JOB_STATUSES = (AWAITING_UPLOAD, QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED)
UNFINISHED_STATUSES = (AWAITING_UPLOAD, QUEUED, PROCESSING)  # also the statuses a cancel may start from
FINISHED_STATUSES = (COMPLETED, FAILED, CANCELLED)

# The verdict of a verification (verify result `status`, proof `verification.status`, history rows).
VERDICTS = ("OK", "WARN", "FAIL")

# Progress steps of a job, as the original service reported them.
PROGRESS_HASHED = 10
PROGRESS_MANIFEST = 30
PROGRESS_SIGNER = 50
PROGRESS_REGISTRY = 70
PROGRESS_TX = 85
PROGRESS_PERSISTING = 90
PROGRESS_DONE = 100

# --- input patterns --------------------------------------------------------------------------

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
HASH_PATTERN = r"^0x[0-9a-fA-F]{64}$"
SIGNATURE_PATTERN = r"^0x[0-9a-fA-F]{130}$"
ADDRESS_RE = re.compile(ADDRESS_PATTERN)
HASH_RE = re.compile(HASH_PATTERN)
SIGNATURE_RE = re.compile(SIGNATURE_PATTERN)
# CIDv0 (base58btc multihash) or CIDv1 in base32 / base36, then an optional path.
IPFS_URI_RE = re.compile(r"^ipfs://(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{40,}|k[0-9a-z]{40,})(/[^\s?#]*)?$")
HTTP_URL_RE = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)
MAX_URI_LENGTH = 2048
# C0 and C1 control characters and DEL: refused in every text a client sends (PostgreSQL
# refuses NUL in text columns, and none of them belong in a name or a URI).
# C0 and C1 control characters: refused in every text field (file names, URIs), before anything
# is stored; the OpenAPI document says the same with PRINTABLE_PATTERN.
_CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
CONTROL_CHARACTER_RE = re.compile(f"[{_CONTROL_CHARACTERS}]")
PRINTABLE_PATTERN = f"^[^{_CONTROL_CHARACTERS}]*$"
MAX_FILE_NAME_LENGTH = 255
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 100
LIST_OFFSET_MAX = 2**31 - 1  # Postgres OFFSET takes a bigint; keep it well inside
ACTIVITY_MINUTES_DEFAULT = 60  # the activity report's window: the last hour
ACTIVITY_MINUTES_MAX = 1440  # at most a day of one-minute buckets
# S3's multipart limits: part numbers 1 to 10,000, every part but the last at least 5 MiB.
MAX_UPLOAD_PARTS = 10_000
MIN_UPLOAD_PART_BYTES = 5 * 1024 * 1024
MAX_ETAG_LENGTH = 128  # S3's part ETags are an MD5 in hex, quoted: far shorter
# How a client sends a file straight to storage: one presigned POST, or presigned PUTs per part.
UPLOAD_POST = "POST"
UPLOAD_MULTIPART = "MULTIPART"
# The original service's accepted file types, in its order, plus application/octet-stream.
CONTENT_TYPES_LISTED = (
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/svg+xml",
    "video/mp4", "video/webm", "video/quicktime", "video/x-msvideo",
    "audio/mpeg", "audio/wav", "audio/ogg",
    "application/pdf", "text/plain", "application/json", "application/octet-stream",
)
ALLOWED_CONTENT_TYPES = frozenset(CONTENT_TYPES_LISTED)
# What str.strip() takes off an accepted media type besides the control characters (refused).
_SPACES = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _any_case(media_type: str) -> str:
    """A pattern for `media_type` in any letter case, as media types compare."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else ("\\" + c if c in "+." else c)
                   for c in media_type)


# The upload request's `contentType`, as the API reads it: blank (none given), or an allowed media
# type in any case, with spaces around it and parameters after a `;`, which are ignored.
CONTENT_TYPE_PATTERN = (f"^[{_SPACES}]*$|^[{_SPACES}]*(?:{'|'.join(map(_any_case, CONTENT_TYPES_LISTED))})"
                        f"[{_SPACES}]*(?:;[^{_CONTROL_CHARACTERS}]*)?$")

# --- error codes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCode:
    """One machine code: the HTTP status it answers with, and (for job failures) whether
    retrying can help. `meaning` is what the OpenAPI document says about it."""

    name: str
    status: int | None  # None: a job failure only, never the answer to a request
    permanent: bool
    meaning: str = ""
    verification: bool = False  # raised by the verification core (sync answers: 422 / 502)


ERROR_CODES: dict[str, ErrorCode] = {}


def _code(name: str, status: int | None, permanent: bool = True, meaning: str = "", verification: bool = False) -> str:
    ERROR_CODES[name] = ErrorCode(name, status, permanent, meaning, verification)
    return name


# A verification that fails inside a request: the client's input (422) or a dependency (502).
FAILED_VERIFICATION_STATUS = {True: 422, False: 502}


def _verification(name: str, permanent: bool, meaning: str = "") -> str:
    """A failure of the verification core."""
    return _code(name, FAILED_VERIFICATION_STATUS[permanent], permanent, meaning, verification=True)


# Client mistakes in a request.
VALIDATION_ERROR = _code("VALIDATION_ERROR", 400)
INVALID_JSON = _code("INVALID_JSON", 400)
INVALID_MULTIPART = _code("INVALID_MULTIPART", 400)
UNSUPPORTED_MEDIA_TYPE = _code("UNSUPPORTED_MEDIA_TYPE", 415)
PAYLOAD_TOO_LARGE = _code("PAYLOAD_TOO_LARGE", 413)
UNAUTHORIZED = _code("UNAUTHORIZED", 401)
NOT_FOUND = _code("NOT_FOUND", 404)
INVALID_STATE = _code("INVALID_STATE", 409)
QUEUE_NOT_CONFIGURED = _code("QUEUE_NOT_CONFIGURED", 409)
RATE_LIMITED = _code("RATE_LIMITED", 429, permanent=False,
                     meaning="more than RATE_LIMIT_PER_MINUTE requests this minute; wait `Retry-After` seconds")

# Verification failures, permanent: retrying cannot fix them.
MANIFEST_INVALID = _verification("MANIFEST_INVALID", True, "not JSON, or no valid `content_hash`/`signature`")
MANIFEST_TOO_LARGE = _verification("MANIFEST_TOO_LARGE", True)
MANIFEST_NOT_FOUND = _verification("MANIFEST_NOT_FOUND", True, "the manifest URL answered 4xx")
MANIFEST_TOO_MANY_REDIRECTS = _verification("MANIFEST_TOO_MANY_REDIRECTS", True)
UNSUPPORTED_URI = _verification("UNSUPPORTED_URI", True)
URL_NOT_ALLOWED = _verification(
    "URL_NOT_ALLOWED", True, "a redirect or a new DNS answer points at a refused address")
SIGNATURE_INVALID = _verification("SIGNATURE_INVALID", True)
REGISTRY_NOT_FOUND = _verification(
    "REGISTRY_NOT_FOUND", True, "no contract at `registryAddress` on the RPC's network")
REGISTRY_INCOMPATIBLE = _verification("REGISTRY_INCOMPATIBLE", True)
REGISTRY_ADDRESS_INVALID = _verification("REGISTRY_ADDRESS_INVALID", True)
CONTENT_HASH_INVALID = _verification("CONTENT_HASH_INVALID", True)
RPC_REJECTED = _verification("RPC_REJECTED", True, "the RPC endpoint refused the call with a 4xx")
RPC_URL_REQUIRED = _verification("RPC_URL_REQUIRED", True)
RPC_LIMIT_EXCEEDED = _verification(
    "RPC_LIMIT_EXCEEDED", True,
    "the verification needed more JSON-RPC calls than `RPC_CALL_BUDGET`, or an answer was larger "
    "than `RPC_MAX_RESPONSE_BYTES`")

# Verification failures, transient: the job is retried.
MANIFEST_FETCH_FAILED = _verification(
    "MANIFEST_FETCH_FAILED", False,
    "network error, timeout, 408/425/429 or 5xx from the manifest host or IPFS gateway")
DNS_RESOLUTION_FAILED = _verification("DNS_RESOLUTION_FAILED", False)
RPC_UNAVAILABLE = _verification("RPC_UNAVAILABLE", False, "RPC endpoint unreachable, throttling or 5xx")
RPC_ERROR = _verification("RPC_ERROR", False, "JSON-RPC error or malformed answer")

# Failures of the service itself and of jobs outside the verification core.
UPLOAD_EXPIRED = _code("UPLOAD_EXPIRED", 409)
UPLOAD_MISSING = _code("UPLOAD_MISSING", 409)
DEAD_LETTERED = _code("DEAD_LETTERED", None)
STORAGE_UNAVAILABLE = _code("STORAGE_UNAVAILABLE", 503, permanent=False)
QUEUE_UNAVAILABLE = _code("QUEUE_UNAVAILABLE", 503, permanent=False)
DATABASE_UNAVAILABLE = _code("DATABASE_UNAVAILABLE", 503, permanent=False)
INTERNAL_ERROR = _code("INTERNAL_ERROR", 500, permanent=False)

# Job failure codes beyond the verification core's, in the order the API document lists them;
# the first set is what a worker's attempt can raise (the others are set by housekeeping).
JOB_FAILURE_CODES = (UPLOAD_EXPIRED, UPLOAD_MISSING, STORAGE_UNAVAILABLE, DATABASE_UNAVAILABLE,
                     INTERNAL_ERROR, DEAD_LETTERED)
RAISED_IN_JOBS = (UPLOAD_MISSING, STORAGE_UNAVAILABLE, DATABASE_UNAVAILABLE, INTERNAL_ERROR)


def verification_codes(permanent: bool) -> list[ErrorCode]:
    """The verification core's permanent (or transient) codes, in the order defined above."""
    return [c for c in ERROR_CODES.values() if c.verification and c.permanent == permanent]


def sql_list(*words: str) -> str:
    """`('a', 'b')` for a SQL `IN` of vocabulary words (constants only, never client input)."""
    known = set(JOB_STATUSES) | set(JOB_TYPES) | set(VERDICTS)
    unknown = [w for w in words if w not in known]
    if unknown:
        raise ValueError(f"not vocabulary words: {unknown}")
    return "(" + ", ".join(f"'{w}'" for w in words) + ")"
