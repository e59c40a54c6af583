"""Shared by the unit tests: a JSON-RPC endpoint on loopback whose answers the test chooses, and
moto's S3 and SQS with a fake job store under the services app.py passes to chalicelib."""
import dataclasses
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.loopback import send


class LoopbackRpc:
    """A JSON-RPC endpoint at ``url`` (127.0.0.1, a free port).

    Each POST is answered with ``answer(method, params)``, a ``(status, payload)`` pair: a dict
    payload is sent as the JSON-RPC response (``jsonrpc`` and the request's ``id`` added), bytes as
    they are. By default the answer is the one set in ``answers[method]``, else a null result.
    ``calls`` lists the methods asked, in order (a JSON-RPC batch's one by one), ``round_trips``
    counts the POSTs. A GET goes to ``get(handler)`` (404 here).
    """

    def __init__(self):
        self.answers = {}
        self.calls = []
        self.round_trips = 0
        rpc = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rpc.get(self)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answers = [rpc.respond(request) for request in (body if isinstance(body, list) else [body])]
                rpc.round_trips += 1
                # A batch is answered as a whole: its first non-200 answer stands for all of it.
                status = next((status for status, _ in answers if status != 200), 200)
                payloads = [payload for _, payload in answers]
                if status != 200 or not isinstance(body, list):
                    payload = next(p for (s, p) in answers if s == status)
                else:
                    payload = b"[" + b",".join(payloads) + b"]"
                send(self, status, payload, "application/json")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def respond(self, request):
        """(status, body bytes) for one JSON-RPC request object."""
        self.calls.append(request["method"])
        status, payload = self.answer(request["method"], request["params"])
        if isinstance(payload, dict):
            payload = json.dumps({"jsonrpc": "2.0", "id": request["id"], **payload}).encode()
        return status, payload

    def answer(self, method, params):
        return self.answers.get(method, (200, {"result": None}))

    def get(self, handler):
        handler.send_error(404)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def rpc():
    server = LoopbackRpc()
    yield server
    server.close()


# --- the middle layer on moto: real S3 and SQS APIs in-process, a fake job store ---------------

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.config import load_settings  # noqa: E402
from chalicelib.wiring import build_services  # noqa: E402

from tests.unit.fakes import FakeStore  # noqa: E402

API_KEY = "unit-test-key"


class Aws:
    """moto's S3 and SQS with the infra template's bucket and queues (redrive included): the
    verify queue, the proof queue, the large-file queue and the upload-events queue, each with its dead-letter queue,
    under names of their own, so that each test sees only its own messages."""

    def __init__(self, s3, sqs, max_receive_count: int) -> None:
        self.s3, self.sqs = s3, sqs
        name = uuid.uuid4().hex[:12]
        self.bucket = f"uploads-{name}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.queue_url, self.dlq_url = self._queue_pair(f"work-{name}", max_receive_count)
        self.proof_queue_url, self.proof_dlq_url = self._queue_pair(f"work-{name}-proof", max_receive_count)
        self.large_queue_url, self.large_dlq_url = self._queue_pair(f"work-{name}-large", max_receive_count)
        self.upload_events_url, self.upload_events_dlq_url = self._queue_pair(f"work-{name}-upload-events",
                                                                              max_receive_count)

    def _queue_pair(self, name: str, max_receive_count: int) -> tuple[str, str]:
        """A queue and its dead-letter queue, as the template makes them."""
        dlq_url = self.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = self.sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        })["QueueUrl"]
        return url, dlq_url

    def count(self, url: str) -> tuple[int, int]:
        """(visible, in flight) messages of a queue."""
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def bodies(self, url: str) -> list[str]:
        """The bodies of every visible message, left on the queue."""
        seen: dict[str, dict] = {}
        while messages := [m for m in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                               VisibilityTimeout=30).get("Messages", [])
                           if m["MessageId"] not in seen]:
            seen.update({m["MessageId"]: m for m in messages})
        for m in seen.values():
            self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        return [m["Body"] for m in seen.values()]


@pytest.fixture(scope="session")
def aws_clients():
    """One in-process moto for the session (clients are slow to make; names keep tests apart)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                            ("AWS_SECRET_ACCESS_KEY", "testing")):
            patch.setenv(name, value)
        with mock_aws():
            yield boto3.client("s3"), boto3.client("sqs")


@pytest.fixture()
def aws(aws_clients):
    return Aws(*aws_clients, max_receive_count=load_settings({}).max_retry_attempts)


def make_settings(aws: Aws, **overrides: str):
    env = {"UPLOAD_BUCKET": aws.bucket, "QUEUE_URL": aws.queue_url, "DEAD_LETTER_QUEUE_URL": aws.dlq_url,
           "PROOF_QUEUE_URL": aws.proof_queue_url, "PROOF_DEAD_LETTER_QUEUE_URL": aws.proof_dlq_url,
           "LARGE_QUEUE_URL": aws.large_queue_url, "LARGE_DEAD_LETTER_QUEUE_URL": aws.large_dlq_url,
           "UPLOAD_EVENTS_QUEUE_URL": aws.upload_events_url,
           "RPC_URL": "http://127.0.0.1:8545", "API_KEY": API_KEY,
           "RESULT_CACHE_SECONDS": "0",  # on only in the cache's own tests (tests/unit/test_result_cache.py)
           **overrides}
    return load_settings({k: v for k, v in env.items() if v is not None})


@pytest.fixture()
def store():
    return FakeStore()


@pytest.fixture()
def services(aws, store):
    """The process's services as app.py would build them, on moto, with the fake store."""
    built = build_services(make_settings(aws), s3=aws.s3, sqs=aws.sqs)
    return dataclasses.replace(built, store=store)


def lambda_sqs_event(messages: list[dict], queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:q") -> dict:
    """Lambda's SQS event for messages received from a queue."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody"),
        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "us-east-1",
    } for m in messages]}


def invoke_from_queue(aws: Aws, url: str, handler, batch_size: int = 1) -> bool | None:
    """What Lambda's event source mapping does: receive a batch, call the handler, delete the
    batch when it returns and leave it when it raises. None when the queue gave nothing; else
    whether the handler returned."""
    messages = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=batch_size,
                                       AttributeNames=["All"]).get("Messages", [])
    if not messages:
        return None
    try:
        handler(lambda_sqs_event(messages), None)
    except Exception:
        return False
    aws.sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return True


@pytest.fixture()
def serve(monkeypatch):
    """Make app.py's handlers use the given services."""
    import app

    def use(chosen):
        monkeypatch.setattr(app, "services", lambda: chosen)
        return app
    return use
