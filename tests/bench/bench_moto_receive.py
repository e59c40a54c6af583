"""SQS SendMessage and ReceiveMessage on a deep queue in moto: moto as it ships against moto
with ``devstack.moto_server``'s replacements (what the local stack runs), in the same run.

    python -m tests.bench.bench_moto_receive [--messages 1000] [--count 10] [--rounds 20]

In-process, on moto's SQS backend objects (no HTTP, which is the same for both): a standard
queue holds ``--messages`` visible messages; each round times one send, then one receive of
``--count`` messages, and makes those visible again (not timed), so every receive sees the same
depth (plus one message per round). Prints the median and mean of each and the ratios of the
medians. No timing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from moto.sqs.models import SQSBackend

from devstack import moto_server

QUEUE_NAME = "bench-receive"


@contextmanager
def moto_variant(patched: bool) -> Iterator[None]:
    """moto as it ships, or with the replacements; as it ships again afterwards."""
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in moto_server.REPLACEMENTS]
    if patched:
        moto_server.patch()
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def send_and_receive_times(messages: int, count: int, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds per send and per receive of ``count`` messages, from a queue ``messages`` deep."""
    backend = SQSBackend("us-east-1", "123456789012")
    backend.create_queue(QUEUE_NAME)
    for number in range(messages):
        backend.send_message(QUEUE_NAME, f"message {number}")
    sends, receives = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        backend.send_message(QUEUE_NAME, "one more")
        sends.append(time.perf_counter() - started)
        started = time.perf_counter()
        received = backend.receive_message(QUEUE_NAME, count, 0, 30)
        receives.append(time.perf_counter() - started)
        if len(received) != count:
            raise SystemExit(f"received {len(received)} messages, expected {count}")
        for message in received:
            backend.change_message_visibility(QUEUE_NAME, message.receipt_handle, 0)
    return sends, receives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="queue depth")
    parser.add_argument("--count", type=int, default=10, help="MaxNumberOfMessages per receive")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    moto_server.check_shape()
    medians: dict[tuple[str, str], float] = {}
    print(f"queue {args.messages} deep, {args.rounds} rounds, receives of {args.count}:")
    for variant, patched in (("moto as it ships", False), ("devstack.moto_server", True)):
        with moto_variant(patched):
            times = dict(zip(("SendMessage", "ReceiveMessage"),
                             send_and_receive_times(args.messages, args.count, args.rounds)))
        for action, seconds in times.items():
            medians[variant, action] = statistics.median(seconds)
            print(f"  {variant:<22} {action:<15} median {medians[variant, action] * 1000:8.3f} ms"
                  f"   mean {statistics.mean(seconds) * 1000:8.3f} ms")
    for action in ("SendMessage", "ReceiveMessage"):
        ratio = medians["moto as it ships", action] / medians["devstack.moto_server", action]
        print(f"{action}: moto as it ships / devstack.moto_server = {ratio:.1f}x (medians)")


if __name__ == "__main__":
    main()
