"""One SQS ReceiveMessage on a deep queue in moto: moto's own retention check against the
linear one of ``devstack.moto_server``, in the same run.

    python -m tests.bench.bench_moto_receive [--messages 1000] [--count 10] [--rounds 20]

In-process, on moto's SQS backend objects (no HTTP, which is the same for both): a standard
queue holds ``--messages`` visible messages; each round receives ``--count`` of them (timed) and
makes them visible again (not timed), so every receive sees the same depth. Prints the median
and mean receive time of each variant and their ratio. No timing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from moto.sqs.models import SQSBackend

from devstack import moto_server

QUEUE_NAME = "bench-receive"


def receive_times(check: Callable, messages: int, count: int, rounds: int) -> list[float]:
    """Seconds per receive of ``count`` messages from a queue ``messages`` deep, with ``check``
    as the backend's retention check."""
    original = getattr(SQSBackend, moto_server.PATCHED_METHOD)
    setattr(SQSBackend, moto_server.PATCHED_METHOD, check)
    try:
        backend = SQSBackend("us-east-1", "123456789012")
        backend.create_queue(QUEUE_NAME)
        for number in range(messages):
            backend.send_message(QUEUE_NAME, f"message {number}")
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            received = backend.receive_message(QUEUE_NAME, count, 0, 30)
            times.append(time.perf_counter() - started)
            if len(received) != count:
                raise SystemExit(f"received {len(received)} messages, expected {count}")
            for message in received:
                backend.change_message_visibility(QUEUE_NAME, message.receipt_handle, 0)
        return times
    finally:
        setattr(SQSBackend, moto_server.PATCHED_METHOD, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="queue depth")
    parser.add_argument("--count", type=int, default=10, help="MaxNumberOfMessages per receive")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    moto_server.check_shape()
    figures = {}
    for name, check in (("moto's own", getattr(SQSBackend, moto_server.PATCHED_METHOD)),
                        ("devstack.moto_server", moto_server.retention_check_linear)):
        times = receive_times(check, args.messages, args.count, args.rounds)
        figures[name] = statistics.median(times)
        print(f"  {name:<22} median {figures[name] * 1000:8.3f} ms   mean {statistics.mean(times) * 1000:8.3f} ms")
    ratio = figures["moto's own"] / figures["devstack.moto_server"]
    print(f"ReceiveMessage of {args.count} from a queue {args.messages} deep, {args.rounds} rounds: "
          f"moto's own / patched = {ratio:.1f}x (medians)")


if __name__ == "__main__":
    main()
