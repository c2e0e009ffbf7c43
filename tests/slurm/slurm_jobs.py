"""Helpers of the SLURM tests: a tiny pretraining recipe, the launcher's command line, waiting for a job."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
