"""devstack.moto_server: the linear retention check keeps moto's semantics, and its guard
refuses a moto that is not the shape it patches.

In-process on moto's own SQS backend objects. Each test puts the patch in place with
``monkeypatch``, so the other tests of this process keep moto as it ships. Expiry is reached by
moving a message's sent timestamp back past the queue's retention period (60 s, the SQS
minimum): the clock the check reads is moto's own.
"""
from __future__ import annotations

import moto.sqs.models
import pytest
from moto.sqs.models import Message, Queue, SQSBackend

from devstack import moto_server

RETENTION_SECONDS = 60


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the test patches of moto is undone after it."""
    for owner, name, _ in moto_server.REPLACEMENTS:
        monkeypatch.setattr(owner, name, owner.__dict__[name])


@pytest.fixture
def patched(restored: None) -> SQSBackend:
    """A fresh SQS backend with the patch in place (undone after the test)."""
    moto_server.patch()
    return SQSBackend("us-east-1", "123456789012")


def _queue_with(backend: SQSBackend, *ages_seconds: float) -> str:
    """A queue of RETENTION_SECONDS holding one message per age (sent that long ago), oldest first."""
    name = "retention-probe"
    backend.create_queue(name, MessageRetentionPeriod=str(RETENTION_SECONDS))
    for age in ages_seconds:
        message = backend.send_message(name, f"aged {age}")
        message.sent_timestamp -= int(age * 1000)
    return name


def _received(backend: SQSBackend, queue_name: str) -> list[str]:
    return [m.body for m in backend.receive_message(queue_name, 10, 0, 30)]


def test_patch_replaces_the_check_and_the_queue_lists(restored: None):
    assert all(owner.__dict__[name] is not replacement for owner, name, replacement in moto_server.REPLACEMENTS)
    moto_server.patch()
    moto_server.patch()  # idempotent
    assert all(owner.__dict__[name] is replacement for owner, name, replacement in moto_server.REPLACEMENTS)


def test_a_message_past_the_retention_period_is_not_received(patched: SQSBackend):
    queue_name = _queue_with(patched, RETENTION_SECONDS + 1)
    assert _received(patched, queue_name) == []


def test_a_message_within_the_retention_period_is_received(patched: SQSBackend):
    queue_name = _queue_with(patched, RETENTION_SECONDS - 5)
    assert _received(patched, queue_name) == [f"aged {RETENTION_SECONDS - 5}"]


def test_receive_stops_at_an_expired_message_as_moto_does(patched: SQSBackend):
    """moto hands out the messages before the first expired one it meets, and stops there."""
    queue_name = _queue_with(patched, 1, RETENTION_SECONDS + 1, 2)
    assert _received(patched, queue_name) == ["aged 1"]


@pytest.mark.parametrize("age", [0, RETENTION_SECONDS - 1, RETENTION_SECONDS, RETENTION_SECONDS + 1, 600])
def test_same_answer_as_moto_for_each_age(age: int, monkeypatch: pytest.MonkeyPatch):
    """On one frozen clock (for both checks), so that the boundary itself is compared."""
    now = 1_800_000_000.0
    monkeypatch.setattr(moto.sqs.models, "unix_time", lambda: now)
    monkeypatch.setattr(moto_server, "unix_time", lambda: now)
    backend = SQSBackend("us-east-1", "123456789012")
    queue_name = _queue_with(backend)
    message = backend.send_message(queue_name, "probe")
    message.sent_timestamp = int((now - age) * 1000)
    moto_answer = getattr(SQSBackend, moto_server.PATCHED_METHOD)(backend, queue_name, message)
    assert moto_server.retention_check_linear(backend, queue_name, message) is moto_answer
    assert moto_answer is (age < RETENTION_SECONDS)


def test_receive_does_not_build_the_attribute_dict(patched: SQSBackend, monkeypatch: pytest.MonkeyPatch):
    """The O(n) part of moto's check is ``Queue.attributes`` (it counts every message): the
    patched receive must not touch it."""
    queue_name = _queue_with(patched, *[0] * 20)

    def attributes_refused(queue: Queue) -> dict:
        raise AssertionError("receive built Queue.attributes")

    monkeypatch.setattr(Queue, "attributes", property(attributes_refused))
    assert len(_received(patched, queue_name)) == 10


def test_queue_lists_and_counts_as_moto_makes_them(monkeypatch: pytest.MonkeyPatch):
    """Messages visible and delayed until just before, at and just after a frozen instant: the
    replacements sort each the way moto's own properties do."""
    now = 1_800_000_000_000.0
    monkeypatch.setattr(moto.sqs.models, "unix_time_millis", lambda: now)
    monkeypatch.setattr(moto_server, "unix_time_millis", lambda: now)
    backend = SQSBackend("us-east-1", "123456789012")
    queue_name = _queue_with(backend)
    for visible_at in (now - 1, now, now + 1):
        for delayed_until in (now - 1, now, now + 1):
            message = backend.send_message(queue_name, f"visible {visible_at - now:+} delayed {delayed_until - now:+}")
            message.visible_at, message.delayed_until = visible_at, delayed_until
    queue = backend.get_queue(queue_name)
    for name, (replacement, _) in moto_server.QUEUE_PROPERTIES.items():
        assert replacement.fget(queue) == Queue.__dict__[name].fget(queue), name
    assert [m.body for m in moto_server.visible_messages(queue)] == ["visible -1.0 delayed -1.0", "visible -1.0 delayed +0.0"]


