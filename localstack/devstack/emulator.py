"""The local AWS: moto or LocalStack, with ``infra/template.yaml`` applied to it.

One source of truth: the same CloudFormation template that is deployed to AWS is created as a
stack on the emulator with ``create_stack``. Where the emulator's CloudFormation skips part of the
template, the skipped part is created through the service APIs from the template's own
properties (resolved against the stack's parameters and physical resource ids), so that both
backends end up holding the same resources:

* moto skips ``AWS::CloudWatch::Alarm`` (warning only), ``AWS::S3::BucketPolicy`` and
  ``AWS::SNS::Subscription``, and of ``AWS::S3::Bucket`` applies only the encryption and the
  tags (not the public access block, lifecycle rules, CORS or ownership controls);
* LocalStack creates all of it.

Usage::

    with start_emulator("moto") as aws:          # or "localstack"
        outputs = aws.apply_template({"VisibilityTimeoutSeconds": 30})
        env = {**aws.aws_env(), **aws.app_env()}  # AWS_ENDPOINT_URL, credentials, UPLOAD_BUCKET, ...

Command line: ``python -m devstack.emulator [--backend moto|localstack]`` applies the template,
prints the endpoint and outputs as JSON and runs until Ctrl-C.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.config import STACK_OUTPUT_ENVIRONMENT

from . import localstack_host

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "infra" / "template.yaml"
DEFAULT_STACK_NAME = "internetid-verification-resources"
DEFAULT_REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
BACKENDS = ("moto", "localstack")

# Stack output -> the app's environment variable (chalicelib/config.py); as infra/record_outputs.py.


class EmulatorError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# The template


class _TemplateLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation's short tags (``!Ref x``) into their long form."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if tag_suffix == "Ref" else ("Condition" if tag_suffix == "Condition" else f"Fn::{tag_suffix}")
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _construct_intrinsic)


def template_text(path: Path = TEMPLATE_PATH) -> str:
    return Path(path).read_text()


def load_template(path: Path = TEMPLATE_PATH) -> dict:
    """The template as a dict, intrinsic functions in long form."""
    return yaml.load(template_text(path), Loader=_TemplateLoader)  # noqa: S506 (SafeLoader subclass)


class TemplateResolver:
    """Evaluates the few intrinsic functions the template uses, against a created stack.

    Knows: Ref (parameters, pseudo parameters, resources -> physical id), Fn::GetAtt (queue
    QueueName/Arn, topic TopicName/TopicArn, bucket Arn), Fn::Sub, Fn::If/Equals/Not/And/Or,
    Fn::Join, Fn::Select and Condition. Anything else raises, so a template change that needs
    more is noticed at once.
    """

    def __init__(self, template: Mapping, parameters: Mapping[str, Any], physical_ids: Mapping[str, str],
                 region: str, account_id: str, stack_name: str):
        self.template = template
        self.resources = template.get("Resources", {})
        self.physical_ids = dict(physical_ids)
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.parameters = {}
        for name, spec in template.get("Parameters", {}).items():
            if name in parameters:
                self.parameters[name] = str(parameters[name])
            elif "Default" in spec:
                self.parameters[name] = str(spec["Default"])

    # -- conditions
    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def enabled(self, logical_id: str) -> bool:
        cond = self.resources[logical_id].get("Condition")
        return True if cond is None else self.condition(cond)

    # -- values
    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.physical_ids:
            return self.physical_ids[name]
        raise EmulatorError(f"cannot resolve Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.resources[logical_id]["Type"]
        physical = self.physical_ids.get(logical_id)
        if physical is None:
            raise EmulatorError(f"{logical_id} has no physical id on the emulator")
        region, account = self.pseudo["AWS::Region"], self.pseudo["AWS::AccountId"]
        if kind == "AWS::SQS::Queue":
            name = physical.rstrip("/").rsplit("/", 1)[-1]
            values = {"QueueName": name, "QueueUrl": physical, "Arn": f"arn:aws:sqs:{region}:{account}:{name}"}
        elif kind == "AWS::SNS::Topic":
            values = {"TopicArn": physical, "TopicName": physical.rsplit(":", 1)[-1]}
        elif kind == "AWS::S3::Bucket":
            values = {"Arn": f"arn:aws:s3:::{physical}"}
        else:
            values = {}
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
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            handler = self._functions().get(key)
            if handler is not None:
                return handler(arg)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not _NO_VALUE:
                out[k] = resolved
        return out

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self.ref,
            "Fn::GetAtt": lambda a: self.get_att(*(a.split(".", 1) if isinstance(a, str) else a)),
            "Fn::Sub": lambda a: self.sub(a) if isinstance(a, str) else self.sub(a[0], a[1]),
            "Fn::If": lambda a: self.resolve(a[1] if self.condition(a[0]) else a[2]),
            "Fn::Equals": lambda a: str(self.resolve(a[0])) == str(self.resolve(a[1])),
            "Fn::Not": lambda a: not self.resolve(a[0]),
            "Fn::And": lambda a: all(self.resolve(x) for x in a),
            "Fn::Or": lambda a: any(self.resolve(x) for x in a),
            "Fn::Join": lambda a: a[0].join(str(x) for x in self.resolve(a[1])),
            "Fn::Select": lambda a: self.resolve(a[1])[int(self.resolve(a[0]))],
            "Condition": self.condition,
        }


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


# --------------------------------------------------------------------------------------------
# Filling in what the emulator's CloudFormation skipped


def _int_keys(props: dict, *keys: str) -> None:
    for k in keys:
        if k in props:
            props[k] = int(props[k])


def _alarm_arguments(props: Mapping[str, Any]) -> dict:
    """put_metric_alarm arguments from resolved AWS::CloudWatch::Alarm properties (same names)."""
    args = {k: v for k, v in props.items()}
    _int_keys(args, "Period", "EvaluationPeriods", "DatapointsToAlarm")
    if "Threshold" in args:
        args["Threshold"] = float(args["Threshold"])
    if "ActionsEnabled" in args:
        args["ActionsEnabled"] = str(args["ActionsEnabled"]).lower() == "true"
    return args


def _lifecycle_rules(cfn_rules: list[Mapping[str, Any]]) -> list[dict]:
    """AWS::S3::Bucket LifecycleConfiguration.Rules -> put_bucket_lifecycle_configuration Rules."""
    rules = []
    for r in cfn_rules:
        rule: dict[str, Any] = {"Status": r["Status"], "Filter": {"Prefix": r.get("Prefix", "")}}
        if "Id" in r:
            rule["ID"] = r["Id"]
        if "ExpirationInDays" in r:
            rule["Expiration"] = {"Days": int(r["ExpirationInDays"])}
        if "AbortIncompleteMultipartUpload" in r:
            rule["AbortIncompleteMultipartUpload"] = {
                "DaysAfterInitiation": int(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
            }
        rules.append(rule)
    return rules


def _queue_notification(cfn: Mapping[str, Any]) -> dict:
    """A CloudFormation QueueConfiguration as S3's API spells it."""
    rules = cfn.get("Filter", {}).get("S3Key", {}).get("Rules", [])
    notification: dict[str, Any] = {"QueueArn": cfn["Queue"], "Events": [cfn["Event"]]}
    if rules:
        notification["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
    return notification


def _cors_rules(cfn_rules: list[Mapping[str, Any]]) -> list[dict]:
    names = {"Id": "ID", "AllowedMethods": "AllowedMethods", "AllowedOrigins": "AllowedOrigins",
             "AllowedHeaders": "AllowedHeaders", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}
    rules = []
    for r in cfn_rules:
        rule = {names[k]: v for k, v in r.items() if k in names}
        _int_keys(rule, "MaxAgeSeconds")
        rules.append(rule)
    return rules


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _missing(call: Callable[[], Any], *codes: str) -> bool:
    """True when ``call`` fails with one of the 'not configured' error codes."""
    try:
        call()
        return False
    except ClientError as e:
        if _error_code(e) in codes:
            return True
        raise


# --------------------------------------------------------------------------------------------
# The emulator


class Emulator:
    """A running AWS emulator (moto or LocalStack) and the resource stack applied to it."""

    def __init__(self, backend: str, endpoint_url: str, region: str = DEFAULT_REGION,
                 on_stop: Callable[[], None] | None = None, details: Mapping[str, Any] | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        self.backend = backend
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region = region
        self.outputs: dict[str, str] = {}
        self.stack_name: str | None = None
        self.parameters: dict[str, str] = {}
        self.filled_in: list[str] = []  # "LogicalId:what" created through service APIs, not by the stack
        self.details: dict[str, Any] = dict(details or {})
        self._on_stop = on_stop
        self._clients: dict[str, Any] = {}

    # -- plumbing
    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service, endpoint_url=self.endpoint_url, region_name=self.region,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}), **CREDENTIALS,
            )
        return self._clients[service]

    def aws_env(self) -> dict[str, str]:
        """What a child process (or this one) needs to reach the emulator with plain boto3."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def app_env(self) -> dict[str, str]:
        """The app's settings from the stack outputs (UPLOAD_BUCKET, QUEUE_URL, ...)."""
        return {env: self.outputs[key] for key, env in STACK_OUTPUT_ENVIRONMENT.items() if key in self.outputs}

    # -- the template
    def apply_template(self, parameters: Mapping[str, Any] | None = None,
                       stack_name: str = DEFAULT_STACK_NAME, template_path: Path = TEMPLATE_PATH,
                       timeout: float = 300.0) -> dict[str, str]:
        """Create (or update) the resource stack from the template; returns its outputs."""
        # Local endpoints are plain HTTP: a deny-non-TLS bucket policy would refuse every request
        # (moto evaluates the Deny). Callers may still pass EnforceSecureTransport explicitly.
        params = {"EnforceSecureTransport": "false"}
        params.update({k: str(v) for k, v in (parameters or {}).items()})
        cfn = self.client("cloudformation")
        body = template_text(template_path)
        cfn_params = [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]
        capabilities = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
        status = self._stack_status(stack_name)
        if status is not None and status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"):
            cfn.delete_stack(StackName=stack_name)
            self._wait_stack(stack_name, timeout, deleting=True)
            status = None
        if status is None:
            cfn.create_stack(StackName=stack_name, TemplateBody=body, Parameters=cfn_params,
                             Capabilities=capabilities)
        else:
            try:
                cfn.update_stack(StackName=stack_name, TemplateBody=body, Parameters=cfn_params,
                                 Capabilities=capabilities)
            except ClientError as e:
                if "No updates are to be performed" not in str(e):
                    raise
        self._wait_stack(stack_name, timeout)
        self.stack_name = stack_name
        self.parameters = params
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        # moto's CloudFormation reports queue URLs on the AWS host (https://sqs.<region>.amazonaws.com/...);
        # ask SQS itself for URLs on the emulator's endpoint.
        sqs = self.client("sqs")
        for url_key, name_key in (("QueueUrl", "QueueName"), ("DeadLetterQueueUrl", "DeadLetterQueueName"),
                                  ("UploadEventsQueueUrl", "UploadEventsQueueName")):
            if name_key in self.outputs:
                self.outputs[url_key] = sqs.get_queue_url(QueueName=self.outputs[name_key])["QueueUrl"]
        self._fill_in(load_template(template_path), params, stack_name)
        return dict(self.outputs)

    def _stack_status(self, stack_name: str) -> str | None:
        try:
            stacks = self.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as e:
            if "does not exist" in str(e):
                return None
            raise
        if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
            return None
        return stacks[0]["StackStatus"]

    def _wait_stack(self, stack_name: str, timeout: float, deleting: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self._stack_status(stack_name)
            if deleting and status is None:
                return
            if status is not None and not status.endswith("_IN_PROGRESS"):
                if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
                    return
                raise EmulatorError(f"stack {stack_name} is {status}:\n{self._stack_failures(stack_name)}")
            if time.monotonic() > deadline:
                raise EmulatorError(f"stack {stack_name} still {status} after {timeout:.0f}s")
            time.sleep(0.5)

    def _stack_failures(self, stack_name: str) -> str:
        try:
            events = self.client("cloudformation").describe_stack_events(StackName=stack_name)["StackEvents"]
        except ClientError:
            return ""
        return "\n".join(
            f"{e['LogicalResourceId']}: {e['ResourceStatus']} {e.get('ResourceStatusReason', '')}"
            for e in events if "FAILED" in e.get("ResourceStatus", "")
        )

    def resolver(self, template: Mapping | None = None) -> TemplateResolver:
        """A resolver for the applied stack (physical ids from describe_stack_resources)."""
        if self.stack_name is None:
            raise EmulatorError("apply_template first")
        template = template or load_template()
        resources = self.client("cloudformation").describe_stack_resources(StackName=self.stack_name)
        # (moto lists the resources it skipped without logical or physical id)
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                    for r in resources["StackResources"] if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
        account = self.client("sts").get_caller_identity()["Account"]
        return TemplateResolver(template, self.parameters, physical, self.region, account, self.stack_name)

    def _fill_in(self, template: Mapping, params: Mapping[str, str], stack_name: str) -> None:
        """Create through the service APIs what the emulator's CloudFormation skipped."""
        r = self.resolver(template)
        s3, sns, cw = self.client("s3"), self.client("sns"), self.client("cloudwatch")
        for logical_id, resource in template.get("Resources", {}).items():
            if not r.enabled(logical_id):
                continue
            kind = resource["Type"]
            props = r.resolve(resource.get("Properties", {}))
            if kind == "AWS::CloudWatch::Alarm":
                found = cw.describe_alarms(AlarmNames=[props["AlarmName"]])["MetricAlarms"]
                if not found:
                    cw.put_metric_alarm(**_alarm_arguments(props))
                    self.filled_in.append(f"{logical_id}:alarm")
            elif kind == "AWS::S3::Bucket":
                bucket = r.ref(logical_id)
                self._fill_in_bucket(logical_id, bucket, props)
            elif kind == "AWS::S3::BucketPolicy":
                if _missing(lambda: s3.get_bucket_policy(Bucket=props["Bucket"]), "NoSuchBucketPolicy"):
                    s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
                    self.filled_in.append(f"{logical_id}:bucket-policy")
            elif kind == "AWS::SQS::QueuePolicy":
                sqs = self.client("sqs")
                for queue_url in props["Queues"]:
                    url = sqs.get_queue_url(QueueName=queue_url.rstrip("/").rsplit("/", 1)[1])["QueueUrl"]
                    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
                    if "Policy" not in attributes.get("Attributes", {}):
                        sqs.set_queue_attributes(QueueUrl=url,
                                                 Attributes={"Policy": json.dumps(props["PolicyDocument"])})
                        self.filled_in.append(f"{logical_id}:queue-policy")
            elif kind == "AWS::SNS::Subscription":
                subs = sns.list_subscriptions_by_topic(TopicArn=props["TopicArn"])["Subscriptions"]
                if not any(s["Protocol"] == props["Protocol"] and s["Endpoint"] == props["Endpoint"] for s in subs):
                    sns.subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"])
                    self.filled_in.append(f"{logical_id}:subscription")

    def _fill_in_bucket(self, logical_id: str, bucket: str, props: Mapping[str, Any]) -> None:
        s3 = self.client("s3")
        if "PublicAccessBlockConfiguration" in props and _missing(
            lambda: s3.get_public_access_block(Bucket=bucket), "NoSuchPublicAccessBlockConfiguration"
        ):
            block = {k: str(v).lower() == "true" for k, v in props["PublicAccessBlockConfiguration"].items()}
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
            self.filled_in.append(f"{logical_id}:public-access-block")
        if "LifecycleConfiguration" in props and _missing(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket), "NoSuchLifecycleConfiguration"
        ):
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket,
                LifecycleConfiguration={"Rules": _lifecycle_rules(props["LifecycleConfiguration"]["Rules"])},
            )
            self.filled_in.append(f"{logical_id}:lifecycle")
        if "CorsConfiguration" in props and _missing(
            lambda: s3.get_bucket_cors(Bucket=bucket), "NoSuchCORSConfiguration"
        ):
            s3.put_bucket_cors(Bucket=bucket,
                               CORSConfiguration={"CORSRules": _cors_rules(props["CorsConfiguration"]["CorsRules"])})
            self.filled_in.append(f"{logical_id}:cors")
        if "OwnershipControls" in props and _missing(
            lambda: s3.get_bucket_ownership_controls(Bucket=bucket), "OwnershipControlsNotFoundError"
        ):
            s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
            self.filled_in.append(f"{logical_id}:ownership-controls")
        if "NotificationConfiguration" in props:
            current = s3.get_bucket_notification_configuration(Bucket=bucket)
            if not current.get("QueueConfigurations"):
                queues = [_queue_notification(q) for q in props["NotificationConfiguration"]["QueueConfigurations"]]
                s3.put_bucket_notification_configuration(Bucket=bucket,
                                                         NotificationConfiguration={"QueueConfigurations": queues})
                self.filled_in.append(f"{logical_id}:notifications")
        if "BucketEncryption" in props and _missing(
            lambda: s3.get_bucket_encryption(Bucket=bucket), "ServerSideEncryptionConfigurationNotFoundError"
        ):
            rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
            self.filled_in.append(f"{logical_id}:encryption")

    # -- lifetime
    def stop(self) -> None:
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            on_stop()

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator(backend={self.backend!r}, endpoint_url={self.endpoint_url!r})"


