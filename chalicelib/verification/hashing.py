"""SHA-256 of a file's bytes, computed while streaming so memory stays flat for any size."""
from __future__ import annotations

import hashlib
from typing import BinaryIO, Callable, Iterable, Union

CHUNK_SIZE = 1024 * 1024

ByteSource = Union[BinaryIO, Iterable[bytes]]


def _chunks(source: ByteSource, chunk_size: int) -> Iterable[bytes]:
    """Read a file-like object (local file, S3 StreamingBody, ...) or pass an iterable through."""
    if hasattr(source, "read"):
        while True:
            chunk = source.read(chunk_size)
            if not chunk:
                return
            yield chunk
    else:
        yield from source


def sha256_stream(
    source: ByteSource,
    on_bytes: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> str:
    """Return "0x" + lowercase hex SHA-256 of every byte of `source`.

    `on_bytes`, when given, is called after each chunk with the number of bytes hashed so far,
    so that callers can report progress on large uploads.
    """
    digest = hashlib.sha256()
    total = 0
    for chunk in _chunks(source, chunk_size):
        if isinstance(chunk, str):
            raise TypeError("sha256_stream hashes bytes, not str")
        digest.update(chunk)
        total += len(chunk)
        if on_bytes is not None:
            on_bytes(total)
    return "0x" + digest.hexdigest()
