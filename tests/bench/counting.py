"""Counting what jobs cost outside the process: S3/SQS requests (moto's request recorder) and
database transactions and statements (PostgreSQL's own statement log). No production hooks:
both are switched on from the benchmark, on our own stack only, and off again.

- Requests: moto records every request it serves once `/moto-api/recorder/start-recording` is
  called (into MOTO_RECORDER_FILEPATH, set before moto starts). Each is named by its SQS action
  (the `X-Amz-Target` header of the JSON protocol) or its S3 method and target. Empty long polls
  count: the event source mapping makes them too (and they are billed on AWS).
- Transactions: `log_statement = all` with the backend's session id in each line's prefix. A
  transaction is what a session runs between BEGIN and COMMIT/ROLLBACK (or one statement
  outside them); it is named by the first statement that matches a known shape (`SHAPES`) and
  belongs to the worker or the API by that name. Sessions are not attributed to processes.

Not done: LocalStack (no recorder), statements of a stack we did not start (attached), the
cost of the logging itself (both are on only in counting rounds, whose CPU is not reported).
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import requests

RECORDING_ENV = "MOTO_RECORDER_FILEPATH"
PREFIX = "IIDTX"  # starts each statement line of the log, followed by the session id
LOG_PREFIX = f"{PREFIX} %c "
STATEMENT_LINE = re.compile(rf"^{PREFIX} (\S+) LOG:  (?:statement|execute [^:]*): (.*)$")

# (name, side, pattern): the first pattern found in a transaction's statements names it.
SHAPES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple((name, side, re.compile(pattern, re.S)) for name, side, pattern in (
    ("complete (result + history)", "worker", r"WITH done AS \(\s*UPDATE verification_jobs\s+SET status = 'completed'"),
    ("start attempt", "worker", r"SET status = 'processing'"),
    ("renew lease", "worker", r"SET lease_expires_at = now\(\)"),
    ("progress", "worker", r"UPDATE verification_jobs SET progress"),
    ("content hash", "worker", r"UPDATE verification_jobs SET content_hash"),
    ("result cache lookup", "worker", r"SELECT result FROM result_cache"),
    ("result cache store", "worker", r"INSERT INTO result_cache"),
    ("lease holder", "worker", r"lease_expires_at > now\(\)"),
    ("retry / failure", "worker", r"SET status = '(?:queued|failed)', (?:retry_count|error)"),
    ("create job", "api", r"INSERT INTO verification_jobs"),
    ("mark enqueued", "api", r"SET last_enqueued_at = now\(\)"),
    ("upload received", "api", r"SET status = 'queued', file_size"),
    ("read jobs", "api", r"FROM verification_jobs WHERE"),
))


def request_name(entry: dict) -> str:
    """An SQS action (`SQS ReceiveMessage`) or an S3 request (`S3 PUT object`)."""
    headers = {name.lower(): value for name, value in entry.get("headers", {}).items()}
    target = headers.get("x-amz-target", "")
    if target.startswith("AmazonSQS."):
        return f"SQS {target.split('.', 1)[1]}"
    path = urlsplit(entry.get("url", "")).path.strip("/")
    if path.startswith("moto-api"):
        return "moto-api"
    return f"S3 {entry.get('method')} {'object' if '/' in path else 'bucket'}"


class RequestCounter:
    """S3 and SQS requests served by our stack's moto between start() and read()."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")

    @staticmethod
    def prepare(directory: Path) -> None:
        """Before the stack starts: where moto writes its recording (inherited by its process)."""
        os.environ[RECORDING_ENV] = str(directory / "moto-recording.jsonl")

    def _call(self, action: str) -> requests.Response:
        answer = requests.post(f"{self.endpoint_url}/moto-api/recorder/{action}", timeout=30)
        answer.raise_for_status()
        return answer

    def start(self) -> None:
        self._call("reset-recording")
        self._call("start-recording")

    def read(self) -> Counter:
        self._call("stop-recording")
        answer = requests.get(f"{self.endpoint_url}/moto-api/recorder/download-recording", timeout=60)
        answer.raise_for_status()
        return Counter(request_name(json.loads(line)) for line in answer.text.splitlines() if line.strip())


@dataclass(frozen=True)
class Transactions:
    by_name: Counter  # transactions by the name of their shape ("other" for the unknown)
    statements: int  # statements in all, BEGIN/COMMIT not counted

    def side(self, side: str) -> int:
        sides = {name: s for name, s, _ in SHAPES}
        return sum(n for name, n in self.by_name.items() if sides.get(name) == side)


def name_of(statements: list[str]) -> str:
    for name, _, pattern in SHAPES:
        if any(pattern.search(statement) for statement in statements):
            return name
    return "other"


def transactions_in(lines: list[str]) -> Transactions:
    """Transactions of a statement log (continuation lines of multi-line SQL are joined)."""
    open_by_session: dict[str, list[str]] = {}
    found: Counter = Counter()
    statements = 0
    current: list[str] | None = None
    for line in lines:
        match = STATEMENT_LINE.match(line)
        if not match:
            if current is not None and not line.startswith(PREFIX):
                current[-1] += "\n" + line
            continue
        session, text = match.groups()
        word = text.strip().upper()
        if word == "BEGIN":
            open_by_session[session] = []
            current = None
            continue
        if word in ("COMMIT", "ROLLBACK"):
            body = open_by_session.pop(session, [])
            if body:
                found[name_of(body)] += 1
            current = None
            continue
        if not text.strip():  # the pool's connection check
            current = None
            continue
        statements += 1
        if session in open_by_session:
            open_by_session[session].append(text)
            current = open_by_session[session]
        else:  # autocommit: a transaction of its own
            found[name_of([text])] += 1
            current = None
    return Transactions(found, statements)


class TransactionCounter:
    """Transactions of our stack's PostgreSQL between start() and read(), from its log."""

    def __init__(self, database_url: str, log_file: Path) -> None:
        self.database_url, self.log_file = database_url, log_file
        self._offset = 0

    def _configure(self, statement_logging: bool) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            if statement_logging:
                conn.execute("ALTER SYSTEM SET log_statement = 'all'")
                conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{LOG_PREFIX}'")
            else:
                conn.execute("ALTER SYSTEM RESET log_statement")
                conn.execute("ALTER SYSTEM RESET log_line_prefix")
            conn.execute("SELECT pg_reload_conf()")

    def start(self) -> None:
        self._configure(True)
        self._offset = self.log_file.stat().st_size

    def read(self) -> Transactions:
        self._configure(False)
        with self.log_file.open(encoding="utf-8", errors="replace") as handle:
            handle.seek(self._offset)
            lines = handle.read().splitlines()
        return transactions_in(lines)
