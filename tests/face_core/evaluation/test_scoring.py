"""Scoring a joint release whose image classes were mapped onto the clip classes by name (S4D: AffectNet beside DFEW)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from finetune_demo import tiny_config

from data_shards.build import BuildConfig, build_shards
from data_shards.sources import label_file_source
from data_shards.synth import AU_IDS, CLASS_NAMES

REORDERED = list(reversed(CLASS_NAMES))  # the images' vocabulary: the clips' classes in another order


def reordered_images(demo: dict[str, str], split: str, out: Path) -> str:
    """The demo's ``split`` images sharded again with the classes in :data:`REORDERED` order (labels by name)."""
    raw = Path(demo["images-train"]).parents[2] / "raw"
    lines = [json.loads(line) for line in (raw / f"images-{split}.jsonl").read_text().splitlines()]
    named = out / f"images-{split}.jsonl"
    named.write_text("".join(json.dumps({**row, "expression": CLASS_NAMES[row["expression"]]}) + "\n" for row in lines))
    source = label_file_source(str(raw / "images"), str(named), "synth", AU_IDS, REORDERED)
    return build_shards(source, str(out / f"images-{split}"), "image", BuildConfig(img_size=32, progress=False)).manifest


def test_image_shards_score_through_the_releases_class_map(demo: dict[str, str], tmp_path: Path) -> None:
    from face_core.evaluation.scoring import score_release
    from face_core.release.task import read_task_release
    from finetune.release import release_finetuned
    from finetune.training import run_finetuning

    images = {split: reordered_images(demo, split, tmp_path) for split in ("train", "val", "test")}
    config = tiny_config(
        demo, tmp_path / "run", "--data.images.train", f"[{images['train']}]", "--data.images.val", f"[{images['val']}]",
        "--data.images.test", f"[{images['test']}]", "--eval.test", "false", "--eval.identity_probe", "false",
    )  # fmt: skip
    folder = release_finetuned(run_finetuning(config).best_checkpoint, tmp_path / "release")
    spec = read_task_release(folder).spec
    assert spec.class_names == CLASS_NAMES and spec.class_maps == {"image": [CLASS_NAMES.index(n) for n in REORDERED]}

    mapped = score_release(str(folder), image_test=[images["test"]])  # the images' own order: mapped by name
    plain = score_release(str(folder), image_test=[demo["images-test"]])  # the same images in the model's order
    assert mapped["test/samples_image"] == plain["test/samples_image"] > 0 and mapped["test/samples_unscored_class_image"] == 0
    for metric in ("test/war_image", "test/uar_image", "test/au_f1_image"):
        assert mapped[metric] == pytest.approx(plain[metric], abs=1e-9), metric
