"""LocalStack on the host, without Docker.

``localstack-core[runtime]`` is installed from ``localstack/requirements-localstack.txt`` into its
own Python 3.13 virtual environment, ``.venv-localstack`` (git-ignored); a stamp with the hash of
the requirements makes a second install a no-op. Python 3.13 is ``$LOCALSTACK_PYTHON``, else
pyenv's (``$PYENV_ROOT`` or ``~/.pyenv``), else ``python3.13`` on ``PATH``.

It runs as ``python -m localstack.runtime.main`` with the gateway on a loopback port (held for
it until it binds), path-style SQS queue URLs (the default host names
``sqs.<region>.localhost.localstack.cloud`` do not resolve offline) and its state in a work
directory; ``stop()`` ends its process group.

    python -m devstack.localstack_host install    # ahead of its first use
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack.process import PROJECT_ROOT, PortReservation

REQUIREMENTS_FILE = PROJECT_ROOT / "localstack" / "requirements-localstack.txt"
VENV = PROJECT_ROOT / ".venv-localstack"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".localstack-installed"
SERVICES = ("s3", "sqs", "sns", "cloudwatch", "cloudformation", "iam", "sts", "logs")  # only these start


class LocalStackError(RuntimeError):
    pass


def find_python313() -> str:
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = [os.environ.get("LOCALSTACK_PYTHON"), *map(str, sorted(pyenv.glob("versions/3.13*/bin/python3.13"),
                                                                      reverse=True)), shutil.which("python3.13")]
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                     capture_output=True, text=True).stdout.strip()
        except OSError:
            continue
        if version == "(3, 13)":
            return candidate
    raise LocalStackError("LocalStack needs Python 3.13: install it (for example `pyenv install 3.13`) or point "
                          "LOCALSTACK_PYTHON at a python3.13 interpreter")


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS_FILE.read_bytes()).hexdigest()


def _installed() -> bool:
    return PYTHON.exists() and STAMP.exists() and STAMP.read_text().strip() == _digest()


def ensure_installed(quiet: bool = True) -> bool:
    """Install LocalStack into ``.venv-localstack`` unless done; True when it installed now."""
    if _installed():
        return False
    # One installer at a time (parallel test sessions): the others wait, then find the stamp.
    key = hashlib.sha256(str(VENV).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"localstack-install-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed():
            return False
        if VENV.exists():
            shutil.rmtree(VENV)
        subprocess.run([find_python313(), "-m", "venv", str(VENV)], check=True)
        pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", *(["-q"] if quiet else [])]
        subprocess.run([*pip, "-r", str(REQUIREMENTS_FILE)], check=True)
        check = subprocess.run([str(PYTHON), "-c", "import localstack.runtime.main, localstack.services.sqs.provider"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise LocalStackError("LocalStack installed but does not import:\n" + check.stderr[-4000:])
        STAMP.write_text(_digest() + "\n")
    return True


def answers(endpoint_url: str) -> bool:
    """True when a LocalStack at ``endpoint_url`` reports every service the project uses ready."""
    try:
        with urllib.request.urlopen(endpoint_url.rstrip("/") + "/_localstack/health", timeout=2) as r:
            states = json.loads(r.read().decode()).get("services") or {}
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return all(states.get(s) in ("available", "running") for s in SERVICES)


@dataclass
class LocalStackProcess:
    endpoint_url: str
    process: subprocess.Popen
    log_path: Path
    startup_seconds: float = 0.0
    install_seconds: float = 0.0

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                return
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


def start(work_dir: Path, port: int | None = None, timeout: float = 180.0) -> LocalStackProcess:
    """Install LocalStack when needed, start it on loopback and wait until its services are ready."""
    t0 = time.monotonic()
    ensure_installed()
    install_seconds = time.monotonic() - t0
    for state in ("volume", "filesystem"):
        (work_dir / state).mkdir(parents=True, exist_ok=True)
    # A free port is held until the gateway binds it (it binds with SO_REUSEADDR).
    reservation = PortReservation() if port is None else None
    port = reservation.port if reservation else port
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        GATEWAY_LISTEN=f"127.0.0.1:{port}", LOCALSTACK_HOST=f"127.0.0.1:{port}", SERVICES=",".join(SERVICES),
        DNS_ADDRESS="0", SKIP_SSL_CERT_DOWNLOAD="1", SQS_ENDPOINT_STRATEGY="path", EAGER_SERVICE_LOADING="1",
        # SQS queue metrics every 10 s (default 60 s), so queue alarms react within seconds locally.
        SQS_CLOUDWATCH_METRICS_REPORT_INTERVAL="10", DISABLE_EVENTS="1",
        LOCALSTACK_VOLUME_DIR=str(work_dir / "volume"), FILESYSTEM_ROOT=str(work_dir / "filesystem"),
        # It takes this sandbox for a container and would then keep its state (CloudWatch's metrics
        # among it) in /tmp/localstack, shared by every LocalStack on the machine: host mode keeps
        # it under FILESYSTEM_ROOT.
        OVERRIDE_IN_DOCKER="0",
    )
    log_path = work_dir / "localstack.log"
    started = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(PYTHON), "-m", "localstack.runtime.main"], env=env, cwd=work_dir,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    handle = LocalStackProcess(f"http://127.0.0.1:{port}", proc, log_path, install_seconds=install_seconds)
    try:
        while not answers(handle.endpoint_url):
            if proc.poll() is not None:
                raise LocalStackError(f"LocalStack exited with code {proc.returncode}:\n{handle.log_tail()}")
            if time.monotonic() > started + timeout:
                raise LocalStackError(f"LocalStack not ready after {timeout:.0f}s:\n{handle.log_tail()}")
            time.sleep(0.5)
    except BaseException:
        handle.stop()
        raise
    finally:
        if reservation:
            reservation.close()
    handle.startup_seconds = time.monotonic() - started
    return handle


def main(argv: list[str] | None = None) -> int:
    """`python -m devstack.localstack_host install`: install LocalStack ahead of its first use."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devstack.localstack_host")
    parser.add_argument("command", choices=["install"])
    parser.parse_args(argv)
    print(json.dumps({"venv": str(VENV), "installed_now": ensure_installed(quiet=False)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
