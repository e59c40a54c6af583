"""`python -m devstack.moto_server -H HOST -p PORT`: moto's own server, its SQS sends and receives
no longer quadratic in the queue's depth.

Why: in the pipeline benchmark's backlog (a few hundred messages) 63% of the moto server's CPU
went to ``Queue.attributes`` (py-spy, moto 5.2.5). That builds every attribute, including the
ApproximateNumberOf* counts, which walk every message of the queue reading the clock once or
twice per message. moto builds it up to three times per message a receive hands out (the
retention check, 43%) and once per send (to read ``ContentBasedDeduplication``, 22%).
``tests/bench/bench_moto_receive.py``, 1,000 messages queued: a receive of 10 took 0.7-0.97 s,
a send 23-25 ms.

What it patches, before moto's ``moto.server.main`` runs:
- ``SQSBackend.is_message_valid_based_on_retention_period`` reads the queue's own
  ``message_retention_period`` field (the value the attribute reports) instead of building the
  attribute dict: an expired message is still withheld exactly as moto withholds it.
- ``Queue.messages`` and ``Queue.approximate_number_of_messages_delayed`` / ``_not_visible``
  make moto's own tests (``Message.visible``: now > visible_at; ``Message.delayed``:
  now < delayed_until) on one clock reading per call instead of one per message. They stay O(n),
  but a comparison each, so the attribute dict a send builds is cheap again.

Guarded: ``patch()`` checks that moto still has each part with the shape replaced (the method's
parameters, that it reads ``MessageRetentionPeriod`` through ``get_queue_attributes`` and that
``receive_message`` calls it; that the properties read the fields and tests named in
``QUEUE_PROPERTIES`` and ``MESSAGE_TESTS``; that a queue's field equals its attribute); else it
raises ``MotoPatchError`` naming the moto version, patches nothing, and the server does not start.

What it does not do: nothing else of moto changes (a send still builds the attribute dict, a
receive still lists the visible messages first, deletes still scan the queue: all linear). The
lists are taken at one instant instead of over the microseconds of a walk. Not for AWS: only the
local stack runs this.
"""
from __future__ import annotations

import inspect
import sys
from types import CodeType

import moto
from moto.core.utils import unix_time, unix_time_millis
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


# moto's Message.visible is `now > visible_at` and Message.delayed `now < delayed_until`, each
# reading the clock; the queue's lists and counts below make the same tests on one reading.

def visible_messages(queue: Queue) -> list[Message]:
    """moto's ``Queue.messages``: the messages visible and not delayed."""
    now = unix_time_millis()
    return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]


def delayed_count(queue: Queue) -> int:
    """moto's ``Queue.approximate_number_of_messages_delayed``."""
    now = unix_time_millis()
    return sum(1 for m in queue._messages if now < m.delayed_until)


def not_visible_count(queue: Queue) -> int:
    """moto's ``Queue.approximate_number_of_messages_not_visible``."""
    now = unix_time_millis()
    return sum(1 for m in queue._messages if not now > m.visible_at)


# Queue property -> (its replacement, the names moto's own getter must read to be the same thing)
QUEUE_PROPERTIES: dict[str, tuple[property, set[str]]] = {
    "messages": (property(visible_messages), {"_messages", "visible", "delayed"}),
    "approximate_number_of_messages_delayed": (property(delayed_count), {"_messages", "delayed"}),
    "approximate_number_of_messages_not_visible": (property(not_visible_count), {"_messages", "visible"}),
}
MESSAGE_TESTS = {"visible": "visible_at", "delayed": "delayed_until"}  # Message property -> field it compares
# (class, attribute, what patch() puts there)
REPLACEMENTS: list[tuple[type, str, object]] = [
    (SQSBackend, PATCHED_METHOD, retention_check_linear),
    *((Queue, name, replacement) for name, (replacement, _) in QUEUE_PROPERTIES.items()),
]


def _fail(reason: str) -> MotoPatchError:
    return MotoPatchError(f"devstack.moto_server: moto {moto.__version__} {reason}; "
                          f"this patch was written for moto 5.2.5's SQS ({__name__})")


def _names(code: CodeType) -> set[str]:
    """The attribute and global names a function reads, its comprehensions' included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names(const)
    return names


def _getter_names(owner: type, name: str) -> set[str] | None:
    """What the getter of ``owner.name`` reads, or None when it is not a property."""
    found = owner.__dict__.get(name)
    return _names(found.fget.__code__) if isinstance(found, property) else None


def check_shape() -> None:
    """Raise unless moto's SQS is what the replacements stand in for (replaced parts pass)."""
    original = getattr(SQSBackend, PATCHED_METHOD, None)
    if original is None:
        raise _fail(f"has no SQSBackend.{PATCHED_METHOD}")
    if original is not retention_check_linear:
        if list(inspect.signature(original).parameters) != EXPECTED_PARAMETERS:
            raise _fail(f"changed SQSBackend.{PATCHED_METHOD}'s parameters to {inspect.signature(original)}")
        code = original.__code__
        if "get_queue_attributes" not in code.co_names or "MessageRetentionPeriod" not in code.co_consts:
            raise _fail(f"no longer reads MessageRetentionPeriod through get_queue_attributes in {PATCHED_METHOD}")
        if PATCHED_METHOD not in SQSBackend.receive_message.__code__.co_names:
            raise _fail(f"no longer calls {PATCHED_METHOD} from SQSBackend.receive_message")
    for name, (replacement, reads) in QUEUE_PROPERTIES.items():
        if Queue.__dict__.get(name) is not replacement and not reads <= (_getter_names(Queue, name) or set()):
            raise _fail(f"changed Queue.{name} (expected a property reading {', '.join(sorted(reads))})")
    for name, field in MESSAGE_TESTS.items():
        if not {field, "unix_time_millis"} <= (_getter_names(Message, name) or set()):
            raise _fail(f"changed Message.{name} (expected a property comparing the clock with {field})")
    probe = Queue("moto-server-patch-probe", "us-east-1", "123456789012", MessageRetentionPeriod="60")
    if getattr(probe, "message_retention_period", None) != probe.attributes.get("MessageRetentionPeriod"):
        raise _fail("reports a MessageRetentionPeriod other than Queue.message_retention_period")


def patch() -> None:
    """Put the replacements in place (idempotent), or raise ``MotoPatchError`` and change nothing."""
    check_shape()
    for owner, name, replacement in REPLACEMENTS:
        setattr(owner, name, replacement)


def main(argv: list[str] | None = None) -> None:
    """Patch, then run moto's own server with the same arguments as ``python -m moto.server``."""
    patch()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
