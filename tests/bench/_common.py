"""What both benchmarks share: a local stack (started here, or the one `make up` runs),
the processes that make it up (for CPU time and memory), percentiles and the runner's log.

Benchmarks print figures; they assert nothing about timings.
"""
from __future__ import annotations

import argparse

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack.ipfs import DevIpfsNode
from devstack.stack import PROJECT_ROOT, Stack, StackOptions

ENDPOINTS_FILE = PROJECT_ROOT / ".stack" / "endpoints.json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    """Progress goes to stderr, figures to stdout."""
    print(message, file=sys.stderr, flush=True)


# --- the stack ---------------------------------------------------------------------------------

@dataclass
class BenchStack:
    """Endpoints of the stack under test and the processes it is made of."""

    endpoints: dict[str, Any]
    attached: bool
    workers: int | None
    runner_pid: int | None
    runner_log: Path | None
    # name -> root pid; CPU time is summed over each root's process tree.
    processes: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ipfs: DevIpfsNode | None = None  # our own stack's IPFS node (it counts gateway reads); None attached
    stack: Stack | None = None  # our own stack (its process handles, for fault injection); None attached

    @property
    def api_url(self) -> str:
        return self.endpoints["api_url"]


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both benchmarks share: which stack to use, and how it runs."""
    parser.add_argument("--backend", choices=["moto", "localstack"], default="moto",
                        help="AWS emulator of our own stack (default moto)")
    parser.add_argument("--attach", action="store_true", help="use the stack of a running `make up` (.stack/endpoints.json)")
    parser.add_argument("--workers", type=int, default=8, help="runner worker threads of our own stack (default 8, as make up)")
    parser.add_argument("--api-key", default=os.environ.get("API_KEY"), help="x-api-key for the job listing")


@contextmanager
def bench_stack(*, attach: bool, workers: int, backend: str = "moto", api_key: str | None = None,
                app_env: dict[str, str] | None = None, runner_log: str | None = None,
                runner_pid: int | None = None, schedule_interval_seconds: float = 10.0,
                template_parameters: dict[str, str] | None = None) -> Iterator[BenchStack]:
    """Start a quiet stack of our own in a fresh temporary directory, or attach to `make up`'s."""
    # `timeout`, `kill` and the like send SIGTERM: exit through the `finally` blocks, so that
    # the stack's child processes are stopped rather than orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if attach:
        yield _attached(runner_log, runner_pid)
        return
    # tempfile.mkdtemp rather than a test tmp dir: embedded Postgres runs as an unprivileged
    # user when started as root and needs every parent directory to be traversable.
    work_dir = Path(tempfile.mkdtemp(prefix="iid-bench-"))
    env = dict(app_env or {})
    if api_key:
        env["API_KEY"] = api_key
    options = StackOptions(backend=backend, work_dir=work_dir, workers=workers, quiet=True, app_env=env,
                           schedule_interval_seconds=schedule_interval_seconds)
    if template_parameters:
        options.template_parameters = template_parameters
    logging.getLogger("devstack").setLevel(logging.WARNING)
    say(f"starting a local stack ({backend}, embedded Postgres, dev chain, dev IPFS node, {workers} runner workers)…")
    started = time.monotonic()
    stack = Stack(options)
    try:
        stack.start()
        say(f"stack up in {time.monotonic() - started:.1f}s")
        children = _named_children(os.getpid())
        # By pid, not by command line: a child read while it starts may not show its own yet.
        for name, process in (("api (chalice local)", stack.api), ("runner (workers)", stack.runner)):
            children = {role: pid for role, pid in children.items() if pid != process.proc.pid}
            children[name] = process.proc.pid
        here = "bench (clients, IPFS)" if "moto server" in children else "bench (clients, IPFS, moto)"
        processes = {here: os.getpid(), **children}
        if stack.postgres is not None and stack.postgres.pid:
            processes["postgres"] = stack.postgres.pid
        yield BenchStack(
            endpoints=stack.endpoints, attached=False, workers=workers, runner_pid=stack.runner.proc.pid,
            runner_log=work_dir / "logs" / "runner.log", processes=processes, env=stack.env, ipfs=stack.ipfs,
            stack=stack,
        )
    finally:
        stack.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def _attached(runner_log: str | None, runner_pid: int | None) -> BenchStack:
    if not ENDPOINTS_FILE.exists():
        raise SystemExit(f"--attach: {ENDPOINTS_FILE.relative_to(PROJECT_ROOT)} not found; run `make up` first")
    endpoints = json.loads(ENDPOINTS_FILE.read_text())
    pid = runner_pid or find_process("devstack.runner")
    workers = _runner_workers(pid) if pid else None
    processes: dict[str, int] = {}
    for name, needle in (("make up (IPFS, moto when in-process)", "devstack up"), ("anvil (dev chain)", ANVIL),
                         ("moto server", "devstack.moto_server"), ("api (chalice local)", "chalice local"),
                         ("runner (workers)", "devstack.runner")):
        found = find_process(needle)
        if found:
            processes[name] = found
    processes["bench (clients)"] = os.getpid()
    postmaster = find_process("postgres -D") or find_process("bin/postgres")
    if postmaster:
        processes["postgres"] = postmaster
    return BenchStack(endpoints=endpoints, attached=True, workers=workers, runner_pid=pid,
                      runner_log=Path(runner_log) if runner_log else None, processes=processes)


