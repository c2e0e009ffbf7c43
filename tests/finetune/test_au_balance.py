"""tasks.au_balance: each AU's positives weighed by its negatives / positives in the training shards."""

import json
from pathlib import Path

import pytest
from finetune_demo import tiny_config

from data_shards.loaders import LoaderConfig, eval_loader
from face_core.model.config import ViTConfig
from finetune.data_module import FinetuneDataModule
from finetune.training import run_finetuning

ENCODER = ViTConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=2)


def test_weights_are_negatives_over_positives_of_every_training_sample(demo: dict[str, str], tmp_path: Path) -> None:
    config = tiny_config(demo, tmp_path, "--tasks.au_balance", "true")
    module = FinetuneDataModule(config, ENCODER)
    spec = module.task_spec()
    positives, labelled = {au: 0 for au in spec.au_ids}, 0
    for modality in ("image", "clip"):  # read back from the shards themselves, not the manifests
        loader = eval_loader(LoaderConfig(shards=[demo[f"{modality}s-train"]], modality=modality, batch_size=64, num_frames=4, num_workers=0))
        for batch in loader:
            aus = batch["aus"][batch["valid"]]
            labelled += aus.shape[0]
            for index, au in enumerate(spec.au_ids):
                positives[au] += int(aus[:, index].sum())
    expected = [(labelled - positives[au]) / positives[au] for au in spec.au_ids]
    assert module.au_balance_weights(spec.au_ids) == pytest.approx(expected)


@pytest.mark.slow
def test_a_run_trains_and_records_the_weights_it_used(demo: dict[str, str], tmp_path: Path) -> None:
    config = tiny_config(demo, tmp_path, "--tasks.au_balance", "true", "--tasks.tasks", "[au]", "--trainer.max_steps", "4",
                         "--tracking.enabled", "false")
    result = run_finetuning(config)
    module = FinetuneDataModule(config, ENCODER)
    weights = module.au_balance_weights(module.task_spec().au_ids)
    saved = json.loads((Path(result.run_dir) / "config.json").read_text())
    assert saved["tasks"]["au_pos_weight"] == pytest.approx(weights)
