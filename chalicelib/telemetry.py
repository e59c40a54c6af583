"""Structured JSON logs and CloudWatch embedded-format metrics (what the alarms read)."""
from __future__ import annotations

import threading

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "verification-queue"
NAMESPACE = "InternetID/Verification"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_metrics_lock = threading.Lock()  # the metric buffer is shared; local runners call from threads


def job_finished(outcome: str, duration_ms: float | None = None) -> None:
    """Emit one of JobsCompleted / JobsFailed / JobsRetried (and JobDuration) right away.

    Flushed per job rather than per invocation so that a crash later in the container
    cannot swallow figures an alarm depends on.
    """
    with _metrics_lock:
        metrics.add_metric(name=f"Jobs{outcome}", unit=MetricUnit.Count, value=1)
        if duration_ms is not None:
            metrics.add_metric(name="JobDuration", unit=MetricUnit.Milliseconds, value=duration_ms)
        metrics.flush_metrics()
