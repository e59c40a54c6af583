"""The S3 adapter for the upload bucket: where files wait for their job, and how they are read back.

Every botocore failure comes out as TransientError(STORAGE_UNAVAILABLE), a missing object as
PermanentError(UPLOAD_MISSING). Object keys are generated here from the job id; a client's file
name never reaches a key.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
import time
from typing import Any, BinaryIO, Iterable, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws import NOT_FOUND_CODES, LazyClient, error_code, unavailable_as
from chalicelib.config import Settings
from chalicelib.errors import PermanentError, TransientError
from chalicelib.readers import in_order, read_ahead
from chalicelib.vocabulary import MAX_UPLOAD_PARTS, MIN_UPLOAD_PART_BYTES, STORAGE_UNAVAILABLE, UPLOAD_MISSING

READ_CHUNK = 1024 * 1024
READ_AHEAD_CHUNKS = 4  # a streamed GET is read this many chunks ahead of the hash, in a thread of its own
# Presigned POSTs and part URLs signed with SigV4: botocore still presigns S3 with SigV2 by default
# (for backwards compatibility), which leaves some parameters unsigned and which newer regions and
# S3's own deprecation refuse.
S3_OPTIONS = {"signature_version": "s3v4"}
# Listing and joining the parts of a very large upload can take a while (S3 keeps a join's
# connection alive with whitespace meanwhile; moto answers only when done: 41-63 s to join 5 GiB
# in the benchmark): a long read timeout, and for the join no automatic retry, whose second
# attempt would find the upload gone while the first one is still writing the object.
PARTS_OPTIONS = {**S3_OPTIONS, "read_timeout": 300}
JOIN_OPTIONS = {**PARTS_OPTIONS, "retries": {"max_attempts": 1, "mode": "standard"}}


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    fields: dict[str, str]
    max_bytes: int
    expires_at: datetime


@dataclass(frozen=True)
class ReceivedPart:
    """A part S3 holds for an open multipart upload."""

    number: int
    etag: str  # without the quotes S3 puts around it
    size: int


class MultipartRefused(Exception):
    """S3 refused to complete a multipart upload: `code` is S3's reason (`NoSuchUpload` when the
    upload was aborted or never existed, `InvalidPart`, `EntityTooSmall`, ... for a bad part list)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


NO_SUCH_UPLOAD = "NoSuchUpload"
# What S3 answers to a part list it will not join (the upload gone, a part unknown, out of order or
# too small): the client's mistake or a race, never storage being down.
PART_LIST_REFUSALS = frozenset({NO_SUCH_UPLOAD, "InvalidPart", "InvalidPartOrder", "EntityTooSmall"})


