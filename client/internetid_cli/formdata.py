"""A multipart/form-data body that streams its file from disk.

Files sent to storage can be 1 GiB, so the body is never built in memory: the text parts are
small and prepared up front, the file is read chunk by chunk while the request is being sent,
and the total length is computed beforehand so that the request carries a Content-Length
(S3's POST upload refuses chunked transfer encoding).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

CHUNK_SIZE = 1024 * 1024


def _quote(value: str) -> str:
    """A header parameter value as browsers send it: quotes and line breaks escaped."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class StreamingForm:
    """Text fields first, then one file part read from disk as the body is iterated.

    Requests sends an object with `__len__` and `__iter__` as a streamed body with that
    Content-Length. Iterating again starts over (and reopens the file), so a retry can resend it.
    `on_read(n)` is called after each file chunk goes out, for progress bars.
    """

    def __init__(
        self,
        fields: Mapping[str, str],
        path: str | os.PathLike[str],
        *,
        file_field: str = "file",
        filename: str | None = None,
        file_content_type: str = "application/octet-stream",
        on_read: Callable[[int], None] | None = None,
        chunk_size: int = CHUNK_SIZE,
        boundary: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.file_size = self.path.stat().st_size
        self.boundary = boundary or f"internetid-{uuid.uuid4().hex}"
        self.on_read = on_read
        self.chunk_size = chunk_size
        self._head = self._encode_head(fields, file_field, filename or self.path.name, file_content_type)
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()

    def _encode_head(self, fields: Mapping[str, str], file_field: str, filename: str, content_type: str) -> bytes:
        parts = []
        for name, value in fields.items():
            parts.append(
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'
                f"{value}\r\n"
            )
        parts.append(
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote(file_field)}"; filename="{_quote(filename)}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        return "".join(parts).encode("utf-8")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self.file_size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        sent = 0
        with self.path.open("rb") as handle:
            while chunk := handle.read(self.chunk_size):
                sent += len(chunk)
                yield chunk
                if self.on_read:
                    self.on_read(len(chunk))
        if sent != self.file_size:
            # The declared Content-Length would be wrong: better to fail than to send a torn body.
            raise OSError(f"{self.path} changed size while being sent ({self.file_size} -> {sent} bytes)")
        yield self._tail