# --------------------------------------------------------------------------------------------
# Starting one


class _DropSkippedResourceWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No Moto CloudFormation support" not in record.getMessage()


def start_moto(port: int | None = None, region: str = DEFAULT_REGION, in_process: bool = True,
               timeout: float = 30.0) -> Emulator:
    """moto's server on a free loopback port: a thread of this process, or (``in_process=False``)
    a child process.

    In-process is the default and starts in milliseconds, but it shares moto's state with this
    process: a ``mock_aws()`` started here later resets every backend, the server's included.
    Use ``in_process=False`` where the same process also runs ``mock_aws`` tests.
    """
    port = port or localstack_host.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    if in_process:
        from moto.server import ThreadedMotoServer

        # moto logs every request and each template resource its CloudFormation skips (filled in
        # by Emulator.apply_template): keep the local stack's output readable.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto_logger = logging.getLogger("moto")
        if not any(isinstance(f, _DropSkippedResourceWarnings) for f in moto_logger.filters):
            moto_logger.addFilter(_DropSkippedResourceWarnings())
        warnings.filterwarnings("ignore", message="Tried to parse AWS::", category=UserWarning)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return Emulator("moto", endpoint, region, on_stop=server.stop,
                        details={"in_process": True, "startup_seconds": time.monotonic() - started})

    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop()
                raise EmulatorError(f"moto server did not start on {endpoint}")
            time.sleep(0.1)
    return Emulator("moto", endpoint, region, on_stop=stop,
                    details={"in_process": False, "pid": proc.pid, "startup_seconds": time.monotonic() - started})


