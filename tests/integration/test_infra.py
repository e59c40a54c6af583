"""infra/template.yaml applied to the local AWS emulators: moto (in-process) and LocalStack (host).

Both backends must end up with the same resources: the bucket's encryption, public access block,
lifecycle and CORS, the queues and their redrive policy, the four alarms, the outputs the Chalice
stage records, and S3 ObjectCreated notifications delivered to SQS for the local event-source
runner. On LocalStack, which evaluates alarms, a message in the dead-letter queue must take the
DLQ alarm to ALARM and publish to the alarm topic.
"""
from __future__ import annotations

import importlib.util
import json
import time
import uuid
from pathlib import Path
from urllib.parse import unquote_plus, urlparse

import pytest

from devstack.emulator import start_emulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALARM_PERIOD_SECONDS = 10
QUEUE_NAME = "internetid-verification"
DLQ_NAME = "internetid-verification-dlq"
ALARM_NAMES = {
    f"{QUEUE_NAME}-dlq-depth": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", DLQ_NAME),
    f"{QUEUE_NAME}-oldest-message-age": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", QUEUE_NAME),
    f"{QUEUE_NAME}-worker-errors": ("AWS/Lambda", "Errors", "FunctionName",
                                    "internetid-verification-dev-process_verification_job"),
    f"{QUEUE_NAME}-jobs-failed": ("InternetID/Verification", "JobsFailed", "service", "verification-queue"),
    f"{QUEUE_NAME}-proof-dlq-depth": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                                      f"{QUEUE_NAME}-proof-dlq"),
    f"{QUEUE_NAME}-proof-oldest-message-age": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName",
                                               f"{QUEUE_NAME}-proof"),
    f"{QUEUE_NAME}-proof-worker-errors": ("AWS/Lambda", "Errors", "FunctionName",
                                          "internetid-verification-dev-process_proof_job"),
    f"{QUEUE_NAME}-large-dlq-depth": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                                      f"{QUEUE_NAME}-large-dlq"),
    f"{QUEUE_NAME}-large-oldest-message-age": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName",
                                               f"{QUEUE_NAME}-large"),
    f"{QUEUE_NAME}-large-worker-errors": ("AWS/Lambda", "Errors", "FunctionName",
                                          "internetid-verification-dev-process_large_job"),
    f"{QUEUE_NAME}-upload-events-dlq-depth": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                                              f"{QUEUE_NAME}-upload-events-dlq"),
}


@pytest.fixture(
    scope="module",
    params=[
        "moto",
        pytest.param("localstack", marks=[pytest.mark.localstack, pytest.mark.timeout(900)]),
    ],
)
def aws(request, tmp_path_factory):
    """The emulator with the template applied (LocalStack is installed on first use: slow once)."""
    started = time.monotonic()
    emulator = start_emulator(request.param, work_dir=tmp_path_factory.mktemp(request.param))
    try:
        emulator.apply_template({"AlarmPeriodSeconds": ALARM_PERIOD_SECONDS})
        emulator.details["ready_seconds"] = time.monotonic() - started
        print(f"\n{emulator.backend}: {json.dumps(emulator.details)} filled_in={emulator.filled_in}")
        yield emulator
    finally:
        emulator.stop()


