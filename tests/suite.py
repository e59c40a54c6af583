"""`make test`: the whole suite as two pytest runs side by side, so that it takes the time of the
longer one rather than of both.

- in front: everything but the LocalStack copies (contracts aside: the unit tests, the
  integration tests on moto, the browser tests, the chaos run), with pytest's output as usual;
- behind: the integration tests on LocalStack (`-m localstack`: the stack fixture's LocalStack
  copies and the template tests' LocalStack half), its output in `.stack/test-localstack.log`,
  printed when it ends.

Most of an integration test's time is spent waiting (for a job, a visibility timeout, a lease),
which is why two runs fit on two cores. Extra arguments go to both runs. The exit status is the
first non-zero one of the two. What this does not do: share one stack between the runs (each
starts its own), or split the work any finer than by backend.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / ".stack" / "test-localstack.log"
LOCALSTACK_COPIES = "localstack"  # the marker (a keyword would also match a checkout's directory name)


def main(argv: list[str]) -> int:
    LOG.parent.mkdir(exist_ok=True)
    pytest = [sys.executable, "-m", "pytest"]
    started = time.monotonic()
    with LOG.open("w") as log:
        behind = subprocess.Popen([*pytest, "tests/integration", "-m", LOCALSTACK_COPIES, *argv],
                                  cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        print(f"suite: the LocalStack half runs behind (pid {behind.pid}), its output in {LOG.relative_to(ROOT)}",
              flush=True)
        try:
            front = subprocess.run([*pytest, "tests", "-m", f"not {LOCALSTACK_COPIES}", *argv], cwd=ROOT).returncode
            if behind.poll() is None:
                print("suite: waiting for the LocalStack half", flush=True)
            back = behind.wait()
        except KeyboardInterrupt:
            behind.terminate()
            behind.wait()
            raise
    print(f"\n===== the LocalStack half ({LOG.relative_to(ROOT)}) =====", flush=True)
    sys.stdout.write(LOG.read_text())
    print(f"suite: in front exit {front}, LocalStack half exit {back}, {time.monotonic() - started:.0f} s in all")
    return front or back


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
