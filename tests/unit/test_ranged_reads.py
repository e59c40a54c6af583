"""The worker's read of an upload: ranged GETs in parallel, bytes handed on in order, at most
READ_PARALLEL_RANGES ranges held ahead of the hash, the reads stopped when the reader stops."""
from __future__ import annotations

import hashlib
import os
import threading

import pytest

from chalicelib.errors import TransientError
from chalicelib.readers import in_order, read_ahead
from chalicelib.storage import Storage
from chalicelib.verification import sha256_stream

from tests.unit.conftest import make_settings


def test_an_object_read_in_ranges_hashes_like_hashlib(aws):
    data = os.urandom(10_500)
    storage = Storage(make_settings(aws, READ_RANGE_BYTES="1000", READ_PARALLEL_RANGES="3"), aws.s3)
    storage.put_object("uploads/r", data, "application/octet-stream")
    seconds: list[float] = []
    size, chunks = storage.stream_object("uploads/r", seconds)
    assert size == len(data)
    assert sha256_stream(chunks) == "0x" + hashlib.sha256(data).hexdigest()
    assert len(seconds) == 11  # the first range, then ten more


def test_an_object_smaller_than_a_range_is_one_get(aws):
    storage = Storage(make_settings(aws, READ_PARALLEL_RANGES="4"), aws.s3)
    storage.put_object("uploads/s", b"small", "text/plain")
    seconds: list[float] = []
    size, chunks = storage.stream_object("uploads/s", seconds)
    assert (size, b"".join(chunks), len(seconds)) == (5, b"small", 1)


class Reads:
    """A stand-in for the ranged GETs that records how far they ran ahead of the consumer."""

    def __init__(self) -> None:
        self.started, self.consumed, self.most_ahead = 0, 0, 0
        self.lock = threading.Lock()

    def read(self, byte_range: tuple[int, int]) -> bytes:
        with self.lock:
            self.started += 1
            self.most_ahead = max(self.most_ahead, self.started - self.consumed)
        return bytes([byte_range[0] % 256]) * (byte_range[1] - byte_range[0] + 1)


def test_one_streamed_get_by_default(aws):
    storage = Storage(make_settings(aws), aws.s3)
    storage.put_object("uploads/t", b"x" * 3000, "text/plain")
    seconds: list[float] = []
    size, chunks = storage.stream_object("uploads/t", seconds)
    assert (size, b"".join(chunks), seconds) == (3000, b"x" * 3000, [])


def test_ranges_come_in_order_with_a_bounded_read_ahead():
    reads, ranges = Reads(), [(i * 10, i * 10 + 9) for i in range(1, 50)]
    out = []
    for chunk in in_order(b"h", ranges, reads.read, parallel=3):
        out.append(chunk)
        reads.consumed += 1 if len(out) > 1 else 0
    assert out == [b"h"] + [bytes([start % 256]) * 10 for start, _ in ranges]
    assert reads.most_ahead <= 4  # three in flight, plus the one handed on


def test_a_reader_that_stops_stops_the_reads():
    reads, ranges = Reads(), [(i * 10, i * 10 + 9) for i in range(1, 1000)]
    chunks = in_order(b"h", ranges, reads.read, parallel=2)
    next(chunks), next(chunks)
    chunks.close()
    assert reads.started <= 4


class Source:
    """A chunk iterator that counts what was read from it and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at, self.read, self.closed = count, fail_at, 0, False

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.read == self.fail_at:
            raise TransientError("the upload stream broke", "STORAGE_UNAVAILABLE")
        if self.read == self.count:
            raise StopIteration
        self.read += 1
        return bytes([self.read % 256]) * 100

    def close(self) -> None:
        self.closed = True


def test_a_streamed_get_is_read_ahead_in_order_and_bounded():
    source = Source(500)
    chunks = read_ahead(source, depth=3)
    assert next(chunks) == bytes([1]) * 100
    wait_for = threading.Event()
    wait_for.wait(0.2)  # let the reader run as far ahead as it may (what is asserted is a bound, not a time)
    assert source.read <= 1 + 3 + 1  # the one handed on, the queue, the one waiting to go in
    assert [c[0] for c in chunks] == [i % 256 for i in range(2, 501)]
    assert source.closed


def test_a_read_error_comes_out_of_the_read_ahead_and_a_stop_stops_the_reader():
    with pytest.raises(TransientError):
        list(read_ahead(Source(500, fail_at=7), depth=2))
    source = Source(10_000)
    chunks = read_ahead(source, depth=2)
    next(chunks)
    chunks.close()
    assert source.closed and source.read <= 1 + 2 + 1
