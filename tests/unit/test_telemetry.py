"""The worker's metrics reach the alarms: same namespace, metric name and dimensions."""
from __future__ import annotations

import json

from chalicelib.telemetry import job_finished
from devstack.emulator import load_template


def test_jobs_failed_metric_matches_the_alarm(capsys):
    job_finished("Failed", 12.5)
    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    alarm = load_template()["Resources"]["JobsFailedAlarm"]["Properties"]
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == alarm["Namespace"]
    assert {"Name": alarm["MetricName"], "Unit": "Count"} in directive["Metrics"]
    for dimension in alarm["Dimensions"]:
        assert [dimension["Name"]] in directive["Dimensions"]
        assert emf[dimension["Name"]] == dimension["Value"]
    assert emf["JobsFailed"] == [1.0] and emf["JobDuration"] == [12.5]
