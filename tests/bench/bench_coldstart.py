"""Cold start: the import time and resident memory of `app.py` for the API and for the worker,
against the eager `import app` of the commit before the imports were made lazy, in the same run.

    python -m tests.bench.bench_coldstart [--runs 7] [--baseline 382b9eb]

Every Lambda function of a Chalice app imports `app.py` when its container starts. Each figure
comes from a fresh interpreter (`python -c`, the project's own virtual environment), measured
inside it from before the first import of the stage to its end, so the interpreter's own start
is not counted; memory is `VmRSS` of that interpreter at the end of the stage. Stages:

- **before: import app**: the baseline commit's `app.py` and `chalicelib/` (taken with
  `git archive` into a temporary directory), which imported web3, eth_account and boto3 for
  every function;
- **API: import app**: what an API container does at start now;
- **API: + first request's clients**: then the S3 and SQS clients a submission makes (boto3);
- **worker: + clients, core, recovery**: `import app`, the clients, the verification core
  (`chalicelib.wiring.verification()`, web3 and eth_account) and one signer recovery (eth_keys
  picks coincurve then): what the first job of a worker container pays before its own work;
  **before: + clients, first recovery** is the same on the baseline.

Then signer recovery per signature (`recover_signer` on the committed vector, the mean of
`--recoveries` after a warm-up) on eth_keys' pure-Python backend (`ECC_BACKEND_CLASS` set to
it: the state before coincurve was in requirements.txt) and on the default one (coincurve).

The variants run interleaved, round by round, so that the machine's load falls on all of them.
No network is used. Figures go to stdout, progress to stderr; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from devstack.stack import PROJECT_ROOT

from tests.bench._common import load_line, percentile, say

BASELINE = "382b9eb"  # the last commit whose `import app` loaded the verification libraries
MANIFEST = "tests/fixtures/vectors/base-sepolia-manifest.json"

# Runs in the fresh interpreter: one stage list per variant, timed cumulatively.
CHILD = r"""
import json, os, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
stages = sys.argv[1].split(",")
out, started = {}, time.perf_counter()
import app
out["import app"] = (time.perf_counter() - started, rss())
if "clients" in stages:
    from chalicelib.aws import LazyClient
    LazyClient("s3")(), LazyClient("sqs")()
    out["clients"] = (time.perf_counter() - started, rss())
if "core" in stages:
    try:
        from chalicelib.wiring import verification
        core = verification()
    except ImportError:  # the baseline imported the core with app.py
        import chalicelib.verification as core
    manifest = json.load(open(sys.argv[2]))
    core.recover_signer(manifest["content_hash"], manifest["signature"])
    out["core"] = (time.perf_counter() - started, rss())
import chalicelib
out["chalicelib"] = chalicelib.__file__
print(json.dumps(out))
"""

RECOVERY = r"""
import json, sys, time
from eth_keys.backends import get_backend
from chalicelib.verification.signature import recover_signer
manifest = json.load(open(sys.argv[2]))
count = int(sys.argv[1])
recover_signer(manifest["content_hash"], manifest["signature"])
started = time.perf_counter()
for _ in range(count):
    recover_signer(manifest["content_hash"], manifest["signature"])
print(json.dumps({"backend": type(get_backend()).__name__, "seconds": (time.perf_counter() - started) / count}))
"""
BACKENDS = (("before: pure Python", "eth_keys.backends.NativeECCBackend"), ("now: default", None))

VARIANTS = (
    # name, directory key, stages, the stage whose figure is reported
    ("before: import app", "baseline", "import app", "import app"),
    ("before: + clients, first recovery", "baseline", "import app,clients,core", "core"),
    ("API: import app", "current", "import app", "import app"),
    ("API: + first request's clients", "current", "import app,clients", "clients"),
    ("worker: + clients, core, recovery", "current", "import app,clients,core", "core"),
)
COMPARED = {"API: import app": "before: import app", "API: + first request's clients": "before: import app",
            "worker: + clients, core, recovery": "before: + clients, first recovery"}


def extract(revision: str, into: Path) -> Path:
    """`app.py` and `chalicelib/` of `revision`, as a directory an interpreter can start in."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision, "app.py", "chalicelib"],
                             cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_once(directory: Path, stages: str) -> dict:
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", CHILD, stages, str(PROJECT_ROOT / MANIFEST)], cwd=directory,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the probe failed in {directory}:\n{done.stderr}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    loaded_from = Path(figures.pop("chalicelib")).resolve()
    if not loaded_from.is_relative_to(directory.resolve()):
        raise SystemExit(f"the probe in {directory} imported chalicelib from {loaded_from}")
    return figures


def recovery_time(backend_class: str | None, count: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "ECC_BACKEND_CLASS"}
    if backend_class:
        env["ECC_BACKEND_CLASS"] = backend_class
    done = subprocess.run([sys.executable, "-c", RECOVERY, str(count), str(PROJECT_ROOT / MANIFEST)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_coldstart", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per variant (default 7)")
    parser.add_argument("--baseline", default=BASELINE, help=f"the commit to compare with (default {BASELINE})")
    parser.add_argument("--recoveries", type=int, default=300, help="signer recoveries timed per backend (default 300)")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="iid-coldstart-"))
    try:
        directories = {"baseline": extract(args.baseline, scratch), "current": PROJECT_ROOT}
        seconds: dict[str, list[float]] = {name: [] for name, *_ in VARIANTS}
        rss: dict[str, list[int]] = {name: [] for name, *_ in VARIANTS}
        for number in range(1, args.runs + 1):
            say(f"round {number} of {args.runs}…")
            for name, directory, stages, reported in VARIANTS:
                figures = run_once(directories[directory], stages)
                seconds[name].append(figures[reported][0])
                rss[name].append(figures[reported][1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"=== cold start: {args.runs} fresh interpreters per variant; baseline {args.baseline} ===")
    print(f"  {load_line()};  Python {sys.version.split()[0]}")
    print(f"  {'stage':<36} {'time min':>9} {'median':>8} {'max':>8}   {'RSS median':>10}")
    for name, *_ in VARIANTS:
        values = seconds[name]
        print(f"  {name:<36} {min(values) * 1000:7.0f}ms {percentile(values, 50) * 1000:6.0f}ms "
              f"{max(values) * 1000:6.0f}ms   {percentile(rss[name], 50) / 2**20:7.1f} MiB")
    # The minimum is the run least disturbed by other load on the machine; both are printed.
    for name, before in COMPARED.items():
        median = percentile(seconds[name], 50) / percentile(seconds[before], 50)
        least = min(seconds[name]) / min(seconds[before])
        goal = "; goal <= 40%" if name == "API: import app" else ""
        print(f"  {name:<36} {100 * median:4.0f}% (medians), {100 * least:4.0f}% (minimums) of '{before}'{goal}")

    print(f"\n=== signer recovery: mean of {args.recoveries} recover_signer calls ===")
    for label, backend_class in BACKENDS:
        figures = recovery_time(backend_class, args.recoveries)
        print(f"  {label:<22} {figures['backend']:<22} {figures['seconds'] * 1000:7.3f} ms per signature")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
