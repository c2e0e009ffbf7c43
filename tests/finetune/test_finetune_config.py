"""Every shipped fine-tuning recipe loads and validates; reference values match methods.md."""

import subprocess
import sys
from pathlib import Path

import pytest

from face_core.model.config import TaskModelConfig
from finetune.cli import fit, folds
from finetune.config import FinetuneDataConfig, timm_augment, videomae_augment
from plumbing.recipes import ConfigError, load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs" / "finetune").glob("*.yaml"))


def recipe(name: str) -> dict:
    return load_recipe(fit, str(ROOT / "configs" / "finetune" / f"{name}.yaml"))


def test_recipes_exist() -> None:
    assert {p.stem for p in RECIPES} >= {"tiny", "bp4d", "bp4d_plus", "disfa", "rafdb", "affectnet", "dfew", "ferv39k", "mafw"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_validates(path: Path) -> None:
    config = load_recipe(fit, str(path))
    assert isinstance(config["model"], TaskModelConfig)
    assert isinstance(config["data"], FinetuneDataConfig)
    assert config["eval"].monitor == "auto" or config["eval"].monitor.startswith("val/")


def test_fmae_iat_recipes_as_published() -> None:
    """FMAE-IAT's README commands and argparse defaults (docs/recipes.md)."""
    published = {  # recipe: (lambda, base lr, batch, epochs)
        "bp4d": (2.0, 5e-4, 64, 30), "bp4d_plus": (1.0, 5e-4, 64, 30), "disfa": (0.5, 5e-4, 64, 20),
        "rafdb": (0.0, 1e-3, 32, 60), "affectnet": (0.0, 5e-4, 64, 30),
    }
    for name, (strength, base_lr, batch, epochs) in published.items():
        config = recipe(name)
        assert config["iat"].strength == strength and config["iat"].loss == "bce", name
        assert (config["optim"].base_lr, config["data"].images.batch_size, config["trainer"].max_epochs) == (base_lr, batch, epochs), name
        assert config["optim"].layer_decay == 0.65 and config["model"].drop_path_rate == 0.1 and config["model"].learn_pos_embed, name
        assert config["optim"].warmup_fraction == 0.1, name  # 3 of 30, 2 of 20, 6 of 60 epochs
        assert config["data"].mixup_alpha == 0 and config["data"].cutmix_alpha == 0, name
        assert not config["data"].images.class_balanced, name
        assert config["tasks"].tasks == ["au"] or config["tasks"].label_smoothing == 0.0, name
        augment = config["data"].images.augment  # timm's create_transform as FMAE-IAT calls it
        assert (augment.crop_scale, augment.interpolation, augment.rand_augment, augment.random_erase) == (
            (0.08, 1.0), "bicubic", "rand-m9-mstd0.5-inc1", 0.25), name


def test_s4d_recipes_train_jointly_with_images() -> None:
    for name in ("dfew", "mafw", "ferv39k"):
        config = recipe(name)
        data, model = config["data"], config["model"]
        assert (data.clips.frame_stride, model.num_frames, model.img_size) == (4, 16, 160), name
        assert (data.test_clips, data.test_crops) == (2, 2), name
        assert data.images.train and data.images.passes == 0.5 and data.clips.passes == 1.0, name  # sfer_data_rate 0.5
        assert (data.images.batch_size, data.clips.batch_size) == (32, 16) and data.images.class_balanced and not data.clips.class_balanced, name
        assert (model.moae.top_blocks, model.moae.num_experts, model.moae.top_k, model.moae.balance_coef) == (6, 8, 2, 1e-3), name
        assert not model.learn_pos_embed and model.drop_path_rate == 0.0, name
        optim = config["optim"]
        assert optim.layer_decay == 0.75 and optim.betas == (0.9, 0.999) and optim.weight_decay == 0.05, name
        lr = optim.base_lr * data.images.batch_size * config["trainer"].devices / 256  # our scaling rule
        assert lr == pytest.approx(1e-5 * data.clips.batch_size * config["trainer"].devices / 8), name  # S4D's
        assert config["tasks"].label_smoothing == 0.1 and config["trainer"].max_epochs == 100, name
        assert data.clips.augment.rand_augment == "rand-m7-n4-mstd0.5-inc1" and data.clips.augment.interpolation == "bilinear", name


def test_tiny_recipe_trains_every_task_from_the_tiny_encoder() -> None:
    tiny = recipe("tiny")
    assert tiny["model"].init.startswith("runs/demo/pretrain")
    assert set(tiny["tasks"].tasks) == {"au", "expression"} and tiny["tasks"].au_balance
    assert tiny["data"].images.train and tiny["data"].images.val and tiny["data"].images.test  # the README table is on images
    assert tiny["iat"].strength > 0 and tiny["model"].moae.top_blocks > 0


def test_data_sections_keep_the_finetuning_defaults() -> None:
    data = FinetuneDataConfig()
    assert (data.images.batch_size, data.clips.batch_size, data.clips.frame_stride, data.clips.repeats) == (32, 8, 4, 1)
    augment = data.images.augment  # timm's create_transform
    assert (augment.crop_scale, augment.crop_ratio, augment.interpolation, augment.hflip, augment.rand_augment, augment.random_erase) == (
        (0.08, 1.0), (3 / 4, 4 / 3), "bicubic", 0.5, "rand-m9-mstd0.5-inc1", 0.25)
    assert data.clips.augment == videomae_augment() and (videomae_augment().interpolation, videomae_augment().rand_augment) == (
        "bilinear", "rand-m7-n4-mstd0.5-inc1")
    tiny = recipe("tiny")["data"].images.augment  # a recipe giving some augmentation keys keeps the others' defaults
    assert (tiny.crop_scale, tiny.crop_ratio, tiny.hflip) == ((0.8, 1.0), timm_augment().crop_ratio, 0.5)
    assert recipe("dfew")["data"].clips.augment == videomae_augment()


def test_impossible_values_name_key_and_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_recipe(fit, str(ROOT / "configs/finetune/tiny.yaml"),
                    ["--model.moae.top_k", "9", "--iat.strength", "-1", "--data.test_crops", "0", "--eval.monitor", "test/au_f1_image",
                     "--data.clips.frame_stride", "0", "--data.images.augment.hflip", "2"])
    message = str(caught.value)
    assert "model.moae.top_k=9" in message and "iat.strength=-1.0" in message
    assert "data.test_crops=0" in message and "eval.monitor='test/au_f1_image'" in message
    assert "data.clips.frame_stride=0" in message and "data.images.augment.hflip=2.0" in message
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
