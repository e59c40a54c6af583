"""sha256_stream equals hashlib on any input, reading in bounded chunks."""
import hashlib
import io
import os

import pytest

from chalicelib.verification.hashing import CHUNK_SIZE, sha256_stream


@pytest.mark.parametrize("size", [0, 1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 12345])
def test_file_like_matches_hashlib(size):
    data = os.urandom(size)
    assert sha256_stream(io.BytesIO(data)) == "0x" + hashlib.sha256(data).hexdigest()


def test_empty_input_is_the_empty_hash():
    expected = "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_stream(io.BytesIO(b"")) == expected
    assert sha256_stream([]) == expected


def test_iterable_of_chunks_matches_hashlib():
    chunks = [os.urandom(n) for n in (0, 7, 65536, 3, 2 * CHUNK_SIZE)]
    data = b"".join(chunks)
    assert sha256_stream(iter(chunks)) == "0x" + hashlib.sha256(data).hexdigest()
    assert sha256_stream([bytearray(c) for c in chunks]) == "0x" + hashlib.sha256(data).hexdigest()


def test_reads_in_bounded_chunks_and_reports_progress():
    data = os.urandom(2 * CHUNK_SIZE + 10)
    reads = []

    class Recording(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    seen = []
    result = sha256_stream(Recording(data), on_bytes=seen.append)
    assert result == "0x" + hashlib.sha256(data).hexdigest()
    assert all(0 < size <= CHUNK_SIZE for size in reads)  # never "read everything"
    assert seen == [CHUNK_SIZE, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 10]


def test_output_is_lowercase_0x_hex():
    digest = sha256_stream([b"abc"])
    assert digest.startswith("0x") and len(digest) == 66 and digest == digest.lower()


def test_text_is_refused():
    with pytest.raises(TypeError):
        sha256_stream(["not bytes"])
