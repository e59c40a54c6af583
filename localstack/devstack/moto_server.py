"""`python -m devstack.moto_server -H HOST -p PORT`: moto's own server, with its SQS receive made linear.

What it patches: ``SQSBackend.is_message_valid_based_on_retention_period``. moto's
``receive_message`` calls it for every message it hands out, and moto's version reads the
retention period through ``get_queue_attributes``, which builds ``Queue.attributes`` up to three
times; that counts every message of the queue (the ApproximateNumberOf* attributes, a clock read
per message). So receiving k messages from a queue n deep costs O(k·n), and draining a backlog
O(n²): 43% of the moto server's CPU in the pipeline benchmark with a backlog of a few hundred
messages (py-spy, moto 5.2.5), and 0.78–0.97 s against 0.017–0.022 s for a receive of 10 from
1,000 (``tests/bench/bench_moto_receive.py``, two runs). The replacement reads the queue's own
``message_retention_period`` field, the value that attribute reports, so an expired message is
still withheld exactly as moto withholds it.

Guarded: ``patch()`` checks that moto still has the method with the same parameters, that its
body still reads ``MessageRetentionPeriod`` through ``get_queue_attributes``, that
``receive_message`` still calls it, and that a queue's field equals its attribute; otherwise it
raises ``MotoPatchError`` naming the moto version, and the server does not start.

What it does not do: it changes nothing else of moto. ``send_message`` still builds
``Queue.attributes`` once per message, to read ``ContentBasedDeduplication`` (O(n) per send,
22% of the server's CPU in the same profile): that line sits in the middle of moto's
``send_message`` and only a copy of the whole method could change it. A receive stays O(n), since
moto lists the visible messages (two clock reads each) before it takes any, and
``GetQueueAttributes`` stays O(n), as its counts are what it is asked for. Not for AWS: only the
local stack runs this.
"""
from __future__ import annotations

import inspect
import sys

import moto
from moto.core.utils import unix_time
from moto.sqs.models import Message, Queue, SQSBackend

PATCHED_METHOD = "is_message_valid_based_on_retention_period"
EXPECTED_PARAMETERS = ["self", "queue_name", "message"]


class MotoPatchError(RuntimeError):
    """moto is not the shape this module patches: run without it only after reading why."""


def retention_check_linear(self: SQSBackend, queue_name: str, message: Message) -> bool:
    """moto's check, with the retention period read from the queue's field instead of from
    the queue's whole attribute dict (the same number, without counting every message)."""
    retention_period = self.get_queue(queue_name).message_retention_period
    retain_until = retention_period + message.sent_timestamp / 1000
    return retain_until > unix_time()


def _fail(reason: str) -> MotoPatchError:
    return MotoPatchError(f"devstack.moto_server: moto {moto.__version__} {reason}; "
                          f"this patch was written for moto 5.2.5's SQS ({__name__})")


def check_shape() -> None:
    """Raise unless moto's SQS is what the replacement stands in for."""
    original = getattr(SQSBackend, PATCHED_METHOD, None)
    if original is None:
        raise _fail(f"has no SQSBackend.{PATCHED_METHOD}")
    if original is retention_check_linear:
        return
    if list(inspect.signature(original).parameters) != EXPECTED_PARAMETERS:
        raise _fail(f"changed SQSBackend.{PATCHED_METHOD}'s parameters to {inspect.signature(original)}")
    code = original.__code__
    if "get_queue_attributes" not in code.co_names or "MessageRetentionPeriod" not in code.co_consts:
        raise _fail(f"no longer reads MessageRetentionPeriod through get_queue_attributes in {PATCHED_METHOD}")
    if PATCHED_METHOD not in SQSBackend.receive_message.__code__.co_names:
        raise _fail(f"no longer calls {PATCHED_METHOD} from SQSBackend.receive_message")
    probe = Queue("moto-server-patch-probe", "us-east-1", "123456789012", MessageRetentionPeriod="60")
    if getattr(probe, "message_retention_period", None) != probe.attributes.get("MessageRetentionPeriod"):
        raise _fail("reports a MessageRetentionPeriod other than Queue.message_retention_period")


def patch() -> None:
    """Put the linear retention check in place (idempotent), or raise ``MotoPatchError``."""
    check_shape()
    setattr(SQSBackend, PATCHED_METHOD, retention_check_linear)


def main(argv: list[str] | None = None) -> None:
    """Patch, then run moto's own server with the same arguments as ``python -m moto.server``."""
    patch()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
