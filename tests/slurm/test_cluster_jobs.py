"""Jobs on the real one-host SLURM cluster: DDP across two fake nodes, requeue, failure, cancel, arrays.

The two "nodes" are two slurmd daemons on this machine (what cannot be had here is a second
physical host); everything else is real: sbatch, srun, submitit, gloo DDP, MLflow's SQLite store.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from slurm_jobs import run_slurm_cli, tiny_pretrain_recipe, wait_until_ended

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _stderr(folder: Path, job_id: str, task: int) -> str:
    return (folder / f"{job_id}_{task}_log.err").read_text(errors="replace")


def _submitted_id(output: str) -> str:
    found = re.findall(r"submitted \S+ job (\S+):", output)
    assert found, output
    return found[0]


def _checkpoint_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_two_node_ddp_pretraining_writes_its_checkpoint(slurm_cluster: str, demo_images: str, tmp_path: Path) -> None:
    recipe = tiny_pretrain_recipe(tmp_path / "tiny.yaml", demo_images, tmp_path / "run", max_steps=4, checkpoint_every=100)
    folder = tmp_path / "submitit"
    done = run_slurm_cli("submit", "pretrain", "--config", str(recipe), "--nodes", "2", "--time", "00:10:00", "--folder", str(folder))
    job_id = _submitted_id(done.stdout)

    assert wait_until_ended(folder, job_id, timeout_s=240) == "COMPLETED", run_slurm_cli("status", "--job-id", job_id, "--folder", str(folder)).stdout
    # one task per node, two ranks in one gloo process group
    for task, node in ((0, "node1"), (1, "node2")):
        log = _stderr(folder, job_id, task)
        assert f"GLOBAL_RANK: {task}, MEMBER: {task + 1}/2" in log
        assert f"task {task}/2 on node {node} ({task} of 2), restart 0" in log
    nodes = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "NodeList=node[1-2]" in nodes
    assert _checkpoint_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == 4
    status = run_slurm_cli("status", "--folder", str(folder)).stdout
    assert re.search(rf"{job_id}\s+COMPLETED\s+pretrain", status), status


def test_interrupted_job_requeues_and_resumes_from_its_checkpoint(slurm_cluster: str, demo_images: str, tmp_path: Path) -> None:
    import mlflow

    max_steps = 120  # enough that the interrupt lands mid-training even when steps are fast
    run = tmp_path / "run"
    recipe = tiny_pretrain_recipe(tmp_path / "tiny.yaml", demo_images, run, max_steps=max_steps, checkpoint_every=3)
    folder = tmp_path / "submitit"
    done = run_slurm_cli("submit", "pretrain", "--config", str(recipe), "--time", "00:10:00", "--folder", str(folder))
    job_id = _submitted_id(done.stdout)

    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.exists() and time.monotonic() < deadline:  # training has passed step 3
        time.sleep(0.5)
    assert last.exists(), _stderr(folder, job_id, 0)[-3000:]
    from submitit.slurm.slurm import SlurmJob

    SlurmJob(folder=folder, job_id=job_id)._interrupt()  # preemption as SLURM does it: SIGTERM, then USR2

    assert wait_until_ended(folder, job_id, timeout_s=240) == "COMPLETED", run_slurm_cli("status", "--job-id", job_id, "--folder", str(folder)).stdout
    log = _stderr(folder, job_id, 0)
    # SIGTERM comes first and USR2 after it: a fast step boundary may save on SIGTERM alone; either
    # way submitit's USR2 handler requeues (asserted below: restart 1, Restarts=1)
    saved = re.search(r"SLURM signal \[.*\]: saving .*last\.ckpt at step (\d+)", log)
    assert saved, log[-3000:]
    stopped_at = int(saved.group(1))
    assert 3 <= stopped_at < max_steps, "the signal should arrive mid-training"
    assert "task 0/1 on node node1 (0 of 1), restart 1:" in log and f"resuming from {last}" in log
    assert "Restarts=1" in subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert _checkpoint_step(last) == max_steps

    # the resumed job continued the step count and the MLflow run instead of starting again
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    after = steps[steps.index(stopped_at) + 1 :]
    assert after and after[0] == stopped_at + 1 and 1 not in after, steps
    run_id = json.loads((run / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [run_id]
    logged = sorted(m.step for m in client.get_metric_history(run_id, "train/loss_image"))
    assert logged[0] <= stopped_at < logged[-1] == max_steps
    assert len(logged) == len(set(logged)), "no step logged twice"


def test_failed_job_reports_the_remote_error(slurm_cluster: str, demo_images: str, tmp_path: Path) -> None:
    recipe = tiny_pretrain_recipe(tmp_path / "tiny.yaml", str(tmp_path / "nowhere" / "manifest.json"), tmp_path / "run", 2, 100)
    folder = tmp_path / "submitit"
    job_id = _submitted_id(run_slurm_cli("submit", "pretrain", "--config", str(recipe), "--folder", str(folder)).stdout)

    assert wait_until_ended(folder, job_id, timeout_s=180) == "FAILED"
    detail = run_slurm_cli("status", "--job-id", job_id, "--folder", str(folder)).stdout
    assert "FAILED" in detail and "Traceback" in detail
    assert "nowhere/manifest.json" in detail  # the job's own error message, from the node
    summary = run_slurm_cli("status", "--folder", str(folder)).stdout
    assert "nowhere/manifest.json" in summary.splitlines()[-1]  # the last line of the error under the job
    logs = run_slurm_cli("logs", job_id, "--folder", str(folder), "--lines", "5").stdout
    assert logs.strip()


def test_cancel_stops_a_running_job(slurm_cluster: str, demo_images: str, tmp_path: Path) -> None:
    recipe = tiny_pretrain_recipe(tmp_path / "tiny.yaml", demo_images, tmp_path / "run", 100000, 100000)
    folder = tmp_path / "submitit"
    job_id = _submitted_id(run_slurm_cli("submit", "pretrain", "--config", str(recipe), "--folder", str(folder)).stdout)

    assert f"cancelled {job_id}" in run_slurm_cli("cancel", job_id, "--folder", str(folder)).stdout
    assert wait_until_ended(folder, job_id, timeout_s=60) == "CANCELLED"
    unknown = run_slurm_cli("cancel", "999999", "--folder", str(folder), check=False)
    assert unknown.returncode == 2 and "999999 was not submitted from" in unknown.stderr


def test_shard_array_builds_two_ranges_then_merges(slurm_cluster: str, tmp_path: Path) -> None:
    import yaml

    from data_shards.manifest import read_manifest
    from data_shards.synth import synth_dataset

    labels = synth_dataset(str(tmp_path / "raw"), images=40, clips=0, img_size=32, frames=1, seed=0)
    recipe = tmp_path / "build.yaml"
    out = tmp_path / "shards"
    recipe.write_text(yaml.safe_dump({
        "media": str(tmp_path / "raw" / "images"), "out": str(out), "labels": labels["images-train"],
        "vocab": str(tmp_path / "raw" / "vocab.json"), "modality": "image",
        "shards": {"img_size": 32, "samples_per_shard": 5, "workers": 1},
    }))
    folder = tmp_path / "submitit"
    done = run_slurm_cli("submit", "shards", "--config", str(recipe), "--num-parts", "2", "--folder", str(folder))
    ids = re.findall(r"submitted \S+ job (\S+):", done.stdout)
    array_id = ids[0].split("_")[0]
    assert ids == [f"{array_id}_0", f"{array_id}_1", ids[2]] and "_" not in ids[2]

    for job_id in ids:
        assert wait_until_ended(folder, job_id, timeout_s=180) == "COMPLETED", run_slurm_cli("status", "--job-id", job_id, "--folder", str(folder)).stdout
    manifest = read_manifest(str(out / "manifest.json"))
    assert manifest.num_samples == sum(1 for _ in open(labels["images-train"]))
    assert sorted(p.name for p in out.glob("part-*.json")) == ["part-0000-of-0002.json", "part-0001-of-0002.json"]
    # each element wrote its own shard range (shard i belongs to part i % 2), none twice
    written = [int(re.search(r"wrote (\d+) shards", (folder / f"{array_id}_{part}_0_log.out").read_text()).group(1)) for part in (0, 1)]
    assert all(count > 0 for count in written) and sum(written) == len(manifest.shards)


def test_failed_shard_part_cancels_the_merge(slurm_cluster: str, tmp_path: Path) -> None:
    import yaml

    recipe = tmp_path / "build.yaml"
    recipe.write_text(yaml.safe_dump({"media": str(tmp_path / "no-such-folder"), "out": str(tmp_path / "shards"), "modality": "image"}))
    folder = tmp_path / "submitit"
    done = run_slurm_cli("submit", "shards", "--config", str(recipe), "--num-parts", "2", "--folder", str(folder))
    ids = re.findall(r"submitted \S+ job (\S+):", done.stdout)

    assert [wait_until_ended(folder, job_id, timeout_s=120) for job_id in ids] == ["FAILED", "FAILED", "CANCELLED"]
    assert "no-such-folder" in run_slurm_cli("status", "--job-id", ids[0], "--folder", str(folder)).stdout
