"""A Ray cluster over a 2-node SLURM allocation (head + worker, one task per node) running a real Ray Tune sweep.

Both "nodes" are slurmd daemons on this machine (no second physical host here), so the two Ray
nodes share an IP; Ray still sees two nodes with one CPU each and runs one trial on each.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import yaml
from slurm_jobs import run_slurm_cli, wait_until_ended

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_sweep_runs_on_a_ray_cluster_spanning_the_allocation(slurm_cluster: str, demo_shards: dict[str, str], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {
            "init": "",
            "encoder": {"img_size": 32, "patch_size": 8, "num_frames": 2, "tubelet_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 2},
            "drop_path_rate": 0.0, "moae": {"top_blocks": 1, "num_experts": 2, "top_k": 1},
        },
        "tasks": {"tasks": ["au"]},
        "data": {"images": {"train": [demo_shards["images-train"]], "val": [demo_shards["images-val"]], "batch_size": 16},
                 "num_workers": 0, "shuffle_buffer": 50},
        "trainer": {"output_dir": str(tmp_path / "finetune"), "max_epochs": 1, "accelerator": "cpu", "precision": "32",
                    "log_every_n_steps": 1, "checkpoint_every_n_steps": 1000},
        "tracking": {"experiment": "slurm-sweep"},
        "eval": {"monitor": "val/au_f1_valthr_image", "test": False, "identity_probe": False},
    }))  # fmt: skip
    space = tmp_path / "sweep.yaml"
    space.write_text("scheduler: {kind: asha, grace_period: 1, reduction_factor: 2}\n"
                     "parameters:\n  optim.base_lr: {grid: [2.0e-3, 1.0e-3]}\n  iat.strength: {choice: [0.0]}\n")
    folder = tmp_path / "submitit"
    done = run_slurm_cli("submit", "sweep", "--config", str(recipe), "--search-space", str(space), "--num-samples", "1",
                         "--nodes", "2", "--cpus-per-task", "1", "--time", "00:10:00", "--folder", str(folder))
    job_id = re.search(r"submitted sweep job (\S+):", done.stdout).group(1)

    assert wait_until_ended(folder, job_id, timeout_s=300) == "COMPLETED", run_slurm_cli("status", "--job-id", job_id, "--folder", str(folder)).stdout
    head_log = (folder / f"{job_id}_0_log.err").read_text()
    assert re.search(r"Ray cluster \S+: 2 nodes; sweeping", head_log), head_log[-3000:]
    assert "Ray worker joining" in (folder / f"{job_id}_1_log.err").read_text()
    with open(folder / f"{job_id}_0_result.pkl", "rb") as handle:
        outcome, result = pickle.load(handle)
    assert outcome == "success", result
    assert result["trials"] == 2 and result["best_params"]["optim.base_lr"] in (2.0e-3, 1.0e-3)
    assert Path(result["best_checkpoint"]).is_file() and Path(result["best_config"]).is_file()
    assert Path(result["folder"]) == (tmp_path / "finetune-sweep").resolve()
