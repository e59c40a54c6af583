"""A local stand-in for Lambda's event sources: it long-polls SQS and calls the very handlers
that `app.py` registered with Chalice, with the event shapes Lambda would send.

- SQS sources (`@app.on_sqs_message`): up to the handler's batch size of records per invocation,
  attributes included (ApproximateReceiveCount drives the retry logic), gathered for at most its
  batching window once a first message came; the batch is deleted when the handler returns and
  left alone when it raises (a handler that deleted some messages itself leaves only the rest),
  exactly as Lambda's event source mapping does, so SQS redelivers them after their visibility
  timeout and dead-letters them after maxReceiveCount receives.
- Each invocation prints one JSON line on stdout (`runner invocation`: its source, records, job
  ids, and the CPU its poll thread spent outside the handler since the previous one: receiving,
  deleting, building events), and each scheduled call one (`runner schedule`: when, and its CPU),
  so a benchmark can tell the event source mapping's and the schedules' work, which run outside
  the worker function on AWS, from the handler's.
- Schedules (`@app.schedule`): called every `schedule_interval` seconds.

Several worker threads per SQS source play the part of Lambda's concurrency: `workers` of them,
or the source's `maximum_concurrency` when it is lower (the proof queue's cap), so a source never
runs more handlers at once than its event source mapping would. Not done: Lambda's scaling ramp,
reserved concurrency, account-wide limits shared between functions.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import boto3
from chalice.app import ScheduledEventConfig, SQSEventConfig

log = logging.getLogger("devstack.runner")
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_seconds: float = 60.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:000000000000:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


@dataclass
class Source:
    name: str
    handler: Callable[[dict[str, Any], Any], Any]
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: int
    concurrency: int  # poll threads: as many handlers at once as the event source mapping allows


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """Lambda's SQS event for received messages."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": m.get("MessageAttributes", {}),
        "md5OfBody": m.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    } for m in messages]}


def scheduled_event(rule_name: str) -> dict[str, Any]:
    """EventBridge's scheduled event."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "000000000000", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": REGION, "resources": [f"arn:aws:events:{REGION}:000000000000:rule/{rule_name}"], "detail": {},
    }


class EventSourceRunner:
    def __init__(self, app_module: Any, workers: int = 4, poll_wait_seconds: int = 1,
                 schedule_interval_seconds: float = 10.0) -> None:
        self.app_module = app_module
        self.app = app_module.app
        self.sqs = boto3.client("sqs")
        self.workers = workers
        self.poll_wait_seconds = poll_wait_seconds
        self.schedule_interval_seconds = schedule_interval_seconds
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def _handler(self, handler_string: str) -> Callable[[dict[str, Any], Any], Any]:
        return getattr(self.app_module, handler_string.rsplit(".", 1)[1])

    def _queue(self, url: str) -> tuple[str, str]:
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def sources(self) -> tuple[list[Source], list[ScheduledEventConfig]]:
        sources: list[Source] = []
        schedules: list[ScheduledEventConfig] = []
        for config in self.app.event_sources:
            if isinstance(config, SQSEventConfig):
                url = self.sqs.get_queue_url(QueueName=config.queue)["QueueUrl"]
                cap = config.maximum_concurrency or self.workers
                sources.append(Source(config.name, self._handler(config.handler_string), *self._queue(url),
                                      batch_size=config.batch_size,
                                      batching_window_seconds=config.maximum_batching_window_in_seconds or 0,
                                      concurrency=min(self.workers, cap)))
            elif isinstance(config, ScheduledEventConfig):
                schedules.append(config)
            else:
                log.warning("%s: %s is not run locally", config.name, type(config).__name__)
        return sources, schedules

    def start(self) -> None:
        sources, schedules = self.sources()
        for source in sources:
            for i in range(source.concurrency):
                self._spawn(f"{source.name}-{i}", self._poll, source)
        for config in schedules:
            self._spawn(config.name, self._tick, config)
        log.info("event-source runner started: %s; schedules: %s",
                 ", ".join(f"{s.name} ×{s.concurrency}" for s in sources),
                 ", ".join(c.name for c in schedules))

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=self.poll_wait_seconds + 5)

    def _receive(self, source: Source, most: int, wait_seconds: int) -> list[dict[str, Any]]:
        return self.sqs.receive_message(
            QueueUrl=source.queue_url, MaxNumberOfMessages=most, WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _batch(self, source: Source) -> list[dict[str, Any]]:
        """A long poll; once something came, more receives until the batch is full or its
        batching window is over (a last receive may wait up to a second past it)."""
        messages = self._receive(source, source.batch_size, self.poll_wait_seconds)
        deadline = time.monotonic() + source.batching_window_seconds
        while messages and len(messages) < source.batch_size and not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            messages += self._receive(source, source.batch_size - len(messages), max(int(left), 1))
        return messages

    def _poll(self, source: Source) -> None:
        from chalicelib.queue import job_id_from_body  # the app's own rule; importable once the app is

        outside_handler = 0.0  # this thread's CPU seconds outside the handler since the last invocation
        while not self.stopping.is_set():
            began = time.thread_time()
            try:
                messages = self._batch(source)
            except Exception:
                if not self.stopping.is_set():
                    log.exception("receive failed on %s; retrying", source.name)
                    time.sleep(1)
                continue
            finally:
                outside_handler += time.thread_time() - began
            if messages:
                outside_handler += self._invoke(source, messages)
                print(json.dumps({"message": "runner invocation", "source": source.name, "records": len(messages),
                                  "job_ids": [job_id_from_body(m.get("Body") or "") for m in messages],
                                  "poll_cpu_seconds": round(outside_handler, 6)}), flush=True)
                outside_handler = 0.0

    def _invoke(self, source: Source, messages: list[dict[str, Any]]) -> float:
        """Call the handler with the batch; the CPU seconds this thread spent outside it (deleting)."""
        try:
            source.handler(sqs_event(messages, source.queue_arn), LambdaContext(source.name))
        except Exception as exc:
            # Lambda leaves the batch on the queue when the function fails; so do we.
            log.info("%s raised %s: %s; the messages stay for redelivery", source.name, type(exc).__name__, exc)
            return 0.0
        began = time.thread_time()
        self.sqs.delete_message_batch(
            QueueUrl=source.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        return time.thread_time() - began

    def _tick(self, config: ScheduledEventConfig) -> None:
        handler = self._handler(config.handler_string)
        while not self.stopping.wait(self.schedule_interval_seconds):
            began = time.thread_time()
            try:
                handler(scheduled_event(config.name), LambdaContext(config.name))
            except Exception:
                log.exception("scheduled handler %s failed", config.name)
            print(json.dumps({"message": "runner schedule", "source": config.name, "at": time.time(),
                              "cpu_seconds": round(time.thread_time() - began, 6)}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run app.py's event handlers against SQS, as Lambda would.")
    parser.add_argument("--project-dir", default=".", type=Path)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("RUNNER_WORKERS", "4")))
    parser.add_argument("--schedule-interval", type=float,
                        default=float(os.environ.get("SCHEDULE_INTERVAL_SECONDS", "10")))
    args = parser.parse_args(argv)
    logging.getLogger("botocore").setLevel(logging.WARNING)  # credential/endpoint chatter
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s runner %(message)s")
    sys.path.insert(0, str(args.project_dir.resolve()))
    runner = EventSourceRunner(importlib.import_module("app"), workers=args.workers,
                               schedule_interval_seconds=args.schedule_interval)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runner.start()
    stop.wait()
    runner.stop()


if __name__ == "__main__":
    main()
