"""Layer-wise lr decay assigns layers as MAE does; subject folds never share a subject."""

import pytest

from face_core.engine.optim import layer_decay_scale, layer_id
from finetune.folds import subject_folds


def test_layer_ids() -> None:
    assert layer_id("encoder.patch_embed.proj.weight", 12) == 0
    assert layer_id("encoder.cls_token", 12) == 0
    assert layer_id("encoder.blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("encoder.blocks.11.parallel_branch.up_weight", 12) == 12
    assert layer_id("fc_norm.weight", 12) == 13
    assert layer_id("heads.au_image.weight", 12) == 13


def test_scales() -> None:
    scale = layer_decay_scale(depth=2, decay=0.5)
    assert scale("encoder.patch_embed.proj.bias") == 0.125
    assert scale("encoder.blocks.1.mlp.fc1.weight") == 0.5
    assert scale("heads.expression_clip.bias") == 1.0
    assert layer_decay_scale(2, 1.0)("encoder.cls_token") == 1.0
    with pytest.raises(ValueError, match="decay"):
        layer_decay_scale(2, 0.0)


def test_subject_folds_are_exclusive_and_cover_everyone() -> None:
    subjects = [f"S{i:02d}" for i in range(41)] * 3  # repeated: one entry per sample
    folds = subject_folds(subjects, k=3, val_fraction=0.1, seed=7)
    assert len(folds) == 3
    tests = [set(f.test) for f in folds]
    assert set().union(*tests) == set(subjects)
    assert sum(len(t) for t in tests) == 41 and {len(t) for t in tests} <= {13, 14}
    for fold in folds:
        train, val, test = set(fold.train), set(fold.val), set(fold.test)
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(subjects)
        assert len(val) == round(len(train | val) * 0.1)
    assert subject_folds(subjects, 3, 0.1, seed=7) == folds  # deterministic


def test_subject_fold_errors() -> None:
    with pytest.raises(ValueError, match="k=1"):
        subject_folds(["a", "b"], 1)
    with pytest.raises(ValueError, match="3 distinct subjects"):
        subject_folds(["a", "b", "c"], 4)
