"""What moto's CloudFormation skips of infra/template.yaml, created through the service APIs.

``TemplateResolver`` evaluates the template's intrinsic functions against a created stack; each
fill-in in ``MOTO_GAPS`` is named for the moto gap it covers and creates its part from the
resolved properties and the resource's physical id, returning the parts it created. None changes
a part the emulator already holds, so on LocalStack, which creates everything, they do nothing.

Not filled in, because the local stack never enables them: ``AWS::S3::BucketPolicy`` (local
endpoints are plain HTTP, so ``EnforceSecureTransport`` is false) and ``AWS::SNS::Subscription``
(no ``AlarmEmail`` locally). moto skips both.
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from devstack.emulator import Emulator


class EmulatorError(RuntimeError):
    pass


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


class TemplateResolver:
    """Evaluates the intrinsic functions the template uses, against a created stack.

    Knows: Ref (parameters, pseudo parameters, resources -> physical id), Fn::GetAtt (queue
    QueueName/Arn, topic TopicName/TopicArn, bucket Arn), Fn::Sub, Fn::If/Equals/Not, Fn::Select,
    Fn::Split and Condition. Anything else raises, so a template change that needs
    more is noticed at once.
    """

    def __init__(self, template: Mapping, parameters: Mapping[str, Any], physical_ids: Mapping[str, str],
                 region: str, account_id: str, stack_name: str, stack_id: str | None = None):
        self.template = template
        self.resources = template.get("Resources", {})
        self.physical_ids = dict(physical_ids)
        self.pseudo = {"AWS::Region": region, "AWS::AccountId": account_id, "AWS::Partition": "aws",
                       "AWS::StackName": stack_name, "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": _NO_VALUE}
        if stack_id is not None:
            self.pseudo["AWS::StackId"] = stack_id
        self.parameters = {name: str(parameters[name] if name in parameters else spec["Default"])
                           for name, spec in template.get("Parameters", {}).items()
                           if name in parameters or "Default" in spec}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def enabled(self, logical_id: str) -> bool:
        cond = self.resources[logical_id].get("Condition")
        return True if cond is None else self.condition(cond)

    def ref(self, name: str) -> Any:
        for values in (self.parameters, self.pseudo, self.physical_ids):
            if name in values:
                return values[name]
        raise EmulatorError(f"cannot resolve Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.resources[logical_id]["Type"]
        physical = self.physical_ids.get(logical_id)
        if physical is None:
            raise EmulatorError(f"{logical_id} has no physical id on the emulator")
        region, account = self.pseudo["AWS::Region"], self.pseudo["AWS::AccountId"]
        values: dict[str, str] = {}
        if kind == "AWS::SQS::Queue":
            name = physical.rstrip("/").rsplit("/", 1)[-1]
            values = {"QueueName": name, "QueueUrl": physical, "Arn": f"arn:aws:sqs:{region}:{account}:{name}"}
        elif kind == "AWS::SNS::Topic":
            values = {"TopicArn": physical, "TopicName": physical.rsplit(":", 1)[-1]}
        elif kind == "AWS::S3::Bucket":
            values = {"Arn": f"arn:aws:s3:::{physical}"}
        if attribute not in values:
            raise EmulatorError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute}")
        return values[attribute]

    def sub(self, text: str, variables: Mapping[str, Any] | None = None) -> str:
        variables = variables or {}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            function = self._functions().get(key)
            if function is not None:
                return function(arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self.ref,
            "Fn::GetAtt": lambda a: self.get_att(*(a.split(".", 1) if isinstance(a, str) else a)),
            "Fn::Sub": lambda a: self.sub(a) if isinstance(a, str) else self.sub(a[0], a[1]),
            "Fn::If": lambda a: self.resolve(a[1] if self.condition(a[0]) else a[2]),
            "Fn::Equals": lambda a: str(self.resolve(a[0])) == str(self.resolve(a[1])),
            "Fn::Not": lambda a: not self.resolve(a[0]),
            "Fn::Select": lambda a: self.resolve(a[1])[int(self.resolve(a[0]))],
            "Fn::Split": lambda a: str(self.resolve(a[1])).split(a[0]),
            "Condition": self.condition,
        }


def _absent(call: Callable[[], Any], *codes: str) -> bool:
    """True when ``call`` fails with one of the 'not configured' error codes."""
    try:
        call()
        return False
    except ClientError as e:
        if e.response.get("Error", {}).get("Code", "") in codes:
            return True
        raise


def _moto_skips_alarms(aws: Emulator, props: Mapping[str, Any], physical_id: str | None) -> list[str]:
    """moto warns 'No Moto CloudFormation support for AWS::CloudWatch::Alarm' and creates nothing."""
    cw = aws.client("cloudwatch")
    if cw.describe_alarms(AlarmNames=[props["AlarmName"]])["MetricAlarms"]:
        return []
    args = dict(props)
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in args:
            args[key] = int(args[key])
    if "Threshold" in args:
        args["Threshold"] = float(args["Threshold"])
    if "ActionsEnabled" in args:
        args["ActionsEnabled"] = str(args["ActionsEnabled"]).lower() == "true"
    cw.put_metric_alarm(**args)
    return ["alarm"]


def _moto_skips_queue_policies(aws: Emulator, props: Mapping[str, Any], physical_id: str | None) -> list[str]:
    """AWS::SQS::QueuePolicy is not in moto's CloudFormation model map."""
    sqs, created = aws.client("sqs"), []
    for queue in props["Queues"]:
        url = sqs.get_queue_url(QueueName=queue.rstrip("/").rsplit("/", 1)[1])["QueueUrl"]
        if "Policy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {}):
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
            created.append("queue-policy")
    return created


