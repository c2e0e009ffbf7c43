"""The online representation probe during pretraining: its metrics land in the MLflow run at the probe steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from synthetic_sets import ShardSets
from tiny_pretraining import tiny_recipe, write_recipe

from plumbing.recipes import ConfigError, load_recipe, validate
from pretrain.cli import fit
from pretrain.config import PretrainConfig, RepresentationProbeConfig
from pretrain.training import run_pretraining

ROOT = Path(__file__).resolve().parents[2]
PROBE_METRICS = ("probe/au_f1", "probe/au_f1_valthr", "probe/uar", "probe/war", "probe/seconds")


@pytest.fixture(scope="module")
def shards(synthetic_shards: ShardSets) -> dict[str, str]:
    return synthetic_shards("tiny")


def images_only(shards: dict[str, str], output_dir: Path, probe: dict | None, **trainer: object) -> PretrainConfig:
    """The tiny recipe on images alone, with ``probe`` as its probe section."""
    recipe = tiny_recipe(shards, output_dir, image_log_every_n_steps=0, **trainer)
    recipe["data"]["clips"]["train"] = []
    if probe is not None:
        recipe["probe"] = probe
    return PretrainConfig(**load_recipe(fit, str(write_recipe(recipe, output_dir.parent / f"{output_dir.name}.yaml"))))


def history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run's MLflow record as (step, value) lists."""
    record = json.loads((run_dir / "mlflow_run.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    names = client.get_run(record["run_id"]).data.metrics
    return {name: [(m.step, m.value) for m in client.get_metric_history(record["run_id"], name)] for name in names}


def test_probe_metrics_are_logged_at_the_probe_steps(shards: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    probe = {"train_shards": [shards["images-train"]], "val_shards": [shards["images-val"]], "every_n_steps": 3, "max_samples": 100}
    run_dir = Path(run_pretraining(images_only(shards, tmp_path / "probed", probe, max_steps=7)))
    logged = history(run_dir)
    for name in PROBE_METRICS:
        assert [step for step, _ in logged[name]] == [0, 3, 6, 7], name  # the initial encoder, every 3 steps, the end
    for name in ("probe/au_f1", "probe/au_f1_valthr", "probe/uar", "probe/war"):
        assert all(0.0 <= value <= 1.0 for _, value in logged[name]), logged[name]
    assert all(value > 0 for _, value in logged["probe/seconds"])
    assert "train/loss_image" in logged  # beside the loss, in the same run
    lines = [line for line in capsys.readouterr().out.splitlines() if " probe " in line]
    val_count = json.loads(Path(shards["images-val"]).read_text())["counts"]["samples"]
    assert len(lines) == 4 and lines[1].startswith("step      3 probe au_f1 ") and f"fit on 100, scored on {val_count} val images" in lines[0]

    plain = Path(run_pretraining(images_only(shards, tmp_path / "plain", None, max_steps=2)))
    assert not [name for name in history(plain) if name.startswith("probe/")]
    assert json.loads((plain / "config.json").read_text())["probe"]["train_shards"] == []


def test_probe_config_problems() -> None:
    assert RepresentationProbeConfig().problems() == [] and not RepresentationProbeConfig().enabled
    with pytest.raises(ConfigError, match=r"probe\.val_shards=\[\]: give both"):
        validate({"probe": RepresentationProbeConfig(train_shards=["a/manifest.json"])})
    with pytest.raises(ConfigError, match=r"probe\.train_shards=\[\]: give both"):
        validate({"probe": RepresentationProbeConfig(val_shards=["a/manifest.json"])})
    with pytest.raises(ConfigError, match=r"probe\.every_n_steps=0: must be >= 1"):
        validate({"probe": RepresentationProbeConfig(every_n_steps=0)})


def test_bad_probe_sets_fail_before_training_naming_the_key(shards: dict[str, str], tmp_path: Path) -> None:
    missing = {"train_shards": [str(tmp_path / "nope" / "manifest.json")], "val_shards": [shards["images-val"]]}
    with pytest.raises(FileNotFoundError, match=r"probe\.train_shards: shard manifest not found: .*nope"):
        run_pretraining(images_only(shards, tmp_path / "missing", missing, max_steps=2))
    clips = {"train_shards": [shards["images-train"]], "val_shards": [shards["clips-val"]]}
    with pytest.raises(ConfigError, match=r"probe\.val_shards: .* holds clip samples"):
        run_pretraining(images_only(shards, tmp_path / "clips", clips, max_steps=2))
    for name in ("missing", "clips"):
        assert not (tmp_path / name / "checkpoints").exists()


@pytest.mark.slow
def test_probe_under_two_ddp_processes(shards: dict[str, str], tmp_path: Path) -> None:
    probe = {"train_shards": [shards["images-train"]], "val_shards": [shards["images-val"]], "every_n_steps": 2, "max_samples": 60}
    recipe = tiny_recipe(shards, tmp_path / "run", image_log_every_n_steps=0, max_steps=4, devices=2, strategy="ddp")
    recipe["data"]["clips"]["train"] = []
    recipe["probe"] = probe
    path = write_recipe(recipe, tmp_path / "run.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pretrain", "fit", "--config", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line.split(" probe ")[0] for line in done.stdout.splitlines() if " probe " in line] == ["step      0", "step      2", "step      4"]  # rank 0 only
    logged = history(tmp_path / "run")
    assert [step for step, _ in logged["probe/uar"]] == [0, 2, 4]
