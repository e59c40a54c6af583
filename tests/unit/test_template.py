"""infra/template.yaml: cfn-lint clean, and the facts the service relies on (no network)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.config import STACK_OUTPUT_ENVIRONMENT, load_settings

from devstack.emulator import TemplateResolver, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
WORKER_TIMEOUT_SECONDS = 60
LARGE_WORKER_TIMEOUT_SECONDS = 900  # Lambda's longest: the large-file worker's


def run_cfn_lint(*paths: Path) -> subprocess.CompletedProcess:
    """cfn-lint from this interpreter's environment, errors and warnings both failing."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())",
         "--format", "parseable", *map(str, paths)],
        capture_output=True, text=True, timeout=300,
    )


def _load_record_outputs():
    spec = importlib.util.spec_from_file_location("record_outputs", ROOT / "infra" / "record_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


def _default(template: dict, ref: object) -> str:
    assert isinstance(ref, dict) and "Ref" in ref, f"expected a parameter reference, got {ref!r}"
    return str(template["Parameters"][ref["Ref"]]["Default"])


def _alarms(template: dict) -> dict[str, dict]:
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_cfn_lint_passes():
    result = run_cfn_lint(TEMPLATE)
    assert result.returncode == 0, f"cfn-lint failed:\n{result.stdout}\n{result.stderr}"


def _stage_settings(stage: str):
    """The settings the worker runs with in a Chalice stage (its environment over the defaults)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return load_settings(config["stages"][stage].get("environment_variables", {}))


@pytest.mark.parametrize("stage", ["dev", "local"])
def test_work_queue_dead_letters_after_as_many_receives_as_the_worker_allows(template, stage):
    """The worker fails a job on its last allowed receive (MAX_RETRY_ATTEMPTS) and lets SQS move
    the message: the queue's maxReceiveCount must be that same number."""
    queue = template["Resources"]["WorkQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert int(_default(template, redrive["maxReceiveCount"])) == _stage_settings(stage).max_retry_attempts


def test_queue_retention(template):
    queue = template["Resources"]["WorkQueue"]["Properties"]
    assert int(queue["MessageRetentionPeriod"]) == 4 * 24 * 3600
    dlq = template["Resources"]["DeadLetterQueue"]["Properties"]
    assert int(dlq["MessageRetentionPeriod"]) == 14 * 24 * 3600


def test_visibility_timeout_is_at_least_six_worker_timeouts(template):
    queue = template["Resources"]["WorkQueue"]["Properties"]
    assert int(_default(template, queue["VisibilityTimeout"])) >= 6 * WORKER_TIMEOUT_SECONDS


def test_large_file_lane_fits_its_workers_timeout(template):
    """Lambda refuses a mapping whose queue hides a message for less than the function's timeout:
    the large-file queue's visibility can never go below 900 s, and the stage gives the worker 900 s."""
    resources = template["Resources"]
    visibility = resources["LargeQueue"]["Properties"]["VisibilityTimeout"]
    parameter = template["Parameters"][visibility["Ref"]]
    assert int(parameter["MinValue"]) >= LARGE_WORKER_TIMEOUT_SECONDS
    assert int(parameter["Default"]) >= 6 * LARGE_WORKER_TIMEOUT_SECONDS
    functions = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]["lambda_functions"]
    assert functions["process_large_job"]["lambda_timeout"] == LARGE_WORKER_TIMEOUT_SECONDS
    record = _load_record_outputs()
    assert record.WORKER_TIMEOUTS_SECONDS["process_large_job"] == LARGE_WORKER_TIMEOUT_SECONDS


def test_upload_bucket_is_private_encrypted_and_expires_uploads(template):
    bucket = template["Resources"]["UploadBucket"]["Properties"]
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(v is True for v in bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    lifecycle, inline = bucket["LifecycleConfiguration"]["Rules"]
    assert lifecycle["Status"] == "Enabled" and inline["Status"] == "Enabled"
    assert _default(template, lifecycle["Prefix"]) == "uploads/"
    assert _default(template, inline["Prefix"]) == "inline/"
    assert int(_default(template, lifecycle["ExpirationInDays"])) >= 1
    assert lifecycle["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    (cors,) = bucket["CorsConfiguration"]["CorsRules"]
    assert {"POST", "PUT"} <= set(cors["AllowedMethods"]) and "ETag" in cors["ExposedHeaders"]


def test_alarms_watch_the_right_metrics(template):
    alarms = _alarms(template).values()
    watched = [(a["Namespace"], a["MetricName"], a["Dimensions"][0]["Value"]) for a in alarms]

    def queue(name):
        return {"Fn::GetAtt": [name, "QueueName"]}
    depth, age = ("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert sorted(map(json.dumps, watched)) == sorted(map(json.dumps, [
        (*depth, queue("DeadLetterQueue")), (*depth, queue("ProofDeadLetterQueue")),
        (*depth, queue("LargeDeadLetterQueue")), (*depth, queue("UploadEventsDeadLetterQueue")),
        (*age, queue("WorkQueue")), (*age, queue("ProofQueue")), (*age, queue("LargeQueue")),
        ("AWS/Lambda", "Errors", {"Ref": "WorkerFunctionName"}),
        ("AWS/Lambda", "Errors", {"Ref": "ProofWorkerFunctionName"}),
        ("AWS/Lambda", "Errors", {"Ref": "LargeWorkerFunctionName"}),
        ("InternetID/Verification", "JobsFailed", "verification-queue"),
    ]))
    for alarm in alarms:
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["Period"] == {"Ref": "AlarmPeriodSeconds"}
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    by_name = _alarms(template)
    assert by_name["DeadLetterQueueDepthAlarm"]["Threshold"] == 0
    assert by_name["UploadEventsDeadLetterQueueDepthAlarm"]["Threshold"] == 0
    assert int(_default(template, by_name["OldestMessageAgeAlarm"]["Threshold"])) == 300
    assert _default(template, {"Ref": "WorkerFunctionName"}) == "internetid-verification-dev-process_verification_job"
    assert _default(template, {"Ref": "ProofWorkerFunctionName"}) == "internetid-verification-dev-process_proof_job"
    assert _default(template, {"Ref": "LargeWorkerFunctionName"}) == "internetid-verification-dev-process_large_job"


def test_every_queue_has_a_dead_letter_queue(template):
    resources = template["Resources"]
    for queue, dead in (("WorkQueue", "DeadLetterQueue"), ("ProofQueue", "ProofDeadLetterQueue"),
                        ("LargeQueue", "LargeDeadLetterQueue"), ("UploadEventsQueue", "UploadEventsDeadLetterQueue")):
        redrive = resources[queue]["Properties"]["RedrivePolicy"]
        assert redrive == {"deadLetterTargetArn": {"Fn::GetAtt": [dead, "Arn"]},
                           "maxReceiveCount": {"Ref": "MaxReceiveCount"}}
    assert resources["ProofQueue"]["Properties"]["VisibilityTimeout"] == {"Ref": "VisibilityTimeoutSeconds"}


def test_outputs_cover_the_app_settings(template):
    assert set(template["Outputs"]) == {
        "UploadBucketName", "QueueUrl", "QueueName", "QueueArn", "DeadLetterQueueUrl",
        "DeadLetterQueueName", "DeadLetterQueueArn", "AlarmTopicArn", "FunctionPolicyArn",
        "UploadEventsQueueUrl", "UploadEventsQueueName", "ProofQueueUrl", "ProofQueueName",
        "ProofDeadLetterQueueUrl", "ProofDeadLetterQueueName", "UploadEventsDeadLetterQueueUrl",
        "UploadEventsDeadLetterQueueName", "WorkerReservedConcurrency", "LargeQueueUrl", "LargeQueueName",
        "LargeDeadLetterQueueUrl", "LargeDeadLetterQueueName",
    }
    assert set(STACK_OUTPUT_ENVIRONMENT) <= set(template["Outputs"])


def test_uploads_notify_the_upload_events_queue(template):
    bucket = template["Resources"]["UploadBucket"]
    [notification] = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    assert notification["Queue"] == {"Fn::GetAtt": ["UploadEventsQueue", "Arn"]}
    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": {"Ref": "UploadsPrefix"}}]
    assert bucket["DependsOn"] == "UploadEventsQueuePolicy"  # S3 checks the queue's policy on creation


def test_function_policy_is_least_privilege(template):
    document = template["Resources"]["FunctionPolicy"]["Properties"]["PolicyDocument"]
    actions = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] != "*"
        stmt_actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a.endswith("*") for a in stmt_actions)
        actions.update(stmt_actions)
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions
    assert {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes", "sqs:GetQueueUrl"} <= actions
    assert "cloudwatch:PutMetricData" not in actions  # metrics go out as EMF log lines
    objects = next(s for s in document["Statement"] if "s3:GetObject" in s["Action"])
    assert objects["Resource"] == [{"Fn::Sub": "${UploadBucket.Arn}/${UploadsPrefix}*"},
                                   {"Fn::Sub": "${UploadBucket.Arn}/${InlinePrefix}*"}]


def test_resolver_turns_alarm_properties_into_api_arguments(template):
    physical = {
        "WorkQueue": "http://127.0.0.1:1/123456789012/q",
        "DeadLetterQueue": "http://127.0.0.1:1/123456789012/q-dlq",
        "UploadEventsQueue": "http://127.0.0.1:1/123456789012/q-upload-events",
        "ProofQueue": "http://127.0.0.1:1/123456789012/q-proof",
        "ProofDeadLetterQueue": "http://127.0.0.1:1/123456789012/q-proof-dlq",
        "LargeQueue": "http://127.0.0.1:1/123456789012/q-large",
        "LargeDeadLetterQueue": "http://127.0.0.1:1/123456789012/q-large-dlq",
        "AlarmTopic": "arn:aws:sns:us-east-1:123456789012:q-alarms",
        "UploadBucket": "the-bucket",
    }
    r = TemplateResolver(template, {"QueueName": "q", "AlarmPeriodSeconds": 10, "CorsAllowedOrigin": "*"}, physical,
                         "us-east-1", "123456789012", "stack",
                         "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/0f8fad5b-d9cb-469f-a165-70867728950e")
    dlq = r.resolve(template["Resources"]["DeadLetterQueueDepthAlarm"]["Properties"])
    assert dlq["AlarmName"] == "q-dlq-depth"
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": "q-dlq"}]
    assert dlq["Period"] == "10" and dlq["AlarmActions"] == [physical["AlarmTopic"]]
    policy = r.resolve(template["Resources"]["FunctionPolicy"]["Properties"]["PolicyDocument"])
    resources = [s["Resource"] for s in policy["Statement"]]
    assert ["arn:aws:s3:::the-bucket/uploads/*", "arn:aws:s3:::the-bucket/inline/*"] in resources
    assert ["arn:aws:sqs:us-east-1:123456789012:q", "arn:aws:sqs:us-east-1:123456789012:q-dlq",
            "arn:aws:sqs:us-east-1:123456789012:q-proof", "arn:aws:sqs:us-east-1:123456789012:q-proof-dlq",
            "arn:aws:sqs:us-east-1:123456789012:q-large", "arn:aws:sqs:us-east-1:123456789012:q-large-dlq",
            "arn:aws:sqs:us-east-1:123456789012:q-upload-events"] in resources
    bucket = r.resolve(template["Resources"]["UploadBucket"]["Properties"])
    assert bucket["BucketName"] == "internetid-uploads-0f8fad5b-d9cb-469f-a165-70867728950e"  # from the stack id
    assert not r.enabled("AlarmEmailSubscription")
    assert not r.condition("HasAlarmEmail")


OUTPUTS = {
    "UploadBucketName": "bucket-1",
    "QueueUrl": "http://127.0.0.1:1/123456789012/internetid-verification",
    "QueueName": "internetid-verification",
    "DeadLetterQueueUrl": "http://127.0.0.1:1/123456789012/internetid-verification-dlq",
    "DeadLetterQueueName": "internetid-verification-dlq",
    "ProofQueueUrl": "http://127.0.0.1:1/123456789012/internetid-verification-proof",
    "ProofQueueName": "internetid-verification-proof",
    "ProofDeadLetterQueueUrl": "http://127.0.0.1:1/123456789012/internetid-verification-proof-dlq",
    "LargeQueueUrl": "http://127.0.0.1:1/123456789012/internetid-verification-large",
    "LargeQueueName": "internetid-verification-large",
    "LargeDeadLetterQueueUrl": "http://127.0.0.1:1/123456789012/internetid-verification-large-dlq",
    "UploadEventsQueueUrl": "http://127.0.0.1:1/123456789012/internetid-verification-upload-events",
    "UploadEventsQueueName": "internetid-verification-upload-events",
    "FunctionPolicyArn": "arn:aws:iam::123456789012:policy/p",
}


def test_record_outputs_creates_a_chalice_config(tmp_path):
    record = _load_record_outputs()
    policy = {"Version": "2012-10-17", "Statement": []}
    path = record.update_chalice_config(OUTPUTS, tmp_path, "dev", policy)
    config = json.loads(path.read_text())
    assert config["app_name"] == "internetid-verification"
    stage = config["stages"]["dev"]
    assert stage["api_gateway_stage"] == "api"
    assert stage["lambda_functions"]["process_verification_job"]["lambda_timeout"] == 60
    assert stage["lambda_functions"]["process_large_job"]["lambda_timeout"] == 900
    assert stage["environment_variables"] == {
        "UPLOAD_BUCKET": "bucket-1",
        "QUEUE_URL": OUTPUTS["QueueUrl"],
        "QUEUE_NAME": "internetid-verification",
        "DEAD_LETTER_QUEUE_URL": OUTPUTS["DeadLetterQueueUrl"],
        "DEAD_LETTER_QUEUE_NAME": "internetid-verification-dlq",
        "PROOF_QUEUE_URL": OUTPUTS["ProofQueueUrl"],
        "PROOF_QUEUE_NAME": "internetid-verification-proof",
        "PROOF_DEAD_LETTER_QUEUE_URL": OUTPUTS["ProofDeadLetterQueueUrl"],
        "LARGE_QUEUE_URL": OUTPUTS["LargeQueueUrl"],
        "LARGE_QUEUE_NAME": "internetid-verification-large",
        "LARGE_DEAD_LETTER_QUEUE_URL": OUTPUTS["LargeDeadLetterQueueUrl"],
        "UPLOAD_EVENTS_QUEUE_URL": OUTPUTS["UploadEventsQueueUrl"],
        "UPLOAD_EVENTS_QUEUE_NAME": "internetid-verification-upload-events",
    }
    assert stage["autogen_policy"] is False and stage["iam_policy_file"] == "policy-dev.json"
    assert json.loads((tmp_path / ".chalice" / "policy-dev.json").read_text()) == policy


def test_record_outputs_keeps_the_other_keys(tmp_path):
    record = _load_record_outputs()
    (tmp_path / ".chalice").mkdir()
    existing = {
        "version": "2.0", "app_name": "internetid-verification", "automatic_layer": True,
        "stages": {"dev": {"api_gateway_stage": "v1", "environment_variables": {"RPC_URL": "http://x", "QUEUE_URL": "old"},
                           "lambda_functions": {"process_verification_job": {"lambda_timeout": 90}}},
                   "prod": {"api_gateway_stage": "api"}},
    }
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(existing))
    config = json.loads(record.update_chalice_config(OUTPUTS, tmp_path, "dev").read_text())
    assert config["automatic_layer"] is True and config["stages"]["prod"] == {"api_gateway_stage": "api"}
    dev = config["stages"]["dev"]
    assert dev["api_gateway_stage"] == "v1"
    assert dev["lambda_functions"]["process_verification_job"]["lambda_timeout"] == 90
    assert dev["environment_variables"]["RPC_URL"] == "http://x"
    assert dev["environment_variables"]["QUEUE_URL"] == OUTPUTS["QueueUrl"]
    assert "iam_policy_file" not in dev  # no policy given: IAM settings untouched


def test_the_api_throttling_merge_template_throttles_every_method_of_the_stage():
    """infra/api-throttling.json, merged into `chalice package`'s SAM template, sets stage
    throttling on every method (API Gateway's coarse shield in front of the per-IP limit)."""
    merge = json.loads((ROOT / "infra" / "api-throttling.json").read_text(encoding="utf-8"))
    [setting] = merge["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    assert 0 < setting["ThrottlingRateLimit"] <= setting["ThrottlingBurstLimit"]