def _wait_for(predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_outputs_point_at_the_emulator(aws):
    out = aws.outputs
    assert set(out) >= {"UploadBucketName", "QueueUrl", "QueueName", "QueueArn", "DeadLetterQueueUrl",
                        "DeadLetterQueueName", "DeadLetterQueueArn", "AlarmTopicArn", "FunctionPolicyArn"}
    assert out["QueueName"] == QUEUE_NAME and out["DeadLetterQueueName"] == DLQ_NAME
    endpoint = urlparse(aws.endpoint_url).netloc
    for key in ("QueueUrl", "DeadLetterQueueUrl"):
        assert urlparse(out[key]).netloc == endpoint, out[key]
    assert aws.app_env()["UPLOAD_BUCKET"] == out["UploadBucketName"]
    assert aws.aws_env()["AWS_ENDPOINT_URL"] == aws.endpoint_url


def test_bucket_is_encrypted_private_and_expires_uploads(aws):
    s3, bucket = aws.client("s3"), aws.outputs["UploadBucketName"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    rule, inline = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Status"] == "Enabled" and inline["Status"] == "Enabled"
    assert rule["Filter"]["Prefix"] == "uploads/" and inline["Filter"]["Prefix"] == "inline/"
    assert rule["Expiration"]["Days"] == 2
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    (cors,) = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert cors["AllowedMethods"] == ["POST", "PUT"] and "ETag" in cors["ExposeHeaders"]  # S3 API spelling


def test_queues_have_redrive_and_retention(aws):
    sqs = aws.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=aws.outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == aws.outputs["DeadLetterQueueArn"]
    assert int(redrive["maxReceiveCount"]) == 3
    assert int(attrs["VisibilityTimeout"]) == 360
    assert int(attrs["MessageRetentionPeriod"]) == 4 * 24 * 3600
    dlq = sqs.get_queue_attributes(QueueUrl=aws.outputs["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    assert int(dlq["MessageRetentionPeriod"]) == 14 * 24 * 3600
    assert dlq["QueueArn"] == aws.outputs["DeadLetterQueueArn"]
    large = sqs.get_queue_attributes(QueueUrl=aws.outputs["LargeQueueUrl"], AttributeNames=["All"])["Attributes"]
    assert int(large["VisibilityTimeout"]) >= 900  # at least the large-file worker's timeout
    for queue, dead in (("ProofQueueUrl", "ProofDeadLetterQueueUrl"), ("LargeQueueUrl", "LargeDeadLetterQueueUrl"),
                        ("UploadEventsQueueUrl", "UploadEventsDeadLetterQueueUrl")):
        attrs = sqs.get_queue_attributes(QueueUrl=aws.outputs[queue], AttributeNames=["All"])["Attributes"]
        dead_arn = sqs.get_queue_attributes(QueueUrl=aws.outputs[dead], AttributeNames=["QueueArn"])["Attributes"]
        assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == dead_arn["QueueArn"], queue
        assert int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"]) == 3


def test_the_alarms_exist(aws):
    alarms = aws.client("cloudwatch").describe_alarms(AlarmNames=list(ALARM_NAMES))["MetricAlarms"]
    by_name = {a["AlarmName"]: a for a in alarms}
    assert set(by_name) == set(ALARM_NAMES)
    for name, (namespace, metric, dimension, value) in ALARM_NAMES.items():
        alarm = by_name[name]
        assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
        assert alarm["Dimensions"] == [{"Name": dimension, "Value": value}]
        assert alarm["Period"] == ALARM_PERIOD_SECONDS
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [aws.outputs["AlarmTopicArn"]]
    assert by_name[f"{QUEUE_NAME}-dlq-depth"]["Threshold"] == 0
    assert by_name[f"{QUEUE_NAME}-oldest-message-age"]["Threshold"] == 300


def test_function_policy_and_chalice_config_are_recorded(aws, tmp_path):
    spec = importlib.util.spec_from_file_location("record_outputs", ROOT / "infra" / "record_outputs.py")
    record = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(record)
    outputs = record.stack_outputs(aws.stack_name, aws.client("cloudformation"))
    policy = record.managed_policy_document(outputs["FunctionPolicyArn"], aws.client("iam"))
    resources = json.dumps(policy)
    assert f"arn:aws:s3:::{aws.outputs['UploadBucketName']}/uploads/*" in resources
    assert f"arn:aws:s3:::{aws.outputs['UploadBucketName']}/inline/*" in resources
    assert aws.outputs["QueueArn"] in resources and aws.outputs["DeadLetterQueueArn"] in resources
    config = json.loads(record.update_chalice_config(outputs, tmp_path, "dev", policy).read_text())
    env = config["stages"]["dev"]["environment_variables"]
    assert env["UPLOAD_BUCKET"] == aws.outputs["UploadBucketName"]
    assert env["QUEUE_NAME"] == QUEUE_NAME and env["DEAD_LETTER_QUEUE_NAME"] == DLQ_NAME


def test_only_the_upload_bucket_may_send_to_the_upload_events_queue(aws):
    attributes = aws.client("sqs").get_queue_attributes(QueueUrl=aws.outputs["UploadEventsQueueUrl"],
                                                        AttributeNames=["Policy"])["Attributes"]
    (statement,) = json.loads(attributes["Policy"])["Statement"]
    assert statement["Condition"]["ArnEquals"] == {"aws:SourceArn": f"arn:aws:s3:::{aws.outputs['UploadBucketName']}"}
    assert aws.outputs["UploadBucketName"].startswith("internetid-uploads-")  # named from the stack id


def test_uploads_notify_the_upload_events_queue(aws):
    queue_url = aws.outputs["UploadEventsQueueUrl"]
    config = aws.client("s3").get_bucket_notification_configuration(Bucket=aws.outputs["UploadBucketName"])
    assert len(config["QueueConfigurations"]) == 1
    s3, sqs = aws.client("s3"), aws.client("sqs")
    bucket = aws.outputs["UploadBucketName"]
    key = f"uploads/{uuid.uuid4()}"
    s3.put_object(Bucket=bucket, Key="elsewhere/not-an-upload", Body=b"ignored")
    s3.put_object(Bucket=bucket, Key=key, Body=b"hello")
    records, test_events = [], 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not records:
        for msg in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            body = json.loads(msg["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])
            if body.get("Event") == "s3:TestEvent":
                test_events += 1
                continue
            records.extend(body["Records"])
    # Keys in S3 events are URL-encoded (AWS: "red flower.jpg" -> "red+flower.jpg"; moto also
    # encodes "/" as %2F): handlers must unquote_plus them.
    assert [unquote_plus(r["s3"]["object"]["key"]) for r in records] == [key]
    (record,) = records
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == bucket
    assert record["s3"]["object"]["size"] == 5
    # the object outside uploads/ produced nothing
    extra = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert all(json.loads(m["Body"]).get("Event") == "s3:TestEvent" for m in extra)


def test_poison_message_reaches_the_dead_letter_queue_and_the_alarm_fires(aws, record_property):
    """Three receives without a delete move a job message to the DLQ; on LocalStack the DLQ alarm
    then goes to ALARM and notifies the alarm topic (moto holds alarms but does not evaluate them)."""
    sqs, sns, cw = aws.client("sqs"), aws.client("sns"), aws.client("cloudwatch")
    alarm_name = f"{QUEUE_NAME}-dlq-depth"
    inbox = sqs.create_queue(QueueName=f"alarm-inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=aws.outputs["AlarmTopicArn"], Protocol="sqs", Endpoint=inbox_arn)
    assert cw.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]["StateValue"] != "ALARM"

    body = json.dumps({"jobId": str(uuid.uuid4())})
    sqs.send_message(QueueUrl=aws.outputs["QueueUrl"], MessageBody=body)
    receives = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and receives < 3:
        # a worker that fails: receive, never delete; a 1 s visibility instead of the queue's 360 s
        got = sqs.receive_message(QueueUrl=aws.outputs["QueueUrl"], WaitTimeSeconds=1,
                                  VisibilityTimeout=1).get("Messages", [])
        receives += len(got)
        if got:
            time.sleep(1.5)
    assert receives == 3

    def in_dead_letter_queue():
        # the receive after the third moves the message (SQS redrives on receive)
        if sqs.receive_message(QueueUrl=aws.outputs["QueueUrl"], WaitTimeSeconds=1,
                               VisibilityTimeout=1).get("Messages"):
            return False  # a fourth delivery: the redrive did not happen (the wait then fails)
        attrs = sqs.get_queue_attributes(QueueUrl=aws.outputs["DeadLetterQueueUrl"],
                                         AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) == 1

    assert _wait_for(in_dead_letter_queue, timeout=30), "the message did not reach the dead-letter queue"
    landed = time.monotonic()

    if aws.backend == "localstack":
        def state():
            return cw.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]["StateValue"] == "ALARM"

        assert _wait_for(state, timeout=240, interval=2), "the DLQ alarm did not go to ALARM within 240 s"
        time_to_alarm = time.monotonic() - landed
        record_property("dlq_alarm_seconds", round(time_to_alarm, 1))
        print(f"\nDLQ alarm went to ALARM {time_to_alarm:.1f}s after the message landed")

        def notification():
            for msg in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", []):
                alarm = json.loads(json.loads(msg["Body"])["Message"])
                if alarm.get("AlarmName") == alarm_name and alarm.get("NewStateValue") == "ALARM":
                    return alarm
            return None

        alarm = _wait_for(notification, timeout=60, interval=0)
        assert alarm, "no ALARM notification reached the subscribed queue"
        assert alarm["Trigger"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert alarm["Trigger"]["Dimensions"] == [{"name": "QueueName", "value": DLQ_NAME}]

    (msg,) = sqs.receive_message(QueueUrl=aws.outputs["DeadLetterQueueUrl"], WaitTimeSeconds=1)["Messages"]
    assert msg["Body"] == body
    sqs.purge_queue(QueueUrl=aws.outputs["DeadLetterQueueUrl"])
    sqs.delete_queue(QueueUrl=inbox)
