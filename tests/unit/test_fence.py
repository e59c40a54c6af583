"""The fence between the product and the local runtime: what Lambda runs (`app.py`,
`chalicelib/`, `requirements.txt`) and the CLI's `verify` never import `devstack`; only
`internetid demo` loads the runtime's anchoring helpers, lazily, inside the command."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI_DIR = ROOT / "client" / "internetid_cli"
DEMO = CLI_DIR / "demo.py"

# Imports the product and every CLI module in a fresh interpreter; reports what got loaded.
PROBE = """
import importlib, json, os, pkgutil, sys
from importlib.metadata import packages_distributions
import app, chalicelib, internetid_cli
for package in (chalicelib, internetid_cli):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
# What the product loads on first use, not on import: the verification core with a recovery
# (eth_keys picks coincurve then), and a boto3 client.
from chalicelib.aws import LazyClient
from chalicelib.wiring import verification
manifest = json.load(open("tests/fixtures/vectors/base-sepolia-manifest.json"))
verification().recover_signer(manifest["content_hash"], manifest["signature"])
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
LazyClient("s3")()
owners = packages_distributions()
tops = {name.split(".")[0] for name in sys.modules}
print(json.dumps({
    "devstack": sorted(name for name in sys.modules if name.split(".")[0] == "devstack"),
    "distributions": sorted({dist.lower() for top in tops for dist in owners.get(top, [])}),
}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _requirements() -> list[str]:
    names = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[\[=<>~!; ]", line, maxsplit=1)[0].lower())
    return names


def test_importing_the_product_and_the_cli_loads_no_runtime_module(probe):
    assert probe["devstack"] == []


def test_every_lambda_requirement_is_used_by_the_product(probe):
    """A package only the runtime needs belongs in requirements-dev.txt, not in what Lambda gets."""
    loaded = {name.replace("_", "-") for name in probe["distributions"]}
    unused = [name for name in _requirements() if name.replace("_", "-") not in loaded]
    assert unused == []


def test_no_product_file_and_no_cli_file_but_demo_mentions_the_runtime():
    files = [ROOT / "app.py", ROOT / "requirements.txt", *(ROOT / "chalicelib").rglob("*"), *CLI_DIR.rglob("*.py")]
    mentions = [str(path.relative_to(ROOT)) for path in files
                if path.is_file() and path != DEMO and "__pycache__" not in path.parts
                and "devstack" in path.read_text(errors="replace")]
    assert mentions == []


def test_the_demo_loads_the_runtime_only_inside_the_command():
    top_level = [line for line in DEMO.read_text().splitlines() if re.match(r"(from|import) devstack", line)]
    assert top_level == []
