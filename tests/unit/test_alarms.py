"""The deadlines' shared timer thread: alarms ring in time order, cancelled ones never."""
import threading

from chalicelib.alarms import Alarms


def test_alarms_ring_in_order_and_a_cancelled_one_never_rings():
    alarms, rang, last = Alarms(), [], threading.Event()
    alarms.set(0.2, lambda: rang.append("late"))
    cancelled = alarms.set(0.05, lambda: rang.append("cancelled"))
    alarms.set(0.1, lambda: rang.append("early"))
    alarms.set(0.3, last.set)
    alarms.cancel(cancelled)
    assert last.wait(10)
    assert rang == ["early", "late"]


def test_an_alarm_that_fails_does_not_stop_the_others():
    alarms, rang = Alarms(), threading.Event()

    def fail() -> None:
        raise OSError("socket already closed")

    alarms.set(0.01, fail)
    alarms.set(0.02, rang.set)
    assert rang.wait(10)


def test_one_thread_rings_every_alarm():
    alarms, threads, all_rang = Alarms(), set(), threading.Semaphore(0)

    def ring() -> None:
        threads.add(threading.current_thread().ident)
        all_rang.release()

    for i in range(50):
        alarms.set(0.001 * i, ring)
    for _ in range(50):
        assert all_rang.acquire(timeout=10)
    assert len(threads) == 1 and threading.get_ident() not in threads
