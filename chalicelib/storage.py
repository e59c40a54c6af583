"""The S3 adapter for the upload bucket: where files wait for their job, and how they are read back.

Every botocore failure comes out as TransientError(STORAGE_UNAVAILABLE), a missing object as
PermanentError(UPLOAD_MISSING). Object keys are generated here from the job id; a client's file
name never reaches a key.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws import NOT_FOUND_CODES, LazyClient, error_code, unavailable_as
from chalicelib.config import Settings
from chalicelib.errors import PermanentError, TransientError
from chalicelib.vocabulary import STORAGE_UNAVAILABLE, UPLOAD_MISSING

READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    fields: dict[str, str]
    max_bytes: int
    expires_at: datetime


class Storage:
    def __init__(self, settings: Settings, s3: Any = None) -> None:
        self.settings = settings
        self.s3 = LazyClient("s3", s3)
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

    def _found(self, what: str, method: str, key: str) -> Any | None:
        """The answer of S3's `method` for the object, or None when the object does not exist."""
        try:
            return getattr(self.s3(), method)(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and error_code(exc) in NOT_FOUND_CODES:
                return None
            raise TransientError(f"could not {what}", STORAGE_UNAVAILABLE, detail=str(exc)) from exc

    def stream_object(self, key: str) -> tuple[int, Iterator[bytes]]:
        """Size and a chunk iterator of an object, read straight from S3 (never whole, never to disk)."""
        response = self._found("read the upload", "get_object", key)
        if response is None:
            raise PermanentError(
                "the uploaded file is gone from storage (expired or deleted); submit the file again",
                UPLOAD_MISSING,
            )
        return int(response["ContentLength"]), _chunks(response["Body"])

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


def _chunks(body: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := body.read(READ_CHUNK):
            yield chunk
    except (BotoCoreError, OSError) as exc:
        raise TransientError("the upload stream broke", STORAGE_UNAVAILABLE, detail=str(exc)) from exc
    finally:
        body.close()
