"""Progress bars on stderr, so stdout stays clean for the result (and `--json` output)."""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class UploadBar:
    """Bytes sent. `callback` is handed to the streaming form; `restart` rewinds on a retry."""

    def __init__(self, total: int, description: str, quiet: bool) -> None:
        self._bar = tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                         file=sys.stderr, disable=quiet, dynamic_ncols=True, leave=True)

    def callback(self, n: int) -> None:
        self._bar.update(n)

    def restart(self) -> None:
        self._bar.reset()

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "UploadBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JobBar:
    """The job's own `progress` (0 to 100), with its status (and retries) alongside."""

    def __init__(self, quiet: bool) -> None:
        self._bar = tqdm(total=100, desc="job", unit="%", file=sys.stderr, disable=quiet, dynamic_ncols=True,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}{postfix}]", leave=True)
        self._shown = 0

    def update(self, job: dict[str, Any]) -> None:
        progress = max(0, min(100, int(job.get("progress") or 0)))
        if progress > self._shown:
            self._bar.update(progress - self._shown)
            self._shown = progress
        postfix = str(job.get("status", "?"))
        if job.get("retryCount"):
            postfix += f", retry {job['retryCount']}"
        self._bar.set_postfix_str(postfix)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "JobBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
