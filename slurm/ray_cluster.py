"""A Ray cluster inside a SLURM allocation, one task per node, and a Ray Tune sweep run on it.

Task 0 starts the Ray head on the first node of the allocation, the other tasks start Ray
workers that join it, each with the node's CPUs (``--cpus-per-task``) and GPUs. Once every node
has joined, task 0 runs :func:`finetune.sweep.driver.run_sweep` against the cluster's address; trials
spread over the nodes. Each Ray node runs as ``ray start --block``, a child of its task, and is
stopped by SIGTERM (never ``ray stop``, which would stop every Ray on the machine). Task 0
writes a marker in the submitit folder when the sweep ends; the workers then stop too.

Workers leave first (each marks that it stopped) so that they drain while the head still
answers; the head stops last. The cluster uses Ray's token authentication with a fresh token per job, handed to the workers
through a file readable only by the user in the (shared) submitit folder.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from finetune.sweep.driver import SweepSettings, run_sweep
from plumbing.files import write_text_atomic
from slurm.jobs import announce

GCS_BASE_PORT = 6400  # head port = base + job id % 1000, so two sweeps on one node do not collide


def ray_executable() -> str:
    """The ``ray`` script of this Python environment (the nodes run the same environment)."""
    return str(Path(sys.executable).with_name("ray"))


def node_command(node_ip: str, num_cpus: int, num_gpus: int, head: str = "", port: int = 0) -> list[str]:
    """``ray start --block`` for a head (``head`` empty, listening on ``port``) or a worker joining ``head``."""
    command = [ray_executable(), "start", "--block", f"--node-ip-address={node_ip}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"]
    if head:
        return [*command, f"--address={head}"]
    return [*command, "--head", f"--port={port}", "--include-dashboard=false", "--dashboard-agent-listen-port=0", "--disable-usage-stats"]


def share_token(path: Path) -> str:
    """Create this job's Ray token, write it to ``path`` (mode 0600, whole or absent) and return it."""
    token = secrets.token_urlsafe(32)
    write_text_atomic(path, token, mode=0o600)
    return token


def read_token(path: Path, timeout_s: float) -> str:
    """The token written by :func:`share_token`, waiting up to ``timeout_s`` for it."""
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Ray head wrote no token ({path}) within {timeout_s:.0f} s")
        time.sleep(0.5)
    return path.read_text().strip()


def use_token(token: str) -> None:
    """Token authentication for this process and the Ray processes it starts."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until ``host:port`` accepts TCP connections; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the Ray head {host}:{port} did not start within {timeout_s:.0f} s")


def wait_for_nodes(address: str, count: int, timeout_s: float) -> int:
    """Block until ``count`` Ray nodes are alive in the cluster at ``address``; return that count."""
    import ray

    ray.init(address=address, log_to_driver=False)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            alive = sum(1 for node in ray.nodes() if node["Alive"])
            if alive >= count:
                return alive
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {alive} of {count} Ray nodes joined {address} within {timeout_s:.0f} s")
            time.sleep(0.5)
    finally:
        ray.shutdown()


def start_node(command: list[str]) -> subprocess.Popen:
    """Run ``ray start --block`` in its own process group, so every Ray process it starts can be stopped."""
    return subprocess.Popen(command, start_new_session=True)


def stop_node(process: subprocess.Popen) -> None:
    """SIGTERM a node started by :func:`start_node` (Ray drains and stops its processes), then SIGKILL leftovers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)  # agents orphaned by a raylet that died first
    except (ProcessLookupError, PermissionError):
        pass


class RaySweepJob:
    """The submitit callable of ``python -m slurm submit sweep``: a Ray cluster on the allocation, then a sweep.

    Args:
        config_path: the fine-tuning recipe, read on the head node.
        settings: the sweep's settings; its Ray address is the cluster's, set on the head node.
        overrides: ``--key value`` overrides of the recipe.
        gpus_per_node: GPUs each Ray node offers.
        join_timeout_s: how long the head waits for every node to join.
    """

    def __init__(self, config_path: str, settings: SweepSettings, overrides: list[str], gpus_per_node: int, join_timeout_s: float = 180.0) -> None:
        self.config_path = config_path
        self.settings = settings
        self.overrides = overrides
        self.gpus_per_node = gpus_per_node
        self.join_timeout_s = join_timeout_s

    def __call__(self) -> dict[str, Any] | str:
        """Head (task 0): start Ray, wait for the workers, sweep, stop. Workers: join, wait for the end marker."""
        import submitit

        env = submitit.JobEnvironment()
        head_ip = socket.gethostbyname(env.hostnames[0])
        node_ip = socket.gethostbyname(os.environ.get("SLURMD_NODENAME", env.hostname))
        port = GCS_BASE_PORT + int(env.raw_job_id) % 1000
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))
        folder = Path(os.environ["SUBMITIT_FOLDER"])
        done, token_file = folder / f"{env.job_id}_ray_done", folder / f"{env.job_id}_ray_token"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if env.global_rank == 0:
            announce(f"Ray head {head_ip}:{port} for {env.num_nodes} nodes")
            use_token(share_token(token_file))
            stopped = [folder / f"{env.job_id}_ray_stopped_{rank}" for rank in range(1, env.num_tasks)]
            try:
                return self._head(node_ip, port, cpus, env.num_nodes, done, stopped)
            finally:
                token_file.unlink(missing_ok=True)
        announce(f"Ray worker joining {head_ip}:{port}")
        use_token(read_token(token_file, self.join_timeout_s))
        wait_for_port(head_ip, port, self.join_timeout_s)
        node = start_node(node_command(node_ip, cpus, self.gpus_per_node, head=f"{head_ip}:{port}"))
        try:
            while not done.exists() and node.poll() is None:
                time.sleep(1.0)
        finally:
            stop_node(node)
            (folder / f"{env.job_id}_ray_stopped_{env.global_rank}").touch()
        if not done.exists():
            raise RuntimeError(f"the Ray worker on {node_ip} stopped (exit {node.returncode}) before the sweep ended")
        return f"Ray worker on {node_ip} done"

    def _head(self, node_ip: str, port: int, cpus: int, num_nodes: int, done: Path, stopped: list[Path]) -> dict[str, Any]:
        address = f"{node_ip}:{port}"
        head = start_node(node_command(node_ip, cpus, self.gpus_per_node, port=port))
        try:
            wait_for_port(node_ip, port, self.join_timeout_s)
            alive = wait_for_nodes(address, num_nodes, self.join_timeout_s)
            print(f"Ray cluster {address}: {alive} nodes; sweeping", file=sys.stderr, flush=True)
            settings = dataclasses.replace(self.settings, resources=dataclasses.replace(self.settings.resources, address=address))
            outcome = run_sweep(self.config_path, settings, self.overrides)
        finally:
            done.touch()
            deadline = time.monotonic() + 90
            while not all(path.exists() for path in stopped) and time.monotonic() < deadline:
                time.sleep(0.5)  # workers drain while the head still answers
            stop_node(head)
        return {key: str(value) if isinstance(value, Path) else value for key, value in dataclasses.asdict(outcome).items()}
