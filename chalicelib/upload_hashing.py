"""The worker's read of an upload: SHA-256 of the stored object, with what the logs need to tell
where a slow read spent its time (storage's first byte, the hashing pace, the ranged GETs, each
part of a large file)."""
from __future__ import annotations

import time
from statistics import median
from typing import Iterator

from chalicelib.jobs import Job
from chalicelib.storage import Storage
from chalicelib.telemetry import logger
from chalicelib.verification import sha256_stream

# The log says how long each part of an upload took to read and hash: its multipart part size, or
# for a presigned POST this many bytes (the default part size).
HASH_LOG_PART_BYTES = 64 * 1024 * 1024


def hash_upload(storage: Storage, job: Job) -> str:
    """SHA-256 of the stored upload, read in parallel ranges and hashed in order; logs how long
    storage took to answer, how fast the bytes were hashed once they flowed (the worker's own
    throughput), how long the ranged GETs took (median and slowest), and for a file of several
    parts how long each part took to read and hash, so that a slow stretch shows where it was."""
    requested = time.monotonic()
    part_seconds: list[float] = []
    size, chunks = storage.stream_object(job.object_key, part_seconds)
    first_byte: list[float] = []
    part_bytes = job.upload_part_size or HASH_LOG_PART_BYTES

    def timed(stream: Iterator[bytes]) -> Iterator[bytes]:
        done, part_started = 0, time.monotonic()
        for chunk in stream:
            if not first_byte:
                first_byte.append(time.monotonic())
            yield chunk
            done += len(chunk)
            if size > part_bytes and (done // part_bytes > (done - len(chunk)) // part_bytes or done == size):
                now = time.monotonic()
                logger.info("upload part hashed", extra={
                    "job_id": job.id, "part": -(-done // part_bytes) if done == size else done // part_bytes,
                    "bytes_done": done, "bytes": size,
                    "seconds": now - part_started})
                part_started = now

    file_hash = sha256_stream(timed(chunks))
    done = time.monotonic()
    streaming = done - (first_byte[0] if first_byte else requested)
    logger.info("upload hashed", extra={
        "job_id": job.id, "bytes": size, "seconds": done - requested,
        "first_byte_seconds": (first_byte[0] if first_byte else done) - requested,
        "mib_per_s": size / (1024 * 1024) / streaming if streaming > 0 else None,
        "ranges": len(part_seconds), "range_seconds_median": median(part_seconds) if part_seconds else None,
        "range_seconds_max": max(part_seconds, default=None),
    })
    return file_hash
