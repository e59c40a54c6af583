"""A short chaos run (`make chaos` with 100 jobs) in the suite: faults while jobs run, and then
not one job lost, duplicated or wrong. It starts a stack of its own (the faults restart its
processes), so it runs once, not once per backend of the `stack` fixture."""
from __future__ import annotations

import os

import pytest

from tests.chaos.run import main

SHORT_JOBS = os.environ.get("CHAOS_SHORT_JOBS", "100")


@pytest.mark.timeout(900)
def test_a_hundred_jobs_under_faults_end_settled_once_and_right(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--jobs", SHORT_JOBS, "--rate", "3"])
    table = capsys.readouterr().out
    lines = table.strip().splitlines()
    faults = next(line for line in lines if line.startswith("faults injected"))
    assert not faults.endswith("none"), table  # a run without faults would prove nothing
    assert lines[-1].endswith(" jobs, 0 lost, 0 duplicated, 0 wrong"), table
    assert code == 0, table
