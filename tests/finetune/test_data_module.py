"""The fine-tuning data module counts what its validation and test loaders skip, as its training loaders do."""

from __future__ import annotations

from pathlib import Path

import pytest
from damage import copy_set, corrupt_member
from finetune_demo import tiny_config

from data_shards.manifest import read_manifest


def damaged_copy(manifest: str, target: Path) -> str:
    """A copy of the shard set with one undecodable JPEG; returns its manifest."""
    folder = copy_set(manifest, target)
    corrupt_member(sorted(folder.glob("shard-*.tar"))[0], ".jpg", b"\xff\xd8 this is not a jpeg", index=2)
    return str(folder / "manifest.json")


def test_fit_summary_and_test_results_count_evaluation_skips(demo: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from finetune.training import evaluate_run, run_finetuning

    val, test = damaged_copy(demo["images-val"], tmp_path / "val"), damaged_copy(demo["images-test"], tmp_path / "test")
    config = tiny_config(
        demo, tmp_path / "run", "--tasks.tasks", "[au]", "--data.clips.train", "[]", "--data.clips.val", "[]", "--data.clips.test", "[]",
        "--data.images.val", f"[{val}]", "--data.images.test", f"[{test}]", "--eval.identity_probe", "false", "--trainer.max_epochs", "2",
    )  # fmt: skip
    result = run_finetuning(config)
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("fit ended at step")]
    assert summary and "val_image_corrupt_sample=2" in summary[0], summary  # one bad image, read by each of 2 validations
    expected = read_manifest(test).num_samples
    assert result.test["test/samples_skipped_corrupt_sample_image"] == 1 and result.test["test/samples_skipped_truncated_shard_image"] == 0
    assert result.test["test/samples_image"] == expected - 1
    again = evaluate_run(result.run_dir)  # `python -m finetune evaluate`
    assert again["test/samples_skipped_corrupt_sample_image"] == 1 and again["test/samples_image"] == expected - 1
