"""`chalice package` turns the app into a CloudFormation (SAM) template that passes cfn-lint,
with a worker wired to each work queue (verify jobs in batches of 10 within a second; the proof
one with its MaximumConcurrency, one proof per invocation; the large-file one with Lambda's
15-minute timeout) and the upload handler to the upload-events queue.

Integration rather than unit: packaging downloads the Lambda (manylinux) wheels from PyPI.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.unit.test_template import ROOT, run_cfn_lint

ZIPPED_MAX_BYTES = 45 * 10**6
UNZIPPED_MAX_BYTES = 150 * 10**6


def test_chalice_package_output_passes_cfn_lint(tmp_path: Path) -> None:
    out = tmp_path / "package"
    # Packaging imports app.py with the dev stage's environment: a deployed stage needs API_KEY.
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
           "API_KEY": "packaging-only"}
    package = subprocess.run(
        [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())",
         "--project-dir", str(ROOT), "package", "--stage", "dev", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert package.returncode == 0, package.stdout + package.stderr

    lint = run_cfn_lint(out / "sam.json")
    assert lint.returncode == 0, lint.stdout + lint.stderr

    resources = json.loads((out / "sam.json").read_text())["Resources"]
    sqs_events = {
        name: event["Properties"]
        for resource in resources.values() if resource["Type"] == "AWS::Serverless::Function"
        for name, event in resource["Properties"].get("Events", {}).items() if event["Type"] == "SQS"
    }
    assert len(sqs_events) == 4, sqs_events  # the verify, proof and large-file queues, the upload events
    capped = {name: event["ScalingConfig"]["MaximumConcurrency"]
              for name, event in sqs_events.items() if "ScalingConfig" in event}
    # the proof worker at PROOF_MAX_CONCURRENCY, the large-file worker at LARGE_MAX_CONCURRENCY
    assert sorted((("proof" in name.lower(), "large" in name.lower()), cap) for name, cap in capped.items()) == [
        ((False, True), 4), ((True, False), 2)], sqs_events
    workers = {name: (event["BatchSize"], event.get("MaximumBatchingWindowInSeconds"))
               for name, event in sqs_events.items()
               if any(handler in name.lower() for handler in ("verificationjob", "proofjob"))}
    assert sorted(workers.values()) == [(1, 1), (10, 1)], sqs_events  # PROOF_/WORKER_BATCH_SIZE, the window
    functions = {name: resource["Properties"] for name, resource in resources.items()
                 if resource["Type"] == "AWS::Serverless::Function"}
    timeouts = {name: properties["Timeout"] for name, properties in functions.items()
                if any(e["Type"] == "SQS" for e in properties.get("Events", {}).values())}
    large = {name: seconds for name, seconds in timeouts.items() if "large" in name.lower()}
    assert list(large.values()) == [900], timeouts  # the large-file worker has Lambda's longest
    [large_function] = [functions[name] for name in large]
    [large_event] = large_function["Events"].values()
    assert "large" in json.dumps(large_event["Properties"]["Queue"]), large_event  # wired to its own queue
    assert large_function["MemorySize"] == 1769  # a whole vCPU for SHA-256 (Lambda's CPU follows memory)
    assert (timeouts["ProcessVerificationJob"], timeouts["ProcessProofJob"]) == (60, 60), timeouts
    with zipfile.ZipFile(out / "deployment.zip") as bundle:
        names = set(bundle.namelist())
        unzipped = sum(entry.file_size for entry in bundle.infolist())
    assert {"app.py", "chalicelib/openapi.json", "chalicelib/db/migrations/0001_jobs.sql",
            "chalicelib/console/static/index.html", "chalicelib/console/static/console.js",
            "chalicelib/console/static/console.css"} <= names
    assert any(n.startswith("psycopg_binary") for n in names)  # Lambda's Linux wheels, not ours
    assert any(n.startswith("coincurve/") for n in names)  # signer recovery on libsecp256k1
    # Well under Lambda's limits (50 MB zipped for a direct upload, 250 MB unzipped); see
    # docs/deployment.md for what the bundle is made of.
    assert (out / "deployment.zip").stat().st_size < ZIPPED_MAX_BYTES
    assert unzipped < UNZIPPED_MAX_BYTES
