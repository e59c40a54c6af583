"""The local AWS: moto or LocalStack, with ``infra/template.yaml`` applied to it.

One source of truth: the template deployed to AWS is created as a stack on the emulator with
``create_stack``. moto's CloudFormation skips some of it; each skipped part is then created
through the service APIs from the template's own properties (resolved against the stack's
parameters and physical ids) by a fill-in named for the moto gap it covers (``MOTO_GAPS``), so
that both backends hold the same resources. LocalStack creates all of it: the fill-ins find
their part present and do nothing.

    with start_emulator("moto") as aws:          # or "localstack"
        outputs = aws.apply_template({"VisibilityTimeoutSeconds": 30})
        env = {**aws.aws_env(), **aws.app_env()}  # AWS_ENDPOINT_URL, credentials, UPLOAD_BUCKET, ...
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

from chalicelib.config import STACK_OUTPUT_ENVIRONMENT
from devstack import localstack_host
from devstack.moto_gaps import MOTO_GAPS, EmulatorError, TemplateResolver
from devstack.process import PROJECT_ROOT, PortReservation

TEMPLATE_PATH = PROJECT_ROOT / "infra" / "template.yaml"
DEFAULT_STACK_NAME = "internetid-verification-resources"
DEFAULT_REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
BACKENDS = ("moto", "localstack")


def load_template(path: Path = TEMPLATE_PATH) -> dict:
    """The template as a dict, short-form tags (``!Ref x``) in long form (cfn-lint's decoder)."""
    from cfnlint.decode import decode_str

    template, problems = decode_str(Path(path).read_text())
    if problems:
        raise EmulatorError(f"{path}: {problems[0]}")
    return template


class Emulator:
    """A running AWS emulator (moto or LocalStack) and the resource stack applied to it."""

    def __init__(self, backend: str, endpoint_url: str, region: str = DEFAULT_REGION,
                 on_stop: Callable[[], None] | None = None, details: Mapping[str, Any] | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        self.backend, self.endpoint_url, self.region = backend, endpoint_url.rstrip("/"), region
        self.outputs: dict[str, str] = {}
        self.stack_name: str | None = None
        self.parameters: dict[str, str] = {}
        self.filled_in: list[str] = []  # "LogicalId:part" created through service APIs, not by the stack
        self.details: dict[str, Any] = dict(details or {})
        self._on_stop = on_stop
        self._session = boto3.session.Session()  # its own: boto3's default session is not thread-safe
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(
                    service, endpoint_url=self.endpoint_url, region_name=self.region,
                    config=Config(retries={"max_attempts": 3, "mode": "standard"}), **CREDENTIALS)
            return self._clients[service]

    def aws_env(self) -> dict[str, str]:
        """What a child process (or this one) needs to reach the emulator with plain boto3."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
                "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}

    def app_env(self) -> dict[str, str]:
        """The app's settings from the stack outputs (UPLOAD_BUCKET, QUEUE_URL, ...)."""
        return {env: self.outputs[key] for key, env in STACK_OUTPUT_ENVIRONMENT.items() if key in self.outputs}

    def apply_template(self, parameters: Mapping[str, Any] | None = None, stack_name: str = DEFAULT_STACK_NAME,
                       template_path: Path = TEMPLATE_PATH, timeout: float = 300.0) -> dict[str, str]:
        """Create (or update) the resource stack from the template, fill in what the emulator
        skipped, and return the stack's outputs."""
        # Local endpoints are plain HTTP: a deny-non-TLS bucket policy would refuse every request
        # (moto evaluates the Deny); local browsers upload from any origin. Callers may still pass
        # EnforceSecureTransport or CorsAllowedOrigin explicitly.
        params = {"EnforceSecureTransport": "false", "CorsAllowedOrigin": "*",
                  **{k: str(v) for k, v in (parameters or {}).items()}}
        # cfn-lint takes a second to import: decode the template while the stack is created.
        decoding = ThreadPoolExecutor(1, thread_name_prefix="devstack-template")
        template = decoding.submit(load_template, template_path)
        decoding.shutdown(wait=False)
        cfn = self.client("cloudformation")
        request = {"StackName": stack_name, "TemplateBody": Path(template_path).read_text(),
                   "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                   "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]}
        waiter = "stack_create_complete"
        try:
            cfn.create_stack(**request)
        except cfn.exceptions.AlreadyExistsException:  # a LocalStack of its own, used again
            waiter = "stack_update_complete"
            try:
                cfn.update_stack(**request)
            except ClientError as e:
                if "No updates are to be performed" not in str(e):
                    raise
        try:
            cfn.get_waiter(waiter).wait(StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": int(timeout)})
        except WaiterError as exc:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            failures = "\n".join(f"{e['LogicalResourceId']}: {e['ResourceStatus']} {e.get('ResourceStatusReason', '')}"
                                 for e in events if "FAILED" in e.get("ResourceStatus", ""))
            raise EmulatorError(f"stack {stack_name}: {exc}\n{failures}") from None
        self.stack_name, self.parameters = stack_name, params
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        # moto's CloudFormation reports queue URLs on the AWS host (https://sqs.<region>.amazonaws.com/...);
        # ask SQS itself for URLs on the emulator's endpoint.
        for url_key in [key for key in self.outputs if key.endswith("QueueUrl")]:
            name_key = url_key[:-len("Url")] + "Name"
            if name_key in self.outputs:
                self.outputs[url_key] = self.client("sqs").get_queue_url(QueueName=self.outputs[name_key])["QueueUrl"]
        self._fill_in(template.result())
        return dict(self.outputs)

    def resolver(self, template: Mapping | None = None) -> TemplateResolver:
        """A resolver for the applied stack (physical ids from describe_stack_resources)."""
        if self.stack_name is None:
            raise EmulatorError("apply_template first")
        resources = self.client("cloudformation").describe_stack_resources(StackName=self.stack_name)
        # (moto lists the resources it skipped without logical or physical id)
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                    for r in resources["StackResources"] if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
        account = self.client("sts").get_caller_identity()["Account"]
        (stack,) = self.client("cloudformation").describe_stacks(StackName=self.stack_name)["Stacks"]
        return TemplateResolver(template or load_template(), self.parameters, physical, self.region, account,
                                self.stack_name, stack["StackId"])

    def _fill_in(self, template: Mapping) -> None:
        resolver = self.resolver(template)
        for logical_id, resource in template.get("Resources", {}).items():
            fill_in = MOTO_GAPS.get(resource["Type"])
            if fill_in is None or not resolver.enabled(logical_id):
                continue
            props = resolver.resolve(resource.get("Properties", {}))
            created = fill_in(self, props, resolver.physical_ids.get(logical_id))
            self.filled_in += [f"{logical_id}:{part}" for part in created]

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


def start_moto(region: str = DEFAULT_REGION, timeout: float = 30.0) -> Emulator:
    """moto's server in a child process on a loopback port. Its own process, since moto's state is
    per process: a ``mock_aws()`` in this process would reset it, and a second emulator share it.
    Started through ``devstack.moto_server``: moto's server with its SQS sends and receives made linear."""
    started = time.monotonic()
    reservation = PortReservation()  # held until the server answers: werkzeug binds with SO_REUSEADDR
    endpoint = f"http://127.0.0.1:{reservation.port}"
    proc = subprocess.Popen([sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(reservation.port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    stop()
                    if proc.returncode > 0:  # it exited; its stderr is not kept: if the patch's guard refused, say why
                        from devstack.moto_server import check_shape  # (imports moto's SQS: only on failure)
                        check_shape()
                    raise EmulatorError(f"moto server did not start on {endpoint}") from None
                time.sleep(0.05)
    finally:
        reservation.close()
    return Emulator("moto", endpoint, region, on_stop=stop,
                    details={"pid": proc.pid, "startup_seconds": time.monotonic() - started})


def start_localstack(work_dir: Path | None = None, region: str = DEFAULT_REGION, use_existing: bool = True,
                     timeout: float = 180.0) -> Emulator:
    """LocalStack on the host (installed on first use), or the one at ``AWS_ENDPOINT_URL`` if it answers."""
    existing = os.environ.get("AWS_ENDPOINT_URL") if use_existing else None
    if existing and localstack_host.answers(existing):
        return Emulator("localstack", existing, region, details={"attached": True, "startup_seconds": 0.0})
    handle = localstack_host.start(Path(work_dir) if work_dir else PROJECT_ROOT / ".stack" / "localstack",
                                   timeout=timeout)
    return Emulator("localstack", handle.endpoint_url, region, on_stop=handle.stop,
                    details={"attached": False, "startup_seconds": handle.startup_seconds,
                             "install_seconds": handle.install_seconds, "log_path": str(handle.log_path),
                             "pid": handle.process.pid})


def start_emulator(backend: str | None = None, work_dir: Path | None = None, region: str = DEFAULT_REGION,
                   **kwargs: Any) -> Emulator:
    """Start ``backend`` ("moto" or "localstack"; default ``$AWS_EMULATOR`` or moto)."""
    backend = (backend or os.environ.get("AWS_EMULATOR") or "moto").lower()
    if backend == "moto":
        return start_moto(region=region, **kwargs)
    if backend == "localstack":
        return start_localstack(work_dir=work_dir, region=region, **kwargs)
    raise ValueError(f"unknown AWS emulator {backend!r}; choose one of {BACKENDS}")
