"""The security parts of infra/template.yaml: who may send upload events, which origins may
upload from a browser, and the cap on the worker's concurrency."""
from __future__ import annotations

import json
import re

from tests.unit.test_template import OUTPUTS, TEMPLATE, _load_record_outputs, template  # noqa: F401
from devstack.emulator import load_template


def test_only_the_upload_bucket_may_send_upload_events(template):
    (statement,) = template["Resources"]["UploadEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    condition = statement["Condition"]
    assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    arn_format, names = condition["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert arn_format == "arn:${AWS::Partition}:s3:::${Name}"
    # The very name the bucket gets, whether UploadBucketName is given or not.
    assert names["Name"] == template["Resources"]["UploadBucket"]["Properties"]["BucketName"]


def test_the_generated_bucket_name_is_a_valid_bucket_name():
    stack_uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"  # AWS::StackId ends with the stack's UUID
    name = f"internetid-uploads-{stack_uuid}"
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name)
    text = TEMPLATE.read_text()
    assert text.count('!Sub ["internetid-uploads-${Id}", {Id: !Select [2, !Split ["/", !Ref AWS::StackId]]}]') == 2


def test_browser_upload_origins_have_no_wildcard_default(template):
    parameter = template["Parameters"]["CorsAllowedOrigin"]
    assert "Default" not in parameter  # a deployment must name its origin
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("https://app.example.org") and pattern.fullmatch("*")
    assert not pattern.fullmatch("https://a.example, https://b.example") and not pattern.fullmatch("")
    (rule,) = template["Resources"]["UploadBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedOrigins"] == [{"Ref": "CorsAllowedOrigin"}]


def test_the_worker_gets_the_templates_reserved_concurrency(template, tmp_path):
    assert int(template["Parameters"]["WorkerReservedConcurrency"]["Default"]) >= 1
    assert template["Outputs"]["WorkerReservedConcurrency"]["Value"] == {"Ref": "WorkerReservedConcurrency"}
    record = _load_record_outputs()
    path = record.update_chalice_config({**OUTPUTS, "WorkerReservedConcurrency": "7"}, tmp_path, "dev")
    worker = json.loads(path.read_text())["stages"]["dev"]["lambda_functions"]["process_verification_job"]
    assert worker["reserved_concurrency"] == 7
