"""The upload bucket: where files wait for their job, and how they are read back.

Object keys are generated here from the job id; a client's file name never reaches a key.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws import client
from chalicelib.config import Settings
from chalicelib.errors import PermanentError, TransientError

READ_CHUNK = 1024 * 1024


def object_key(settings: Settings, job_id: str, inline: bool = False) -> str:
    """Presigned uploads and inline files live under separate prefixes: only the first kind
    starts a job when it lands, so only that prefix is wired to the upload-events queue."""
    return f"{settings.inline_prefix if inline else settings.uploads_prefix}{job_id}"


def job_id_from_key(settings: Settings, key: str) -> str | None:
    """The job an uploaded object belongs to, or None for keys outside the uploads prefix."""
    if not key.startswith(settings.uploads_prefix):
        return None
    rest = key[len(settings.uploads_prefix):]
    return rest if rest and "/" not in rest else None


def put_object(settings: Settings, key: str, data: bytes, content_type: str) -> None:
    try:
        client("s3").put_object(Bucket=settings.upload_bucket, Key=key, Body=data, ContentType=content_type)
    except (BotoCoreError, ClientError) as exc:
        raise TransientError(f"could not store the upload: {exc}", "STORAGE_UNAVAILABLE") from exc


def stream_object(settings: Settings, key: str) -> tuple[int, Iterator[bytes]]:
    """Size and a chunk iterator of an object, read straight from S3 (never whole, never to disk)."""
    try:
        response = client("s3").get_object(Bucket=settings.upload_bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
            raise PermanentError(
                "the uploaded file is gone from storage (expired or deleted); submit the file again",
                "UPLOAD_MISSING",
            ) from exc
        raise TransientError(f"could not read the upload: {exc}", "STORAGE_UNAVAILABLE") from exc
    except BotoCoreError as exc:
        raise TransientError(f"could not read the upload: {exc}", "STORAGE_UNAVAILABLE") from exc
    body: BinaryIO = response["Body"]
    return int(response["ContentLength"]), _chunks(body)


def _chunks(body: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := body.read(READ_CHUNK):
            yield chunk
    except (BotoCoreError, OSError) as exc:
        raise TransientError(f"the upload stream broke: {exc}", "STORAGE_UNAVAILABLE") from exc
    finally:
        body.close()


def object_exists(settings: Settings, key: str) -> bool:
    try:
        client("s3").head_object(Bucket=settings.upload_bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
            return False
        raise


def delete_object(settings: Settings, key: str) -> None:
    client("s3").delete_object(Bucket=settings.upload_bucket, Key=key)


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    fields: dict[str, str]
    max_bytes: int
    expires_at: datetime


def presign_upload(settings: Settings, key: str, content_type: str | None) -> PresignedUpload:
    """A presigned POST whose policy pins the key and the size range, so S3 itself refuses the rest."""
    conditions: list = [["content-length-range", 1, settings.max_upload_bytes]]
    fields: dict[str, str] = {}
    if content_type:
        fields["Content-Type"] = content_type
        conditions.append({"Content-Type": content_type})
    expires = settings.upload_url_expiry_seconds
    post = client("s3").generate_presigned_post(
        Bucket=settings.upload_bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=expires
    )
    return PresignedUpload(
        url=post["url"],
        fields=post["fields"],
        max_bytes=settings.max_upload_bytes,
        expires_at=datetime.now(timezone.utc) + timedelta(seconds=expires),
    )