ANVIL = "bin/anvil --host"  # its command line also holds "localstack/": matched before LocalStack
EMULATORS = ("moto server", "localstack")  # the processes that play S3 and SQS: AWS's machines, not ours
ROLES = (("chalice local", "api (chalice local)"), ("devstack.runner", "runner (workers)"),
         ("moto", "moto server"), (ANVIL, "anvil (dev chain)"), ("localstack", "localstack"))


def _named_children(parent: int) -> dict[str, int]:
    """The stack's child processes by role (moto may run in this process or in a child)."""
    named: dict[str, int] = {}
    for pid in _children().get(parent, []):
        try:
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        role = next((name for needle, name in ROLES if needle in cmdline), None)
        if role is None:
            role = Path(cmdline.split(" ", 1)[0]).name or str(pid)
        if role in named:
            role = f"{role} ({pid})"
        named[role] = pid
    return named


def alive(pid: int | None) -> bool:
    """True while `pid` runs (a child that exited and was not reaped yet is a zombie: dead)."""
    if pid is None:
        return True
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def find_process(needle: str) -> int | None:
    """The oldest process whose command line contains `needle` (not this one)."""
    found: list[tuple[float, int]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            start = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, IndexError, ValueError):
            continue
        if needle in cmdline:
            found.append((start, int(entry.name)))
    return min(found)[1] if found else None


def _runner_workers(pid: int) -> int | None:
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        if b"--workers" in argv:
            return int(argv[argv.index(b"--workers") + 1])
        environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        for item in environ:
            if item.startswith(b"RUNNER_WORKERS="):
                return int(item.split(b"=", 1)[1])
        return 4  # the runner's default
    except (OSError, ValueError, IndexError):
        return None


# --- processes: CPU time and memory -------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _cpu_of(pid: int) -> float:
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    """User+system CPU seconds of each named process tree (live processes only); a tree stops
    where another named process begins, so nothing is counted twice."""
    tree = _children()
    roots = set(processes.values())
    out: dict[str, float] = {}
    for name, root in processes.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            total += _cpu_of(pid)
            todo.extend(child for child in tree.get(pid, []) if child not in roots)
        out[name] = total
    return out


def proc_status(pid: int, *keys: str) -> dict[str, int]:
    """Fields of /proc/<pid>/status in bytes (VmRSS, VmHWM, ...)."""
    values: dict[str, int] = {}
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in keys:
            number, _, unit = rest.strip().partition(" ")
            values[name] = int(number) * (1024 if unit.strip() == "kB" else 1)
    return values


# --- figures -----------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def parse_time(value: str) -> datetime:
    """The API's ISO 8601 UTC timestamps (`...Z`)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def spread(values: list[float]) -> str:
    """min / median / max of repeated measurements."""
    if not values:
        return "n/a"
    return f"min {min(values):.2f}  median {percentile(values, 50):.2f}  max {max(values):.2f}"


def runner_log_records(path: Path | None, message: str, job_ids: set[str] | None = None) -> list[dict[str, Any]]:
    """The runner's structured log lines (JSON objects on stdout) with this message."""
    if path is None or not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if message not in line or not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == message and (job_ids is None or record.get("job_id") in job_ids):
                records.append(record)
    return records


def load_line() -> str:
    """The load averages, as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"