def part_plan(size: int, preferred_part_size: int) -> tuple[int, int]:
    """(part size, part count) for a file of `size` bytes: the configured part size, raised to
    S3's minimum and to what keeps the count within S3's 10,000 parts."""
    part_size = max(preferred_part_size, MIN_UPLOAD_PART_BYTES, -(-size // MAX_UPLOAD_PARTS))
    return part_size, -(-size // part_size)


def part_length(number: int, size: int, part_size: int) -> int:
    """How many bytes part `number` (from 1) of a `size`-byte file holds: every part but the last is whole."""
    return min(part_size, size - (number - 1) * part_size)


def bare_etag(etag: str) -> str:
    """An ETag as S3 and clients spell it, quoted or not, compared without its quotes."""
    return etag.strip().strip('"')


class Storage:
    def __init__(self, settings: Settings, s3: Any = None) -> None:
        self.settings = settings
        self.s3 = LazyClient("s3", s3, S3_OPTIONS)
        self.s3_parts = LazyClient("s3", s3, PARTS_OPTIONS)
        self.s3_join = LazyClient("s3", s3, JOIN_OPTIONS)
        self.bucket = settings.upload_bucket

    def object_key(self, job_id: str, inline: bool = False) -> str:
        """Presigned uploads and inline files live under separate prefixes: only the first kind
        starts a job when it lands, so only that prefix is wired to the upload-events queue."""
        return f"{self.settings.inline_prefix if inline else self.settings.uploads_prefix}{job_id}"

    def job_id_from_key(self, key: str) -> str | None:
        """The job an uploaded object belongs to, or None for keys outside the uploads prefix."""
        prefix = self.settings.uploads_prefix
        if not key.startswith(prefix):
            return None
        rest = key[len(prefix):]
        return rest if rest and "/" not in rest else None

    def put_object(self, key: str, data: bytes, content_type: str) -> None:
        with unavailable_as(STORAGE_UNAVAILABLE, "store the upload"):
            self.s3().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def _found(self, what: str, method: str, key: str, **extra: Any) -> Any | None:
        """The answer of S3's `method` for the object, or None when the object does not exist."""
        try:
            return getattr(self.s3(), method)(Bucket=self.bucket, Key=key, **extra)
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and error_code(exc) in NOT_FOUND_CODES:
                return None
            raise TransientError(f"could not {what}", STORAGE_UNAVAILABLE, detail=str(exc)) from exc

    def stream_object(self, key: str, part_seconds: list[float] | None = None) -> tuple[int, Iterator[bytes]]:
        """Size and the bytes of an object in order, never whole, never to disk: one streamed GET, or
        with READ_PARALLEL_RANGES above 1 that many ranged GETs of READ_RANGE_BYTES in flight (a
        single S3 stream is slower than SHA-256 on AWS), never more than that many ranges held in
        memory. moto answers each ranged GET by copying the whole object, so there one stream is
        much faster. `part_seconds`, when given, collects how long each ranged GET took."""
        range_bytes, parallel = self.settings.read_range_bytes, self.settings.read_parallel_ranges
        started = time.monotonic()
        first = self._found("read the upload", "get_object", key,
                            **({"Range": f"bytes=0-{range_bytes - 1}"} if parallel > 1 else {}))
        if first is None:
            raise PermanentError(
                "the uploaded file is gone from storage (expired or deleted); submit the file again",
                UPLOAD_MISSING,
            )
        if parallel <= 1:  # one GET, streamed, read ahead of the hash so that both run at once
            size = int(first["ContentLength"])
            if size <= READ_CHUNK:  # one read: a thread to read ahead would only cost its start
                return size, _chunks(first["Body"])
            return size, read_ahead(_chunks(first["Body"]), READ_AHEAD_CHUNKS)
        size = _total_size(first)
        head = _read_all(first["Body"])
        if part_seconds is not None:
            part_seconds.append(time.monotonic() - started)
        ranges = [(start, min(start + range_bytes, size) - 1) for start in range(len(head), size, range_bytes)]
        return size, in_order(head, ranges, lambda r: self._read_range(key, r, part_seconds),
                               self.settings.read_parallel_ranges)

    def _read_range(self, key: str, byte_range: tuple[int, int], part_seconds: list[float] | None) -> bytes:
        started = time.monotonic()
        with unavailable_as(STORAGE_UNAVAILABLE, "read the upload"):
            data = _read_all(self.s3().get_object(Bucket=self.bucket, Key=key,
                                                  Range=f"bytes={byte_range[0]}-{byte_range[1]}")["Body"])
        if len(data) != byte_range[1] - byte_range[0] + 1:
            raise TransientError("the upload changed while it was read", STORAGE_UNAVAILABLE)
        if part_seconds is not None:
            part_seconds.append(time.monotonic() - started)
        return data

    def object_exists(self, key: str) -> bool:
        return self._found("look up the upload", "head_object", key) is not None

    def delete_object(self, key: str) -> None:
        with unavailable_as(STORAGE_UNAVAILABLE, "delete the upload"):
            self.s3().delete_object(Bucket=self.bucket, Key=key)

    def check(self) -> None:
        """Raise when the bucket cannot be reached (the health check)."""
        if self.bucket:
            with unavailable_as(STORAGE_UNAVAILABLE, "reach the upload bucket"):
                self.s3().head_bucket(Bucket=self.bucket)

    def presign_upload(self, key: str, content_type: str | None, size: int | None = None) -> PresignedUpload:
        """A presigned POST whose policy pins the key and the size range (exactly `size` bytes
        when the client declared it), so S3 itself refuses the rest."""
        low, high = (size, size) if size else (1, self.settings.max_upload_bytes)
        conditions: list = [["content-length-range", low, high]]
        fields: dict[str, str] = {}
        if content_type:
            fields["Content-Type"] = content_type
            conditions.append({"Content-Type": content_type})
        expires = self.settings.upload_url_expiry_seconds
        with unavailable_as(STORAGE_UNAVAILABLE, "sign the upload"):
            post = self.s3().generate_presigned_post(
                Bucket=self.bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=expires
            )
        return PresignedUpload(
            url=post["url"],
            fields=post["fields"],
            max_bytes=high,
            expires_at=datetime.now(timezone.utc) + timedelta(seconds=expires),
        )


    # --- multipart uploads (files over MULTIPART_THRESHOLD_BYTES) ---------------------------------

    def start_multipart_upload(self, key: str, content_type: str | None) -> str:
        """Open a multipart upload for the key; its S3 UploadId."""
        extra = {"ContentType": content_type} if content_type else {}
        with unavailable_as(STORAGE_UNAVAILABLE, "start the multipart upload"):
            return str(self.s3().create_multipart_upload(Bucket=self.bucket, Key=key, **extra)["UploadId"])

    def presign_parts(self, key: str, upload_id: str, part_numbers: Iterable[int]) -> dict[int, str]:
        """A presigned PUT URL for each part number, valid MULTIPART_URL_EXPIRY_SECONDS."""
        expires = self.settings.multipart_url_expiry_seconds
        with unavailable_as(STORAGE_UNAVAILABLE, "sign the part uploads"):
            return {number: self.s3().generate_presigned_url(
                        "upload_part", ExpiresIn=expires,
                        Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": number})
                    for number in part_numbers}

    def received_parts(self, key: str, upload_id: str) -> list[ReceivedPart] | None:
        """The parts S3 holds for the upload, by part number; None when the upload is gone
        (completed or aborted)."""
        parts: list[ReceivedPart] = []
        try:
            pages = self.s3_parts().get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key,
                                                                         UploadId=upload_id)
            for page in pages:
                parts.extend(ReceivedPart(int(p["PartNumber"]), bare_etag(p["ETag"]), int(p["Size"]))
                             for p in page.get("Parts", []))
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and error_code(exc) == NO_SUCH_UPLOAD:
                return None
            raise TransientError("could not list the received parts", STORAGE_UNAVAILABLE, detail=str(exc)) from exc
        return sorted(parts, key=lambda part: part.number)

    def complete_multipart_upload(self, key: str, upload_id: str, parts: Iterable[tuple[int, str]]) -> None:
        """Join the (part number, ETag) parts into the object; MultipartRefused when S3 says no."""
        listed = [{"PartNumber": number, "ETag": f'"{bare_etag(etag)}"'} for number, etag in parts]
        try:
            self.s3_join().complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                MultipartUpload={"Parts": listed})
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and error_code(exc) in PART_LIST_REFUSALS:
                raise MultipartRefused(error_code(exc), str(exc)) from exc
            raise TransientError("could not complete the upload", STORAGE_UNAVAILABLE, detail=str(exc)) from exc

    def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        """Abort the upload and drop its parts; an upload already gone is fine."""
        try:
            self.s3().abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and error_code(exc) == NO_SUCH_UPLOAD:
                return
            raise TransientError("could not abort the upload", STORAGE_UNAVAILABLE, detail=str(exc)) from exc


def _chunks(body: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := body.read(READ_CHUNK):
            yield chunk
    except (BotoCoreError, OSError) as exc:
        raise TransientError("the upload stream broke", STORAGE_UNAVAILABLE, detail=str(exc)) from exc
    finally:
        body.close()


def _total_size(response: dict[str, Any]) -> int:
    """The object's size from a ranged GET's `Content-Range: bytes 0-n/SIZE` (the whole length
    when storage ignored the range and sent everything)."""
    content_range = str(response.get("ContentRange") or "")
    return int(content_range.rsplit("/", 1)[1]) if "/" in content_range else int(response["ContentLength"])


def _read_all(body: BinaryIO) -> bytes:
    try:
        return body.read()
    except (BotoCoreError, OSError) as exc:
        raise TransientError("the upload stream broke", STORAGE_UNAVAILABLE, detail=str(exc)) from exc
    finally:
        body.close()
