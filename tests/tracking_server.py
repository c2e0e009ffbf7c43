"""Start and stop a real ``mlflow server`` on 127.0.0.1: SQLite backend, local artifact root.

The server runs in its own process group, which is terminated (then killed) when it stops, so
no worker outlives the tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 90.0


@dataclass
class MlflowServer:
    """A running tracking server: its URI and the folder holding its database and artifacts."""

    url: str
    root: Path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(root: Path) -> Iterator[MlflowServer]:
    """Run ``mlflow server`` on a free port with its store under ``root`` for the block."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--workers", "1",
    ]  # fmt: skip
    # The job runner (a pool of huey consumers) serves MLflow's GenAI jobs, not tracking or the registry.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_healthy(url, process, log)
        yield MlflowServer(url, root)
    finally:
        stop_group(process)


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url/health`` until it answers, the server dies or the timeout passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {url} not healthy after {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server's process group (it forks workers); kill it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
