"""Training on a machine without the mlflow package (the borrowed GPU machine): tracking.enabled=false.

The mlflow package is blocked in the child process (``sys.modules["mlflow"] = None`` makes every
import of it fail), as on a machine where it is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_sets import ShardSets
from tiny_pretraining import tiny_recipe, write_recipe

from face_core.engine.config import OptimConfig, TrackingConfig, TrainerConfig
from face_core.engine.trainer import TrainingRun
from face_core.model.config import MAEConfig, ViTConfig
from pretrain.lightning_module import MAEPretrainModule

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_MLFLOW = "import runpy, sys\nsys.modules['mlflow'] = None\nsys.argv = ['pretrain', *sys.argv[1:]]\nrunpy.run_module('pretrain', run_name='__main__')\n"


def fit_without_mlflow(recipe: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_MLFLOW, "fit", "--config", str(recipe), *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_tracking_off_trains_without_mlflow_and_tracking_on_says_what_to_do(synthetic_shards: ShardSets, tmp_path: Path) -> None:
    shards = synthetic_shards("tiny")
    run_dir = tmp_path / "run"
    recipe = write_recipe(tiny_recipe(shards, run_dir, max_steps=4, max_epochs=1), tmp_path / "tiny.yaml")
    refused = fit_without_mlflow(recipe)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: tracking.enabled=true but the mlflow package is not installed")
    done = fit_without_mlflow(recipe, "--tracking.enabled", "false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step      4" in done.stdout
    assert not (run_dir / "mlflow.db").exists() and not (run_dir / "mlflow_run.json").exists()
    assert json.loads((run_dir / "config.json").read_text())["tracking"]["enabled"] is False
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [2, 4]


def test_compile_wraps_the_plain_model_in_place_and_keeps_its_parameter_names(tmp_path: Path) -> None:
    """trainer.compile compiles the stage's model in place (nn.Module.compile): state-dict keys, so
    checkpoints and releases, stay as they are. (Compiled steps are timed by benchmarks/gpu_check.py
    on a GPU; compiling on this CPU takes a minute and gains nothing.)"""

    module = MAEPretrainModule.from_configs(MAEConfig(encoder=ViTConfig.preset("tiny", img_size=32, depth=1), decoder_depth=1), OptimConfig(), 8)
    keys = list(module.state_dict())
    run = TrainingRun(TrainerConfig(output_dir=str(tmp_path), compile=True, resume="never"), TrackingConfig(enabled=False))
    assert run.prepare(module) is module and module.model._compiled_call_impl is not None
    assert list(module.state_dict()) == keys
    plain = MAEPretrainModule.from_configs(MAEConfig(encoder=ViTConfig.preset("tiny", img_size=32, depth=1), decoder_depth=1), OptimConfig(), 8)
    TrainingRun(TrainerConfig(output_dir=str(tmp_path / "plain"), resume="never"), TrackingConfig(enabled=False)).prepare(plain)
    assert plain.model._compiled_call_impl is None
    assert TrainerConfig(compile=True, strategy="fsdp").problems() == [("compile", "is measured with strategy auto or ddp only, not 'fsdp'")]
