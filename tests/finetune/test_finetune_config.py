"""Every shipped fine-tuning recipe loads and validates; reference values match methods.md."""

import subprocess
import sys
from pathlib import Path

import pytest

from finetune.cli import fit, folds
from finetune.config import FinetuneDataConfig, FinetuneModelConfig
from plumbing.recipes import ConfigError, load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs" / "finetune").glob("*.yaml"))


def recipe(name: str) -> dict:
    return load_recipe(fit, str(ROOT / "configs" / "finetune" / f"{name}.yaml"))


def test_recipes_exist() -> None:
    assert {p.stem for p in RECIPES} >= {"tiny", "bp4d", "disfa", "rafdb", "affectnet", "dfew", "ferv39k", "mafw"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_validates(path: Path) -> None:
    config = load_recipe(fit, str(path))
    assert isinstance(config["model"], FinetuneModelConfig)
    assert isinstance(config["data"], FinetuneDataConfig)
    assert config["eval"].monitor == "auto" or config["eval"].monitor.startswith("val/")


def test_reference_values() -> None:
    assert recipe("bp4d")["iat"].strength == 2.0 and recipe("bp4d")["iat"].schedule == "constant"
    assert recipe("disfa")["iat"].strength == 0.5
    dfew = recipe("dfew")
    assert (dfew["data"].clip_stride, dfew["model"].num_frames) == (4, 16)
    assert (dfew["data"].test_clips, dfew["data"].test_crops) == (2, 2)
    assert (dfew["model"].moae.top_blocks, dfew["model"].moae.num_experts, dfew["model"].moae.top_k) == (6, 8, 2)
    assert dfew["model"].moae.balance_coef == 1e-3
    assert dfew["optim"].layer_decay == 0.75 and dfew["optim"].betas == (0.9, 0.999) and dfew["optim"].weight_decay == 0.05
    assert dfew["tasks"].label_smoothing == 0.1 and dfew["trainer"].max_epochs == 100
    assert recipe("affectnet")["data"].class_balanced


def test_tiny_recipe_trains_every_task_from_the_tiny_encoder() -> None:
    tiny = recipe("tiny")
    assert tiny["model"].init.startswith("runs/demo/pretrain")
    assert set(tiny["tasks"].tasks) == {"au", "expression"}
    assert tiny["data"].image_train and tiny["data"].clip_train
    assert tiny["iat"].strength > 0 and tiny["model"].moae.top_blocks > 0


def test_impossible_values_name_key_and_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_recipe(fit, str(ROOT / "configs/finetune/tiny.yaml"),
                    ["--model.moae.top_k", "9", "--iat.strength", "-1", "--data.test_crops", "3", "--eval.monitor", "test/au_f1_image"])
    message = str(caught.value)
    assert "model.moae.top_k=9" in message and "iat.strength=-1.0" in message
    assert "data.test_crops=3" in message and "eval.monitor='test/au_f1_image'" in message
    assert "tiny.yaml" in message


def test_frozen_backbone_needs_adapters() -> None:
    with pytest.raises(ConfigError, match="model.freeze_backbone=True"):
        load_recipe(fit, str(ROOT / "configs/finetune/rafdb.yaml"), ["--model.freeze_backbone", "true"])


def test_test_subjects_must_be_held_out() -> None:
    with pytest.raises(ConfigError, match="data.test_subjects"):
        load_recipe(fit, str(ROOT / "configs/finetune/tiny.yaml"), ["--data.train_subjects", "[a, b]", "--data.test_subjects", "[b]"])


def test_unknown_key_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("iat:\n  strenght: 1.0\n")
    with pytest.raises(ConfigError, match="strenght"):
        load_recipe(fit, str(bad))


def test_folds_command_takes_the_same_recipe() -> None:
    config = load_recipe(folds, str(ROOT / "configs/finetune/bp4d.yaml"), ["--k", "3", "--only", "[1]"])
    assert config["k"] == 3 and config["only"] == [1]


def test_cli_reports_bad_value_without_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "finetune", "fit", "--config", "configs/finetune/tiny.yaml", "--tasks.label_smoothing", "1.5"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert done.returncode == 2
    assert "tasks.label_smoothing=1.5" in done.stderr
    assert "Traceback" not in done.stderr
