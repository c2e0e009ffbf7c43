"""The one-host SLURM cluster (slurm/local-cluster/up.sh) and tiny inputs for the SLURM tests.

The cluster is the real thing: slurmctld and two slurmd "nodes" on this machine. The session
fixture starts it when it is not up yet (and stops it at the end if it started it), and skips
the tests with the reason when it cannot: not root, or no SLURM packages and no apt-get.
Every test submits into its own folder (job ids restart at 1 with a fresh cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UP = ROOT / "slurm" / "local-cluster" / "up.sh"
DOWN = ROOT / "slurm" / "local-cluster" / "down.sh"
SLURM_DIR = os.environ.get("SLURM_DIR", "/tmp/face-slurm")


def _cluster_answers(conf: str) -> bool:
    pid = Path(SLURM_DIR) / "state" / "slurmctld.pid"
    if not (Path(conf).is_file() and pid.is_file() and shutil.which("sinfo")):
        return False
    try:
        os.kill(int(pid.read_text().strip()), 0)
        done = subprocess.run(["sinfo", "-h", "-o", "%N"], env={**os.environ, "SLURM_CONF": conf}, capture_output=True, timeout=15)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """``SLURM_CONF`` of a running one-host cluster (exported for the test process and its children)."""
    conf = str(Path(SLURM_DIR) / "slurm.conf")
    started = False
    if not _cluster_answers(conf):
        if os.geteuid() != 0:
            pytest.skip(f"the one-host SLURM cluster is not up and starting it needs root: run `sudo bash {UP}`")
        if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
            pytest.skip("no SLURM packages and no apt-get to install them (Debian/Ubuntu): install slurmctld, slurmd, slurm-client, munge")
        done = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{UP} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        started = True
    os.environ["SLURM_CONF"] = conf
    yield conf
    if started:
        subprocess.run(["bash", str(DOWN)], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Manifests of tiny synthetic image shard sets (64 px; ``images-train``, ``-val``, ``-test``), built once."""
    from data_shards.synth import make_demo_shards

    out = tmp_path_factory.mktemp("slurm-demo")
    return make_demo_shards(str(out), images=160, clips=0, img_size=64, frames=8, seed=0)


@pytest.fixture(scope="session")
def demo_images(demo_shards: dict[str, str]) -> str:
    """Manifest of the tiny synthetic training images."""
    return demo_shards["images-train"]


def tiny_pretrain_recipe(path: Path, manifest: str, output_dir: Path, max_steps: int, checkpoint_every: int) -> Path:
    """configs/pretrain/tiny.yaml on the demo images only, small batches, ``max_steps`` steps; written to ``path``."""
    import yaml

    recipe = yaml.safe_load((ROOT / "configs" / "pretrain" / "tiny.yaml").read_text())
    recipe["data"]["images"].update(train=[manifest], batch_size=8)
    recipe["data"]["clips"]["train"] = []
    recipe["data"].update(num_workers=0, shuffle_buffer=50)
    recipe["trainer"].update(
        output_dir=str(output_dir), max_steps=max_steps, max_epochs=1000, log_every_n_steps=1,
        image_log_every_n_steps=0, checkpoint_every_n_steps=checkpoint_every,
    )
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_slurm_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m slurm <args>`` in the project root; output captured as text."""
    done = subprocess.run([sys.executable, "-m", "slurm", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, f"python -m slurm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def wait_until_ended(folder: Path, job_id: str, timeout_s: float) -> str:
    """Poll the job's state until SLURM no longer runs it (bounded); return the final state."""
    from slurm.job_log import find_record
    from slurm.monitor import ACTIVE, job_status

    record = find_record(folder, job_id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = job_status(folder, record).state
        if state not in ACTIVE:
            return state
        time.sleep(1.0)
    subprocess.run(["scancel", job_id], capture_output=True)
    pytest.fail(f"job {job_id} still {state} after {timeout_s:.0f} s; cancelled. Logs in {folder}")
