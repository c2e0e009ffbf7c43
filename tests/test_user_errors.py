"""Every error a user can cause ends the command with one ``error:`` line naming the key, file or URI.

Each case runs the real command line in a fresh process and checks its whole stderr: exit status
2, no traceback, exactly one ``error:`` line and it is the last line. (An unknown registered model
needs a tracking server: tests/face_core/release/test_lineage.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_PRETRAIN = ROOT / "configs" / "pretrain" / "tiny.yaml"
TINY_FINETUNE = ROOT / "configs" / "finetune" / "tiny.yaml"


def error_line(*args: str, env: dict[str, str] | None = None) -> str:
    """Run ``python -m <args>``; assert it failed with exactly one ``error:`` line, last, and no traceback; return it."""
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert [line for line in lines if "error:" in line] == lines[-1:] and lines[-1].startswith("error: "), done.stderr[-3000:]
    return lines[-1]


def pickled_checkpoint(path: Path) -> Path:
    """A checkpoint with a pickled Python object inside, as ``torch.save`` of a whole module or callback leaves."""
    torch.save({"state_dict": {}, "global_step": 3, "callbacks": {"Timer": os.stat_result((0,) * 10)}}, path)
    return path


def test_a_misspelt_key_is_refused_not_expanded() -> None:
    line = error_line("pretrain", "fit", "--config", str(TINY_PRETRAIN), "--trainer.max_step", "3")
    assert "unknown key 'trainer.max_step'" in line and "did you mean trainer.max_steps" in line, line
    assert "python -m pretrain fit --help" in line


def test_a_misspelt_key_in_a_recipe_names_the_file(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("trainer:\n  max_step: 3\n")
    line = error_line("finetune", "fit", "--config", str(recipe))
    assert f"unknown key 'trainer.max_step' in {recipe}" in line and "trainer.max_steps" in line, line


def test_a_wrong_value_is_one_line() -> None:
    line = error_line("pretrain", "fit", "--trainer.strategy", "ddpp")
    assert "trainer.strategy" in line and "ddpp" in line, line


@pytest.mark.slow
def test_a_pickled_last_checkpoint_on_the_resume_path_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    last = pickled_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    line = error_line("pretrain", "fit", "--config", str(TINY_PRETRAIN), "--trainer.output_dir", str(run_dir))
    assert f"trainer.resume='auto': cannot resume from {last}" in line and "pickled Python objects (os.stat_result)" in line, line
    assert "delete it to start afresh, or pass --trainer.resume never" in line
    assert "weights_only" not in line  # torch's advice to unpickle it is not repeated


@pytest.mark.slow
def test_a_truncated_checkpoint_given_to_resume_is_one_line(tmp_path: Path) -> None:
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "global_step": 3}, whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[:2000])  # an interrupted copy
    line = error_line("finetune", "fit", "--config", str(TINY_FINETUNE), "--trainer.output_dir", str(tmp_path / "run"), "--trainer.resume", str(cut))
    assert f"trainer.resume='{cut}': cannot resume from {cut}: it is truncated" in line, line


@pytest.mark.slow
def test_a_pickled_file_as_the_encoder_to_start_from_names_model_init(tmp_path: Path) -> None:
    init = pickled_checkpoint(tmp_path / "encoder.pth")
    line = error_line("finetune", "fit", "--config", str(TINY_FINETUNE), "--trainer.output_dir", str(tmp_path / "run"), "--model.init", str(init))
    assert f"model.init='{init}': it holds pickled Python objects" in line, line


@pytest.mark.slow
def test_score_without_a_store_names_the_flag_it_has() -> None:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    line = error_line("finetune", "score", "models:/face-au-tiny@champion", "--image_test", "[x/manifest.json]", env=env)
    assert "no MLflow tracking URI: pass --tracking_uri or set MLFLOW_TRACKING_URI" in line, line
