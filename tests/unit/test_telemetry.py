"""The worker's metrics reach the alarms: same namespace, metric name and dimensions."""
from __future__ import annotations

import json
from pathlib import Path

from cfnlint.decode import decode

from chalicelib.telemetry import job_finished

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"


def test_jobs_failed_metric_matches_the_alarm(capsys):
    job_finished("Failed", 12.5)
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    template, problems = decode(str(TEMPLATE))
    assert not problems
    alarm = template["Resources"]["JobsFailedAlarm"]["Properties"]
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == alarm["Namespace"]
    assert {"Name": alarm["MetricName"], "Unit": "Count"} in directive["Metrics"]
    for dimension in alarm["Dimensions"]:
        assert [dimension["Name"]] in directive["Dimensions"]
        assert emf[dimension["Name"]] == dimension["Value"]
    assert emf["JobsFailed"] == [1.0] and emf["JobDuration"] == [12.5]
