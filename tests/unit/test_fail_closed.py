"""Fail closed: a deployed stage without API_KEY does not start, and says what to set."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chalicelib.config import ConfigurationError, check_deployable, load_settings
from tests.unit.test_template import ROOT


@pytest.mark.parametrize("environ", [{"STAGE": "dev"}, {"STAGE": "prod"}, {"AWS_LAMBDA_FUNCTION_NAME": "fn"}])
def test_a_deployed_stage_without_api_key_is_refused_with_what_to_set(environ):
    with pytest.raises(ConfigurationError) as info:
        check_deployable(load_settings(environ))
    assert "Set API_KEY" in str(info.value)


@pytest.mark.parametrize("environ", [
    {}, {"STAGE": "local"}, {"STAGE": "dev", "API_KEY": "k"},
    {"AWS_LAMBDA_FUNCTION_NAME": "fn", "API_KEY": "k"}, {"AWS_LAMBDA_FUNCTION_NAME": "fn", "STAGE": "local"},
])
def test_local_runs_and_deployed_stages_with_a_key_start(environ):
    assert check_deployable(load_settings(environ)).stage == environ.get("STAGE", "deployed" if environ else "local")


def _import_app(**environ: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "STAGE", "AWS_LAMBDA_FUNCTION_NAME")}
    return subprocess.run([sys.executable, "-c", "import app"], cwd=ROOT, env={**env, **environ},
                          capture_output=True, text=True, timeout=120)


def test_the_app_does_not_start_in_a_deployed_stage_without_api_key():
    """What Lambda sees when it loads the handler module of a stage that has no key."""
    refused = _import_app(STAGE="dev")
    assert refused.returncode != 0
    assert "ConfigurationError" in refused.stderr and "Set API_KEY" in refused.stderr
    assert _import_app(STAGE="dev", API_KEY="a-key").returncode == 0