def test_receive_and_send_do_not_read_the_clock_per_message(patched: SQSBackend, monkeypatch: pytest.MonkeyPatch):
    """moto's own lists read it twice per message queued, for every send and receive."""
    queue_name = _queue_with(patched, *[0] * 50)
    reads = []
    monkeypatch.setattr(moto.sqs.models, "unix_time_millis", lambda: reads.append(1) or 1e15)
    monkeypatch.setattr(moto_server, "unix_time_millis", lambda: reads.append(1) or 1e15)
    patched.send_message(queue_name, "one more")
    patched.receive_message(queue_name, 10, 0, 30)
    assert len(reads) < 50


def test_the_guard_refuses_a_changed_queue_list(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Queue, "messages", property(lambda queue: list(queue._messages)))
    with pytest.raises(moto_server.MotoPatchError, match=r"changed Queue.messages"):
        moto_server.patch()


def test_the_guard_refuses_a_changed_message_test(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Message, "visible", property(lambda message: message.receipt_handle is None))
    with pytest.raises(moto_server.MotoPatchError, match=r"changed Message.visible"):
        moto_server.patch()


def test_the_guard_refuses_a_changed_signature(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(SQSBackend, moto_server.PATCHED_METHOD, lambda self, queue_name, message, now=None: True)
    with pytest.raises(moto_server.MotoPatchError, match=r"moto \d+\.\d+\.\d+.*parameters"):
        moto_server.patch()


def test_the_guard_refuses_a_missing_method(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delattr(SQSBackend, moto_server.PATCHED_METHOD)
    with pytest.raises(moto_server.MotoPatchError, match=r"moto \d+\.\d+\.\d+ has no"):
        moto_server.patch()


def test_the_guard_refuses_a_check_that_no_longer_reads_the_attribute(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(SQSBackend, moto_server.PATCHED_METHOD, lambda self, queue_name, message: True)
    with pytest.raises(moto_server.MotoPatchError, match="no longer reads MessageRetentionPeriod"):
        moto_server.patch()


def test_the_guard_refuses_a_receive_that_no_longer_calls_the_check(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(SQSBackend, "receive_message", lambda self, *args, **kwargs: [])
    with pytest.raises(moto_server.MotoPatchError, match="no longer calls"):
        moto_server.patch()


def test_the_guard_refuses_a_queue_whose_field_is_not_the_attribute(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Queue, "attributes", property(lambda queue: {"MessageRetentionPeriod": "elsewhere"}))
    with pytest.raises(moto_server.MotoPatchError, match="other than Queue.message_retention_period"):
        moto_server.patch()
