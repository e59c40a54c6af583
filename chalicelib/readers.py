"""Byte streams read ahead of their consumer on threads, in order and within a bound: what lets
the worker's reads from storage overlap its hashing. They know nothing of S3; what they do not do
is retry a failed read (the error comes out where it happened, for the job's retry to decide).
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, Callable, Iterator


def read_ahead(chunks: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """The chunks in order, read by a thread of their own into a queue of at most `depth`: the
    socket's reads (which let go of the GIL) overlap the consumer's hashing (which does too), so the
    pace is the slower of the two rather than their sum. A read error comes out where it happened;
    a consumer that stops early stops the reader."""
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stopping = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stopping.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))
            return
        put(("end", None))

    reader = threading.Thread(target=read, name="s3-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stopping.set()
        reader.join()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def in_order(head: bytes, ranges: list[tuple[int, int]], read: Callable[[tuple[int, int]], bytes],
              parallel: int) -> Iterator[bytes]:
    """`head`, then each range's bytes in order, with at most `parallel` ranges read ahead. A
    consumer that stops early (a cancelled job) stops the reads not started yet."""
    yield head
    if not ranges:
        return
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="s3-range")
    pending: deque[Future[bytes]] = deque()
    try:
        upcoming = iter(ranges)
        for byte_range in islice(upcoming, parallel):
            pending.append(pool.submit(read, byte_range))
        while pending:
            data = pending.popleft().result()
            next_range = next(upcoming, None)
            if next_range is not None:
                pending.append(pool.submit(read, next_range))
            yield data
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
