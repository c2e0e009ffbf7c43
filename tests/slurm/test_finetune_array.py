"""Fine-tuning as a SLURM job array: one element per subject-exclusive fold x seed, then the summary job of `finetune folds`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest
import yaml
from slurm_jobs import run_slurm_cli, wait_until_ended

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_fold_array_trains_each_fold_then_summarises(slurm_cluster: str, demo_shards: dict[str, str], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    output = tmp_path / "finetune"
    recipe.write_text(yaml.safe_dump({
        "model": {
            "init": "",  # a random tiny encoder: this tests the job array, not the pretrained weights
            "encoder": {"img_size": 32, "patch_size": 8, "num_frames": 2, "tubelet_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 2},
            "drop_path_rate": 0.0, "moae": {"top_blocks": 1, "num_experts": 2, "top_k": 1},
        },
        "tasks": {"tasks": ["au"]},
        "data": {"images": {"train": [demo_shards["images-train"]], "batch_size": 16}, "num_workers": 0, "shuffle_buffer": 50},
        "trainer": {"output_dir": str(output), "max_epochs": 1, "accelerator": "cpu", "precision": "32",
                    "log_every_n_steps": 1, "checkpoint_every_n_steps": 1000},
        "eval": {"monitor": "val/au_f1_valthr_image", "identity_probe": False},
    }))  # fmt: skip
    folder = tmp_path / "submitit"
    done = run_slurm_cli("submit", "finetune", "--config", str(recipe), "--folds", "2", "--seeds", "[0,1]", "--val-fraction", "0.25",
                         "--time", "00:10:00", "--folder", str(folder))
    ids = re.findall(r"submitted \S+ job (\S+):", done.stdout)
    array_id = ids[0].split("_")[0]
    assert ids[:4] == [f"{array_id}_{i}" for i in range(4)] and len(ids) == 5

    for job_id in ids:
        assert wait_until_ended(folder, job_id, timeout_s=300) == "COMPLETED", run_slurm_cli("status", "--job-id", job_id, "--folder", str(folder)).stdout
    for fold in (0, 1):
        for seed in (0, 1):  # the folders of `python -m finetune folds`
            result = json.loads((output / f"fold{fold}" / f"seed{seed}" / "result.json").read_text())
            assert result["test"], f"fold {fold} seed {seed} was tested"
    summary = json.loads((output / "folds.json").read_text())
    assert summary["k"] == 2 and summary["seeds"] == [0, 1] and summary["runs"] == 4 and summary["partition"].startswith("random")
    metric = summary["metrics"]["test/au_f1_image"]
    assert metric["n"] == 4 and metric["ci95"][0] <= metric["mean"] <= metric["ci95"][1]
    assert "95% interval" in (folder / f"{ids[-1]}_0_log.out").read_text()  # the table, printed by the summary job
    record = json.loads((output / "mlflow_run.json").read_text())
    client = mlflow.MlflowClient(record["tracking_uri"])
    parent = client.get_run(record["run_id"])
    assert parent.data.metrics["test/au_f1_image/mean"] == pytest.approx(metric["mean"])
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((r.data.tags["face.fold"], r.data.tags["face.seed"]) for r in children) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    status = run_slurm_cli("status", "--folder", str(folder)).stdout
    assert status.count("COMPLETED") == 5 and "finetune-summary" in status
