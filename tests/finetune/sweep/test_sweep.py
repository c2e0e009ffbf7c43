"""A real local Ray Tune sweep over the shipped tiny fine-tuning recipe: ASHA prunes, MLflow nests the trials.

Ray runs in-process on 2 CPUs (one per trial, two at a time). The grid ``[A, B, B, A]`` over the
learning rate makes pruning certain, not likely: trials with the same values and seed give the
same validation numbers, so whichever of A or B is worse at the first rung falls below the median
of those recorded before it (ASHA, reduction factor 2) and is stopped, whatever the order in
which the two concurrent trials arrive.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from finetune_demo import TINY, demo_overrides

from finetune.cli import fit
from finetune.sweep.driver import SweepResources, SweepSettings, run_sweep
from plumbing.recipes import ConfigError, load_recipe

MAX_EPOCHS = 2  # ASHA rungs at 1 and 2 validation rounds


def tiny_overrides(demo: dict[str, str], folder: Path, tracking_uri: str) -> list[str]:
    """The shipped tiny recipe on the ``demo`` fixture's shards, AU only, 4 short epochs, our own MLflow store."""
    return [
        *demo_overrides(demo, folder / "finetune"),
        "--tasks.tasks", "[au]", "--trainer.max_epochs", str(MAX_EPOCHS), "--trainer.log_every_n_steps", "1",
        "--tracking.tracking_uri", tracking_uri, "--tracking.experiment", "sweep-test",
        "--eval.monitor", "val/au_f1_valthr_image",
    ]  # fmt: skip


def write_space(folder: Path, text: str) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(text)
    return path


def one_trial(space: Path) -> SweepSettings:
    """Settings of a one-sample sweep of ``space`` on a Ray of 2 CPUs started in this process."""
    return SweepSettings(space, num_samples=1, resources=SweepResources(num_cpus=2))


@pytest.mark.slow
def test_local_asha_sweep_prunes_and_leaves_child_runs(demo: dict[str, str], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = tiny_overrides(demo, tmp_path, tracking_uri)
    space = write_space(tmp_path, """
scheduler: {kind: asha, grace_period: 1, reduction_factor: 2}
parameters:
  optim.base_lr: {grid: [2.0e-3, 1.0e-6, 1.0e-6, 2.0e-3]}
  iat.strength: {choice: [0.0]}
""")
    started = time.monotonic()
    resources = SweepResources(num_cpus=2, cpus_per_trial=1, max_concurrent_trials=2)
    outcome = run_sweep(TINY, SweepSettings(space, num_samples=1, output_dir=tmp_path / "sweep", resources=resources), overrides)
    print(f"4-trial sweep took {time.monotonic() - started:.1f} s; {outcome.pruned} pruned; best {outcome.best_value:.4f}")

    assert outcome.trials == 4 and outcome.metric == "val/au_f1_valthr_image" and outcome.mode == "max"
    assert outcome.pruned >= 1
    assert outcome.best_params["optim.base_lr"] in (2.0e-3, 1.0e-6)
    assert outcome.best_checkpoint.is_file() and outcome.best_checkpoint.stat().st_size > 0
    best = load_recipe(fit, str(outcome.best_config))  # the best recipe runs as `python -m finetune fit --config`
    assert best["optim"].base_lr == outcome.best_params["optim.base_lr"]
    assert best["trainer"].max_epochs == MAX_EPOCHS and best["eval"].test  # trials skip the test; the recipe keeps it

    client = MlflowClient(tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.params["scheduler"] == "asha"
    assert parent.data.metrics["pruned_trials"] == outcome.pruned
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'")
    assert len(children) == 4
    statuses = [run.info.status for run in children]  # pruned trials are KILLED, not left RUNNING or FAILED
    assert set(statuses) <= {"FINISHED", "KILLED"} and statuses.count("KILLED") >= outcome.pruned
    assert {run.data.tags["ray.trial_id"] for run in children} and all("val/au_f1_valthr_image" in run.data.metrics for run in children)
    assert {float(run.data.params["optim/base_lr"]) for run in children} == {2.0e-3, 1.0e-6}


def test_a_bad_sweep_is_refused_before_ray_starts(demo: dict[str, str], tmp_path: Path) -> None:
    import ray

    overrides = tiny_overrides(demo, tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    unknown = write_space(tmp_path, "parameters:\n  optim.learning_rate: {choice: [0.1]}\n")
    with pytest.raises(ConfigError, match="'optim.learning_rate'"):
        run_sweep(TINY, one_trial(unknown), overrides)
    impossible = write_space(tmp_path, "parameters:\n  model.moae.top_k: {choice: [5]}\n")
    with pytest.raises(ConfigError, match="model.moae.top_k=5"):
        run_sweep(TINY, one_trial(impossible), overrides)
    on_test = write_space(tmp_path, "metric: test/au_f1_image\nparameters:\n  iat.strength: {choice: [0.0]}\n")
    with pytest.raises(ConfigError, match="must be a validation metric"):
        run_sweep(TINY, one_trial(on_test), overrides)
    assert not ray.is_initialized()


def test_a_down_tracking_server_is_reported_before_any_trial(demo: dict[str, str], tmp_path: Path) -> None:
    import socket

    import ray

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    space = write_space(tmp_path, "parameters:\n  iat.strength: {choice: [0.0]}\n")
    with pytest.raises(ConfigError, match=f"MLflow tracking server {dead} is unreachable"):
        run_sweep(TINY, one_trial(space), tiny_overrides(demo, tmp_path, dead))
    assert not ray.is_initialized()