def start_localstack(work_dir: Path | None = None, port: int | None = None, region: str = DEFAULT_REGION,
                     use_existing: bool = True, extra_env: Mapping[str, str] | None = None,
                     timeout: float = 180.0) -> Emulator:
    """LocalStack on the host (installed on first use), or the one at ``AWS_ENDPOINT_URL`` if it answers."""
    existing = os.environ.get("AWS_ENDPOINT_URL") if use_existing else None
    if existing:
        handle = localstack_host.attach(existing)
        if handle is not None:
            return Emulator("localstack", handle.endpoint_url, region, on_stop=None,
                            details={"attached": True, "startup_seconds": 0.0, "install_seconds": 0.0})
    work_dir = Path(work_dir) if work_dir else REPO_ROOT / ".stack" / "localstack"
    handle = localstack_host.start(work_dir, port=port, timeout=timeout, extra_env=extra_env)
    return Emulator(
        "localstack", handle.endpoint_url, region, on_stop=handle.stop,
        details={
            "attached": False,
            "startup_seconds": handle.startup_seconds,
            "install_seconds": handle.install.seconds if handle.install else 0.0,
            "installed_now": bool(handle.install and handle.install.installed_now),
            "log_path": str(handle.log_path),
            "pid": handle.process.pid if handle.process else None,
        },
    )


def start_emulator(backend: str | None = None, work_dir: Path | None = None, port: int | None = None,
                   region: str = DEFAULT_REGION, **kwargs: Any) -> Emulator:
    """Start ``backend`` ("moto" or "localstack"; default ``$AWS_EMULATOR`` or moto)."""
    backend = (backend or os.environ.get("AWS_EMULATOR") or "moto").lower()
    if backend == "moto":
        return start_moto(port=port, region=region, **kwargs)
    if backend == "localstack":
        return start_localstack(work_dir=work_dir, port=port, region=region, **kwargs)
    raise ValueError(f"unknown AWS emulator {backend!r}; choose one of {BACKENDS}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devstack.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default=os.environ.get("AWS_EMULATOR", "moto"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    params = dict(p.split("=", 1) for p in args.parameter)
    with start_emulator(args.backend, port=args.port) as aws:
        aws.apply_template(params)
        print(json.dumps({"backend": aws.backend, "endpoint_url": aws.endpoint_url, "outputs": aws.outputs,
                          "filled_in": aws.filled_in, **aws.details}, indent=2), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
