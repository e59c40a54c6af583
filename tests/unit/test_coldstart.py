"""Cold start: every Lambda function of a Chalice app imports `app.py`, so `import app` must not
load the libraries only verification needs (web3, eth_account: about a second) nor boto3 (made by
the first client). The worker and the sync endpoints load the core through
`chalicelib.wiring.verification()` on first use. Each probe runs in a fresh interpreter, since
this one has loaded everything long ago."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("web3", "eth_account", "eth_keys", "eth_abi", "py_ecc", "coincurve", "boto3")

PROBE = """
import json, sys
HEAVY = %r
def loaded():
    return sorted(name for name in HEAVY if name in sys.modules)
import app
after_import = loaded()
from chalicelib.wiring import services
services()  # what a job-status route builds before its database read
after_services = loaded()
from chalicelib import verification as package
from chalicelib.verification import verify
from chalicelib.wiring import verification
core = verification()
print(json.dumps({
    "after_import": after_import, "after_services": after_services, "after_first_use": loaded(),
    "core_is_the_package": core is package, "same_core_twice": verification() is core,
    "verify_hash_is_real": core.verify_hash is verify.verify_hash and core.prove_hash is verify.prove_hash,
    "recursion_limit": sys.getrecursionlimit(),
}))
""" % (HEAVY,)


@pytest.fixture(scope="module")
def probe() -> dict:
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}  # no pool to open
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_app_loads_no_chain_library_and_no_boto3(probe):
    assert probe["after_import"] == []


def test_building_the_services_loads_neither(probe):
    """The job-status routes (the ones clients poll) build the services and read the database:
    the S3 and SQS clients, and so boto3, wait for a route that uses them."""
    assert probe["after_services"] == []


def test_the_first_verification_loads_the_core_once(probe):
    assert {"web3", "eth_account", "eth_keys"} <= set(probe["after_first_use"])
    assert probe["core_is_the_package"] and probe["same_core_twice"] and probe["verify_hash_is_real"]


def test_loading_the_core_puts_a_sane_recursion_limit_back(probe):
    """py_ecc raises it to 100000, at which deep JSON crashes the process (tests/integration/
    test_safeguards.py); the lazy core must lower it again when it loads."""
    from chalicelib.verification import MAX_RECURSION

    assert probe["recursion_limit"] <= MAX_RECURSION
