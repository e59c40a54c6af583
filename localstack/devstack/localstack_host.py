"""LocalStack on the host, without Docker.

LocalStack's runtime (``localstack-core[runtime]``) is installed from PyPI into its own Python 3.13
virtual environment, ``.venv-localstack`` at the repository root (git-ignored), from
``localstack/requirements-localstack.txt``. The install is idempotent: a stamp file in the virtual
environment records a hash of the requirements, and a second call with the same requirements
does nothing.

It is then started as ``python -m localstack.runtime.main`` with the gateway on a loopback port,
path-style SQS queue URLs (the default host names ``sqs.<region>.localhost.localstack.cloud`` do
not resolve offline) and its state under a work directory of the caller's choice. ``stop()``
terminates the whole process group.

Python 3.13 is found, in order, at ``$LOCALSTACK_PYTHON``, in pyenv's versions (``pyenv root``,
else ``~/.pyenv``), then as ``python3.13`` on ``PATH``.

Command line::

    python -m devstack.localstack_host install
    python -m devstack.localstack_host run [--port 4566]      # until Ctrl-C
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS_FILE = REPO_ROOT / "localstack" / "requirements-localstack.txt"
DEFAULT_VENV = REPO_ROOT / ".venv-localstack"
STAMP_NAME = ".localstack-installed"

# The services the project uses; LocalStack starts only these.
SERVICES = ("s3", "sqs", "sns", "cloudwatch", "cloudformation", "iam", "sts", "logs")


class LocalStackError(RuntimeError):
    pass


@dataclass
class InstallResult:
    venv_dir: Path
    python: Path
    installed_now: bool
    seconds: float


def _python_version(executable: str | os.PathLike) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [str(executable), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    try:
        major, minor = out.stdout.strip().split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def _pyenv_roots() -> list[Path]:
    roots: list[Path] = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and out.stdout.strip():
                roots.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    roots.append(Path.home() / ".pyenv")
    return roots


def find_python313() -> Path:
    """A Python 3.13 interpreter to build LocalStack's virtual environment with."""
    candidates: list[Path] = []
    if os.environ.get("LOCALSTACK_PYTHON"):
        candidates.append(Path(os.environ["LOCALSTACK_PYTHON"]))
    for root in _pyenv_roots():
        versions = root / "versions"
        if versions.is_dir():
            candidates.extend(sorted(versions.glob("3.13*/bin/python3.13"), reverse=True))
    on_path = shutil.which("python3.13")
    if on_path:
        candidates.append(Path(on_path))
    seen: set[str] = set()
    for candidate in candidates:
        if str(candidate) in seen:
            continue
        seen.add(str(candidate))
        if _python_version(candidate) == (3, 13):
            return candidate
    raise LocalStackError(
        "LocalStack needs Python 3.13: install it (for example `pyenv install 3.13`) or point "
        "LOCALSTACK_PYTHON at a python3.13 interpreter. Tried: "
        + (", ".join(seen) or "nothing found")
    )


