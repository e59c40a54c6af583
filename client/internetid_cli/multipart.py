"""Multipart uploads from the client's side: the parts sent in parallel, and resuming.

A file whose upload the API made multipart is remembered in a small state file (its job id and a
fingerprint: size, modification time and the SHA-256 of its first MiB). Run again on the same
unchanged file, the client asks the API which parts landed and sends only the rest. It does not
hash the whole file for the fingerprint (that would cost as long as the upload of a fast link),
so a change past the first MiB that keeps the size and the modification time goes unnoticed;
the verification's hash then tells.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HEAD_BYTES = 1024 * 1024
PARALLEL_PARTS = 4  # parts in flight, each streamed from the file
BLOCK_BYTES = 256 * 1024  # what a part in flight holds in memory at a time


@dataclass(frozen=True)
class Fingerprint:
    size: int
    mtime_ns: int
    head_sha256: str

    @classmethod
    def of(cls, path: Path) -> "Fingerprint":
        stat = path.stat()
        with path.open("rb") as handle:
            head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
        return cls(stat.st_size, stat.st_mtime_ns, head)


class ResumeState:
    """{"<api url> <absolute file path>": {"jobId", "size", "mtime_ns", "head_sha256"}} in one JSON
    file. A missing or unreadable file is an empty state: resuming is a convenience, never a must."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)

    @staticmethod
    def key(api_url: str, file: Path) -> str:
        return f"{api_url} {file.resolve()}"

    def job_for(self, api_url: str, file: Path, fingerprint: Fingerprint) -> str | None:
        """The job of an earlier, unfinished upload of this same unchanged file, if any."""
        entry = self._read().get(self.key(api_url, file))
        if not isinstance(entry, dict) or entry.get("jobId") is None:
            return None
        return entry["jobId"] if {k: entry.get(k) for k in asdict(fingerprint)} == asdict(fingerprint) else None

    def remember(self, api_url: str, file: Path, fingerprint: Fingerprint, job_id: str) -> None:
        data = self._read()
        data[self.key(api_url, file)] = {"jobId": job_id, **asdict(fingerprint)}
        self._write(data)

    def forget(self, api_url: str, file: Path) -> None:
        data = self._read()
        if data.pop(self.key(api_url, file), None) is not None:
            self._write(data)


def part_length(number: int, size: int, part_size: int) -> int:
    """Bytes in part `number` (from 1) of a `size`-byte file: every part but the last is whole."""
    return min(part_size, size - (number - 1) * part_size)


class FilePart:
    """One part of a file as a request body: `requests` sends it with its length as Content-Length
    and reads it block by block, so a part in flight holds one block in memory, not the part.
    `rewind` starts it over for a retried PUT. Not a general file view: no seek, tell or fileno
    (which `requests` would take for the whole file's size)."""

    def __init__(self, path: Path, number: int, part_size: int, size: int) -> None:
        self.number = number
        self.offset = (number - 1) * part_size
        self.length = part_length(number, size, part_size)
        self._handle = path.open("rb")
        self.rewind()

    def rewind(self) -> None:
        self._handle.seek(self.offset)
        self._left = self.length

    def read(self, size: int = -1) -> bytes:
        count = self._left if size is None or size < 0 else min(size, self._left)
        data = self._handle.read(count)
        self._left -= len(data)
        return data

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(BLOCK_BYTES):
            yield block

    def close(self) -> None:
        self._handle.close()


def send_parts(put_part: Callable[[str, FilePart], str], path: Path, parts: Iterable[Mapping[str, Any]],
               part_size: int, on_sent: Callable[[int], None], workers: int = PARALLEL_PARTS) -> dict[int, str]:
    """PUT each part (`{"partNumber", "url"}`) to its URL, `workers` at a time, streamed from the
    file; part number -> ETag. The first part that fails for good stops the rest (the parts sent
    stay, for a resume)."""
    size = path.stat().st_size

    def send(part: Mapping[str, Any]) -> tuple[int, str]:
        number = int(part["partNumber"])
        body = FilePart(path, number, part_size, size)
        try:
            etag = put_part(str(part["url"]), body)
        finally:
            body.close()
        on_sent(len(body))
        return number, etag

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(send, part) for part in parts]
        try:
            return dict(future.result() for future in futures)
        except BaseException:  # a part failed, or Ctrl-C: the parts not started yet are not sent
            pool.shutdown(wait=True, cancel_futures=True)
            raise
