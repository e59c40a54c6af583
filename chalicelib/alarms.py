"""One timer thread for the whole process: what `threading.Timer` does, without a thread per timer.

The worker's calls have a deadline each (three per verification) and each job a first heartbeat
that most jobs end before; a thread started and stopped for each of them cost more CPU than the
verification's own JSON-RPC handling. What it does not do: run slow actions (they would delay the
others: an action that has work to do starts a thread of its own), or survive a fork.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable


class Alarms:
    """Calls each action at its time unless cancelled before, all on one thread (started on first
    use). The actions must be quick; a slow one delays the others."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Callable[[], None]]] = []  # a heap, soonest first
        self._pending: set[int] = set()
        self._cancelled: set[int] = set()
        self._numbers = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def set(self, seconds: float, action: Callable[[], None]) -> int:
        """Call `action` in `seconds`; the alarm's number, for `cancel`."""
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._ring, name="deadline-alarms", daemon=True)
                self._thread.start()
            number = next(self._numbers)
            self._pending.add(number)
            heapq.heappush(self._due, (time.monotonic() + seconds, number, action))
            if self._due[0][1] == number:
                self._changed.notify()
            return number

    def cancel(self, number: int) -> None:
        """The alarm will not ring (if it has not rung yet)."""
        with self._changed:
            if number in self._pending:
                self._cancelled.add(number)

    def _ring(self) -> None:
        with self._changed:
            while True:
                while self._due and self._due[0][1] in self._cancelled:
                    number = heapq.heappop(self._due)[1]
                    self._cancelled.discard(number)
                    self._pending.discard(number)
                if not self._due:
                    self._changed.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                _, number, action = heapq.heappop(self._due)
                self._pending.discard(number)
                self._changed.release()
                try:
                    action()
                except Exception:  # an alarm's failure must not stop the others
                    pass
                finally:
                    self._changed.acquire()


ALARMS = Alarms()