def _moto_skips_bucket_settings(aws: Emulator, props: Mapping[str, Any], bucket: str) -> list[str]:
    """moto's AWS::S3::Bucket applies only the name, encryption and tags: not the public access
    block, lifecycle rules, CORS, ownership controls or event notifications."""
    s3, created = aws.client("s3"), []
    if "PublicAccessBlockConfiguration" in props and _absent(
            lambda: s3.get_public_access_block(Bucket=bucket), "NoSuchPublicAccessBlockConfiguration"):
        block = {k: str(v).lower() == "true" for k, v in props["PublicAccessBlockConfiguration"].items()}
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
        created.append("public-access-block")
    if "LifecycleConfiguration" in props and _absent(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket), "NoSuchLifecycleConfiguration"):
        rules = []
        for r in props["LifecycleConfiguration"]["Rules"]:
            rule: dict[str, Any] = {"Status": r["Status"], "Filter": {"Prefix": r.get("Prefix", "")}}
            if "Id" in r:
                rule["ID"] = r["Id"]
            if "ExpirationInDays" in r:
                rule["Expiration"] = {"Days": int(r["ExpirationInDays"])}
            if "AbortIncompleteMultipartUpload" in r:
                days = int(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
                rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
            rules.append(rule)
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        created.append("lifecycle")
    if "CorsConfiguration" in props and _absent(lambda: s3.get_bucket_cors(Bucket=bucket), "NoSuchCORSConfiguration"):
        names = {"Id": "ID", "AllowedMethods": "AllowedMethods", "AllowedOrigins": "AllowedOrigins",
                 "AllowedHeaders": "AllowedHeaders", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}
        rules = [{names[k]: int(v) if k == "MaxAge" else v for k, v in r.items() if k in names}
                 for r in props["CorsConfiguration"]["CorsRules"]]
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
        created.append("cors")
    if "OwnershipControls" in props and _absent(
            lambda: s3.get_bucket_ownership_controls(Bucket=bucket), "OwnershipControlsNotFoundError"):
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
        created.append("ownership-controls")
    if "NotificationConfiguration" in props and not s3.get_bucket_notification_configuration(
            Bucket=bucket).get("QueueConfigurations"):
        queues = []
        for q in props["NotificationConfiguration"]["QueueConfigurations"]:
            queue: dict[str, Any] = {"QueueArn": q["Queue"], "Events": [q["Event"]]}
            if rules := q.get("Filter", {}).get("S3Key", {}).get("Rules", []):
                queue["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
            queues.append(queue)
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues})
        created.append("notifications")
    return created


FillIn = Callable[["Emulator", Mapping[str, Any], Any], list[str]]
MOTO_GAPS: dict[str, FillIn] = {
    "AWS::CloudWatch::Alarm": _moto_skips_alarms,
    "AWS::S3::Bucket": _moto_skips_bucket_settings,
    "AWS::SQS::QueuePolicy": _moto_skips_queue_policies,
}
