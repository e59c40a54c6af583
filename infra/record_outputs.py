"""Record the resource stack's outputs in the Chalice stage configuration.

The bucket, queues, alarms and the functions' IAM policy live in their own CloudFormation stack
(``infra/template.yaml``), deployed beside the Chalice app the way the Chalice samples keep
``resources.json`` next to ``app.py``::

    aws cloudformation deploy --template-file infra/template.yaml \\
        --stack-name internetid-verification-resources --capabilities CAPABILITY_IAM
    python infra/record_outputs.py --stack-name internetid-verification-resources --stage dev
    chalice deploy --stage dev

This script reads the stack's outputs (``describe_stacks``; boto3 honours ``AWS_ENDPOINT_URL``,
so the same command works against LocalStack or moto) and writes into ``.chalice/config.json``:

* ``stages.<stage>.environment_variables``: the settings of ``STACK_OUTPUT_ENVIRONMENT``
  (bucket, the verify, proof and large-file queues with their dead-letter queues, the upload-events queue;
  other variables already there are kept);
* the functions' permissions, as ``autogen_policy: false`` and ``iam_policy_file:
  "policy-<stage>.json"`` for the stage, with ``.chalice/policy-<stage>.json`` holding the
  document of the stack's managed policy (output ``FunctionPolicyArn``, read back from IAM).

Why a policy file and not ``manage_iam_role: false`` + ``iam_role_arn``: Chalice cannot attach a
managed policy to the roles it creates, and with ``manage_iam_role: false`` it needs a complete
pre-made role (trust policy, logs, VPC access, ...) that the app's stack would then have to own.
``iam_policy_file`` is what Chalice supports best: it keeps creating and naming one role per
function (for ``chalice deploy`` and ``chalice package`` alike) and gives each exactly the
template's least-privilege statements, so the template stays the one source of truth. The managed
policy itself stays available (``FunctionPolicyArn``) for anything else that runs the functions'
code, e.g. a role made by hand under ``manage_iam_role: false``.

When ``.chalice/config.json`` does not exist yet, a complete one is created (app name, stage
``dev`` with API Gateway stage ``api``, the workers' timeouts: 60 s, 900 s for large files); otherwise every
key that this script does not manage is kept as it was.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from chalicelib.config import STACK_OUTPUT_ENVIRONMENT

DEFAULT_STACK_NAME = "internetid-verification-resources"
APP_NAME = "internetid-verification"
# One worker per work queue, with its timeout: the large-file worker gets Lambda's longest.
WORKER_TIMEOUTS_SECONDS = {"process_verification_job": 60, "process_proof_job": 60, "process_large_job": 900}

# Stack output -> environment variable of the functions.
OUTPUT_ENVIRONMENT = STACK_OUTPUT_ENVIRONMENT

PROJECT_DIR = Path(__file__).resolve().parents[1]


def stack_outputs(stack_name: str = DEFAULT_STACK_NAME, cloudformation: Any = None) -> dict[str, str]:
    """``{OutputKey: OutputValue}`` of a stack (boto3 default session unless a client is given)."""
    if cloudformation is None:
        import boto3

        cloudformation = boto3.client("cloudformation")
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    if not stacks:
        raise LookupError(f"stack {stack_name} not found")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def managed_policy_document(policy_arn: str, iam: Any = None) -> dict:
    """The default version's document of a managed policy."""
    if iam is None:
        import boto3

        iam = boto3.client("iam")
    policy = iam.get_policy(PolicyArn=policy_arn)["Policy"]
    version = iam.get_policy_version(PolicyArn=policy_arn, VersionId=policy["DefaultVersionId"])
    document = version["PolicyVersion"]["Document"]
    if isinstance(document, str):  # some endpoints return the URL-encoded JSON text
        from urllib.parse import unquote

        document = json.loads(unquote(document))
    return document


def default_config(stage: str = "dev") -> dict:
    return {
        "version": "2.0",
        "app_name": APP_NAME,
        "stages": {
            stage: {
                "api_gateway_stage": "api",
                "environment_variables": {},
                "lambda_functions": {
                    **{name: {"lambda_timeout": seconds} for name, seconds in WORKER_TIMEOUTS_SECONDS.items()},
                },
            }
        },
    }


def environment_from_outputs(outputs: Mapping[str, str]) -> dict[str, str]:
    missing = [k for k in OUTPUT_ENVIRONMENT if k not in outputs]
    if missing:
        raise KeyError(f"stack outputs missing: {', '.join(missing)}")
    return {env: outputs[key] for key, env in OUTPUT_ENVIRONMENT.items()}


def update_chalice_config(
    outputs: Mapping[str, str],
    project_dir: Path = PROJECT_DIR,
    stage: str = "dev",
    policy_document: dict | None = None,
) -> Path:
    """Merge the outputs (and the policy, when given) into ``.chalice/config.json``; returns its path."""
    chalice_dir = Path(project_dir) / ".chalice"
    chalice_dir.mkdir(parents=True, exist_ok=True)
    config_path = chalice_dir / "config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text())
    else:
        config = default_config(stage)
    config.setdefault("version", "2.0")
    config.setdefault("app_name", APP_NAME)
    stage_config = config.setdefault("stages", {}).setdefault(stage, {})
    stage_config.setdefault("api_gateway_stage", "api")
    functions = stage_config.setdefault("lambda_functions", {})
    for name, seconds in WORKER_TIMEOUTS_SECONDS.items():
        worker = functions.setdefault(name, {})
        worker.setdefault("lambda_timeout", seconds)
        if "WorkerReservedConcurrency" in outputs:  # the template's cap on each worker's concurrency
            worker["reserved_concurrency"] = int(outputs["WorkerReservedConcurrency"])
    stage_config.setdefault("environment_variables", {}).update(environment_from_outputs(outputs))
    if policy_document is not None:
        policy_name = f"policy-{stage}.json"
        (chalice_dir / policy_name).write_text(json.dumps(policy_document, indent=2) + "\n")
        stage_config["autogen_policy"] = False
        stage_config["iam_policy_file"] = policy_name
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return config_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-name", default=os.environ.get("RESOURCES_STACK_NAME", DEFAULT_STACK_NAME))
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR)
    parser.add_argument("--no-policy", action="store_true",
                        help="only record the environment variables; leave the IAM settings alone")
    args = parser.parse_args(argv)

    import boto3

    outputs = stack_outputs(args.stack_name, boto3.client("cloudformation"))
    policy = None
    if not args.no_policy:
        policy = managed_policy_document(outputs["FunctionPolicyArn"], boto3.client("iam"))
    path = update_chalice_config(outputs, args.project_dir, args.stage, policy)
    print(json.dumps({"config": str(path), "environment_variables": environment_from_outputs(outputs)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
