"""The prepared GPU check runs in its CPU smoke mode, so it cannot rot between uses of a GPU machine.

As on the borrowed GPU machine, the packages it does not have and we do not carry there (mlflow,
ray, submitit) cannot be imported: a folder of stand-ins that raise ImportError is put first on
the path of the whole process tree (the check's own command-line runs included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_ON_THE_GPU_MACHINE = ("mlflow", "ray", "submitit")


@pytest.mark.slow
def test_smoke_mode_runs_every_section_without_the_packages_the_gpu_machine_lacks(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for name in NOT_ON_THE_GPU_MACHINE:
        (blocked / f"{name}.py").write_text(f"raise ImportError('{name} is not installed on this machine')\n")
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHONPATH": f"{blocked}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    sections = json.loads(out.read_text())["sections"]
    assert set(sections) == {"environment", "steps", "attention", "largest_batch", "finetune_sync", "data_feed", "strategies", "entry_points"}
    assert not [name for name, section in sections.items() if "error" in section]
    steps = sections["steps"]["result"]
    assert {"base/image/eager", "base/clip/eager", "large/image/eager", "large/clip/eager"} <= set(steps)
    assert all(row["samples_per_s"] > 0 and row["host_syncs_per_step"] == 0 for key, row in steps.items() if key.endswith("eager"))
    assert sections["attention"]["result"]["backends_seen"]
    assert sections["finetune_sync"]["result"]["moae_dispatch"] == ["sparse"]  # auto on the CPU
    assert sections["strategies"]["result"]["ddp"]["samples_per_s"] > 0
    for stage in ("pretrain", "finetune"):
        assert sections["entry_points"]["result"][stage]["finite"] and sections["entry_points"]["result"][stage]["falling"]
    assert "=== gpu_check ===" in done.stdout
