"""The one-host SLURM cluster (slurm/local-cluster/up.sh) and the synthetic images the SLURM tests submit.

The cluster is the real thing: slurmctld and two slurmd "nodes" on this machine. The session
fixture starts it when it is not up yet (and stops it at the end if it started it), and skips
the tests with the reason when it cannot: not root, or no SLURM packages and no apt-get.
Every test submits into its own folder (job ids restart at 1 with a fresh cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from slurm_jobs import ROOT
from synthetic_sets import ShardSets

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
def demo_shards(synthetic_shards: ShardSets) -> dict[str, str]:
    """Manifests of the 64 px synthetic shard sets (the jobs read ``images-train``, ``-val``, ``-test``)."""
    return synthetic_shards("demo")


@pytest.fixture(scope="session")
def demo_images(demo_shards: dict[str, str]) -> str:
    """Manifest of the tiny synthetic training images."""
    return demo_shards["images-train"]
