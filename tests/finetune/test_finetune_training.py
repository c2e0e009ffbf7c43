"""End-to-end fine-tuning on real demo shards: every task, IAT, MoAE, evaluation, folds, 1 and 2 processes; the
monitored metric follows the heads."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from finetune_demo import ROOT, TINY, demo_overrides, tiny_config

from face_core.model.task_model import TaskSpec
from finetune.config import FinetuneConfig
from finetune.training import check_monitor, evaluate_run, monitor_metric, run_finetuning
from plumbing.recipes import ConfigError


def test_every_task_trains_on_images_and_clips(demo: dict[str, str], tmp_path: Path) -> None:
    config = tiny_config(demo, tmp_path / "run", "--data.test_clips", "2")
    result = run_finetuning(config)
    run = Path(result.run_dir)
    assert result.monitor == "val/au_f1_image" and 0.0 <= result.best_score <= 1.0
    assert Path(result.best_checkpoint).is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    for name in ("au_f1_image", "au_f1_valthr_image", "au_f1_clip", "war_image", "uar_image", "war_clip", "uar_clip"):
        assert 0.0 <= result.test[f"test/{name}"] <= 1.0, name
    assert 0.0 <= result.test["test/identity_probe_accuracy_image"] <= 1.0
    assert result.test["test/identity_probe_subjects_image"] == 16  # the held-out test subjects (data_shards.synth.SUBJECTS)
    assert {p.name for p in (run / "pictures").iterdir()} >= {"test_au_f1_image.png", "test_confusion_clip.png"}
    assert json.loads((run / "result.json").read_text())["best_checkpoint"] == result.best_checkpoint
    assert result.parameters["trainable"] == result.parameters["total"]
    stored = torch.load(result.best_checkpoint, weights_only=True, map_location="cpu")  # plain data only
    assert stored["hyper_parameters"]["spec"]["tasks"] == ["au", "expression"]
    assert any(".parallel_branch." in key for key in stored["state_dict"]) and "model.identity_head.weight" in stored["state_dict"]
    again = evaluate_run(result.run_dir)
    for name in ("test/au_f1_image", "test/war_clip", "test/identity_probe_accuracy_image"):
        assert again[name] == pytest.approx(result.test[name], abs=1e-6)


def test_frozen_backbone_trains_only_adapters_and_heads(demo: dict[str, str], tmp_path: Path) -> None:
    config = tiny_config(demo, tmp_path / "frozen", "--model.freeze_backbone", "true", "--tasks.tasks", "[expression]",
                         "--eval.monitor", "val/war_image", "--data.clips.train", "[]", "--data.clips.val", "[]",
                         "--data.clips.test", "[]", "--eval.identity_probe", "false", "--data.mixup_alpha", "0.8",
                         "--data.cutmix_alpha", "1.0", "--data.images.class_balanced", "true")
    result = run_finetuning(config)
    assert result.parameters["trainable"] < result.parameters["total"] / 2
    from face_core.release.loading import load_model

    pretrained = load_model(demo["encoder"], encoder_only=True, img_size=32, num_frames=4).state_dict()
    tuned = torch.load(result.best_checkpoint, weights_only=True, map_location="cpu")["state_dict"]
    assert torch.equal(tuned["model.encoder.blocks.0.mlp.fc1.weight"], pretrained["blocks.0.mlp.fc1.weight"])
    assert not torch.equal(tuned["model.encoder.blocks.1.parallel_branch.up_weight"], torch.zeros_like(tuned["model.encoder.blocks.1.parallel_branch.up_weight"]))


def test_bad_runs_fail_before_training(demo: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.images.val"):
        run_finetuning(tiny_config(demo, tmp_path / "a", "--data.images.val", "[]"))
    with pytest.raises(ConfigError, match="eval.monitor='val/war_clip'"):
        run_finetuning(tiny_config(demo, tmp_path / "b", "--eval.monitor", "val/war_clip", "--tasks.tasks", "[au]"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_finetuning(tiny_config(demo, tmp_path / "c", "--model.init", str(tmp_path / "nowhere")))


@pytest.mark.slow
def test_two_gloo_processes(demo: dict[str, str], tmp_path: Path) -> None:
    """Real DDP: two CPU processes (gloo) through the command line, every task, IAT and MoAE.

    The image test sets are dealt whole to the ranks (the 140 train and the 70 test images of the
    ``tiny`` set), so the second rank pads its test batches: every test image is counted once, padding nowhere.
    """
    run = tmp_path / "ddp"
    uneven = f"[{demo['images-train']}, {demo['images-test']}]"
    done = subprocess.run(
        [sys.executable, "-m", "finetune", "fit", "--config", str(TINY), *demo_overrides(demo, run),
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "2", "--data.images.test", uneven],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((run / "result.json").read_text())
    assert Path(result["best_checkpoint"]).is_file()
    assert 0.0 <= result["test"]["test/au_f1_image"] <= 1.0 and 0.0 <= result["test"]["test/war_clip"] <= 1.0
    probe = result["test"]["test/identity_probe_train_samples_image"] + result["test"]["test/identity_probe_test_samples_image"]
    assert probe == result["test"]["test/samples_image"] == 140 + 70  # features and counts from both ranks, each image once


@pytest.mark.slow
def test_subject_exclusive_folds_as_one_command(demo: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "folds"
    done = subprocess.run(
        [sys.executable, "-m", "finetune", "folds", "--k", "3", "--only", "[0, 2]", "--config", str(TINY),
         *demo_overrides(demo, run), "--tasks.tasks", "[au]", "--iat.strength", "1.0",
         "--data.clips.train", "[]", "--data.clips.val", "[]", "--data.clips.test", "[]"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "folds.json").read_text())
    assert summary["finished"] == [0, 2] and "test/au_f1_image" in summary["mean"]
    assert "95% interval" in done.stdout and "random subject folds" in done.stdout  # synthetic subjects: no published partition
    splits = json.loads((run / "fold_subjects.json").read_text())["splits"]
    assert sorted(s for split in splits for s in split["test"]) == [f"s{i:03d}" for i in range(48)]  # the train split's subjects
    fold0 = json.loads((run / "fold0" / "config.json").read_text())["data"]
    assert not set(fold0["test_subjects"]) & (set(fold0["train_subjects"]) | set(fold0["val_subjects"]))
    assert summary["folds"]["0"]["test/identity_probe_subjects_image"] == len(splits[0]["test"])


def test_resume_continues_from_last_checkpoint(demo: dict[str, str], tmp_path: Path) -> None:
    common = ("--tasks.tasks", "[au]", "--data.clips.train", "[]", "--data.clips.val", "[]", "--data.clips.test", "[]",
              "--eval.test", "false")
    first = run_finetuning(tiny_config(demo, tmp_path / "run", *common))
    steps = torch.load(Path(first.run_dir) / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["global_step"]
    run_finetuning(tiny_config(demo, tmp_path / "run", *common, "--trainer.max_epochs", "2"))  # resume: auto
    last = torch.load(Path(first.run_dir) / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["global_step"] == 2 * steps and last["epoch"] == 1


def test_auto_monitor_uses_what_the_images_learn() -> None:
    config = FinetuneConfig()
    config.tasks.tasks = ["au", "expression"]
    config.data.images.train, config.data.images.val = ["train.json"], ["val.json"]
    spec = TaskSpec(["image"], ["au", "expression"], modality_tasks={"image": ["expression"]})
    assert monitor_metric(config) == "val/au_f1_image"
    assert check_monitor(config, spec) == "val/war_image"
    config.eval.monitor = "val/au_f1_image"
    with pytest.raises(ConfigError, match="eval.monitor='val/au_f1_image'"):
        check_monitor(config, spec)
