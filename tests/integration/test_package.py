"""`chalice package` turns the app into a CloudFormation (SAM) template that passes cfn-lint,
with the worker wired to the work queue and the upload handler to the upload-events queue.

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


def test_chalice_package_output_passes_cfn_lint(tmp_path: Path) -> None:
    out = tmp_path / "package"
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    package = subprocess.run(
        [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())",
         "--project-dir", str(ROOT), "package", "--stage", "dev", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert package.returncode == 0, package.stdout + package.stderr

    lint = run_cfn_lint(out / "sam.json")
    assert lint.returncode == 0, lint.stdout + lint.stderr

    resources = json.loads((out / "sam.json").read_text())["Resources"]
    queues = {
        name: event["Properties"]["Queue"]
        for resource in resources.values() if resource["Type"] == "AWS::Serverless::Function"
        for name, event in resource["Properties"].get("Events", {}).items() if event["Type"] == "SQS"
    }
    assert len(queues) == 2, queues
    with zipfile.ZipFile(out / "deployment.zip") as bundle:
        names = set(bundle.namelist())
    assert {"app.py", "chalicelib/openapi.json", "chalicelib/db/migrations/0001_jobs.sql",
            "chalicelib/console/static/index.html", "chalicelib/console/static/console.js",
            "chalicelib/console/static/console.css"} <= names
    assert any(n.startswith("psycopg_binary") for n in names)  # Lambda's Linux wheels, not ours
