"""Heads exist only where the data carry the labels; the monitored metric follows them."""

import pytest

from face_core.model.task_model import TaskSpec
from finetune.config import FinetuneConfig
from finetune.training import check_monitor, monitor_metric
from plumbing.recipes import ConfigError


def test_heads_follow_the_labels_of_each_modality() -> None:
    spec = TaskSpec(["image", "clip"], ["au", "expression"], au_ids=["1", "2"], class_names=["a", "b", "c"],
                    modality_tasks={"image": ["expression"], "clip": ["au", "expression"]})
    assert spec.head_sizes() == {"expression_image": 3, "au_clip": 2, "expression_clip": 3}
    assert TaskSpec(["image"], ["au"], au_ids=["1"]).head_sizes() == {"au_image": 1}


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