def _requirements_digest(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def venv_python(venv_dir: Path = DEFAULT_VENV) -> Path:
    return venv_dir / "bin" / "python"


def is_installed(venv_dir: Path = DEFAULT_VENV, requirements: Path = REQUIREMENTS_FILE) -> bool:
    stamp = venv_dir / STAMP_NAME
    return (
        venv_python(venv_dir).exists()
        and stamp.exists()
        and stamp.read_text().strip() == _requirements_digest(requirements)
    )


def ensure_installed(
    venv_dir: Path = DEFAULT_VENV,
    requirements: Path = REQUIREMENTS_FILE,
    python: Path | None = None,
    quiet: bool = True,
) -> InstallResult:
    """Create ``venv_dir`` with Python 3.13 and install LocalStack into it, unless already done."""
    venv_dir = Path(venv_dir)
    started = time.monotonic()
    if is_installed(venv_dir, requirements):
        return InstallResult(venv_dir, venv_python(venv_dir), False, time.monotonic() - started)
    # One installer at a time (parallel test sessions): the others wait, then find the stamp.
    key = hashlib.sha256(str(venv_dir.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"localstack-install-{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_installed(venv_dir, requirements):
                return InstallResult(venv_dir, venv_python(venv_dir), False, time.monotonic() - started)
            _install(venv_dir, requirements, python, quiet)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return InstallResult(venv_dir, venv_python(venv_dir), True, time.monotonic() - started)


def _install(venv_dir: Path, requirements: Path, python: Path | None, quiet: bool) -> None:
    vpy = venv_python(venv_dir)
    if not vpy.exists() or _python_version(vpy) != (3, 13):
        if venv_dir.exists():
            shutil.rmtree(venv_dir)
        base = python or find_python313()
        subprocess.run([str(base), "-m", "venv", str(venv_dir)], check=True)
    pip = [str(vpy), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("-q")
    subprocess.run(pip + ["-r", str(requirements)], check=True)
    check = subprocess.run(
        [str(vpy), "-c", "import localstack.runtime.main, localstack.services.sqs.provider"],
        capture_output=True, text=True,
    )
    if check.returncode != 0:
        raise LocalStackError("LocalStack installed but does not import:\n" + check.stderr[-4000:])
    (venv_dir / STAMP_NAME).write_text(_requirements_digest(requirements) + "\n")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def health(endpoint_url: str, timeout: float = 2.0) -> dict | None:
    """LocalStack's ``/_localstack/health`` document, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(endpoint_url.rstrip("/") + "/_localstack/health", timeout=timeout) as r:
            return json.loads(r.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def services_ready(doc: dict | None, services: Iterable[str] = SERVICES) -> bool:
    if not doc:
        return False
    states = doc.get("services") or {}
    return all(states.get(s) in ("available", "running") for s in services)


@dataclass
class LocalStackProcess:
    """A LocalStack started by :func:`start`; ``stop()`` ends its process group."""

    endpoint_url: str
    port: int
    process: subprocess.Popen | None
    work_dir: Path
    log_path: Path | None
    startup_seconds: float
    install: InstallResult | None = None
    services: tuple[str, ...] = field(default=SERVICES)

    @property
    def owned(self) -> bool:
        return self.process is not None

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def localstack_env(port: int, work_dir: Path, services: Iterable[str] = SERVICES) -> dict[str, str]:
    """The environment LocalStack runs with: loopback gateway, path-style SQS URLs, state in work_dir."""
    volume_dir = work_dir / "volume"
    filesystem_root = work_dir / "filesystem"  # LocalStack's host-mode tmp/ and var/lib/ live under it
    volume_dir.mkdir(parents=True, exist_ok=True)
    filesystem_root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        LOCALSTACK_HOST=f"127.0.0.1:{port}",
        SERVICES=",".join(services),
        DNS_ADDRESS="0",
        SKIP_SSL_CERT_DOWNLOAD="1",
        SQS_ENDPOINT_STRATEGY="path",
        EAGER_SERVICE_LOADING="1",
        # SQS queue metrics every 10 s (default 60 s), so queue alarms react within seconds locally.
        SQS_CLOUDWATCH_METRICS_REPORT_INTERVAL="10",
        DISABLE_EVENTS="1",
        LOCALSTACK_VOLUME_DIR=str(volume_dir),
        FILESYSTEM_ROOT=str(filesystem_root),
    )
    return env


def start(
    work_dir: Path,
    port: int | None = None,
    venv_dir: Path = DEFAULT_VENV,
    timeout: float = 180.0,
    services: Iterable[str] = SERVICES,
    extra_env: Mapping[str, str] | None = None,
) -> LocalStackProcess:
    """Install LocalStack when needed, start it on ``127.0.0.1:port`` and wait until it is ready."""
    services = tuple(services)
    install = ensure_installed(venv_dir)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = work_dir / "localstack.log"
    log = open(log_path, "ab")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(venv_python(venv_dir)), "-m", "localstack.runtime.main"],
        env={**localstack_env(port, work_dir, services), **(extra_env or {})},
        cwd=str(work_dir),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    handle = LocalStackProcess(endpoint, port, proc, work_dir, log_path, 0.0, install, services)
    deadline = started + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise LocalStackError(
                    f"LocalStack exited with code {proc.returncode}:\n{handle.log_tail()}"
                )
            if services_ready(health(endpoint), services):
                break
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"LocalStack not ready after {timeout:.0f}s at {endpoint}:\n{handle.log_tail()}"
                )
            time.sleep(0.5)
    except BaseException:
        handle.stop()
        raise
    handle.startup_seconds = time.monotonic() - started
    return handle


def attach(endpoint_url: str, services: Iterable[str] = SERVICES, timeout: float = 2.0) -> LocalStackProcess | None:
    """A handle on an already running LocalStack (``AWS_ENDPOINT_URL``), or None if it is not there."""
    deadline = time.monotonic() + timeout
    while True:
        doc = health(endpoint_url)
        if services_ready(doc, services):
            from urllib.parse import urlparse

            port = urlparse(endpoint_url).port or 4566
            return LocalStackProcess(endpoint_url.rstrip("/"), port, None, Path("."), None, 0.0, None, tuple(services))
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devstack.localstack_host")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install LocalStack into .venv-localstack")
    run = sub.add_parser("run", help="start LocalStack and keep it running until Ctrl-C")
    run.add_argument("--port", type=int, default=4566)
    run.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".stack" / "localstack")
    args = parser.parse_args(argv)
    if args.command == "install":
        result = ensure_installed(quiet=False)
        print(json.dumps({"venv": str(result.venv_dir), "installed_now": result.installed_now,
                          "seconds": round(result.seconds, 1)}))
        return 0
    handle = start(args.work_dir, port=args.port)
    print(json.dumps({"endpoint_url": handle.endpoint_url, "startup_seconds": round(handle.startup_seconds, 1),
                      "install_seconds": round(handle.install.seconds, 1) if handle.install else None}),
          flush=True)
    try:
        while handle.process and handle.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
