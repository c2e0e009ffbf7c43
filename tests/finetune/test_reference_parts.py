"""Parts of fine-tuning that follow the references (issue 11): IAT loss, position table, expert biases,
joint image/clip vocabularies, epoch make-up."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from finetune_demo import tiny_config

from face_core.engine.optim import build_param_groups
from face_core.model.adapters import attach_moae
from face_core.model.config import ViTConfig
from face_core.model.pos_embed import sincos_3d
from face_core.model.task_model import TaskSpec, build_task_model
from face_core.model.vit import VisionTransformer
from finetune.config import FinetuneConfig
from finetune.data_module import FinetuneDataModule, shared_classes
from finetune.lightning_module import FinetuneModule
from finetune.losses import one_hot_targets, soft_bce, soft_cross_entropy
from plumbing.recipes import ConfigError

ENCODER = ViTConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=2)
SPEC = TaskSpec(["image"], ["au"], au_ids=["1", "2"])


def test_identity_loss_is_fmae_iats_bce_and_cross_entropy_sends_back_far_more() -> None:
    subjects, batch = 41, 8
    logits = torch.zeros(batch, subjects, requires_grad=True)  # a fresh identity head: logits near 0
    targets, present = one_hot_targets(torch.arange(batch), subjects)
    loss = soft_bce(logits, targets, present)
    assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets).item())  # mean over batch x subjects
    (bce_grad,) = torch.autograd.grad(loss, logits)
    (ce_grad,) = torch.autograd.grad(soft_cross_entropy(logits, targets, present), logits)
    ratio = ce_grad.norm() / bce_grad.norm()
    assert ratio == pytest.approx(2 * subjects**0.5, rel=0.05)  # ~12.8x at BP4D's 41 subjects
    rows = soft_bce(logits, targets, torch.tensor([1.0] * 4 + [0.0] * 4))  # missing identities do not count
    assert rows.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits[:4], targets[:4]).item())


@pytest.mark.parametrize("learn", [True, False])
def test_position_table_is_learned_for_mae_lineage_and_fixed_for_videomae(learn: bool) -> None:
    config = FinetuneConfig()
    config.model = dataclasses.replace(config.model, learn_pos_embed=learn)
    model = build_task_model(ENCODER, config.model, SPEC, identity_head=config.iat.enabled, encoder=VisionTransformer(ENCODER))
    table = model.encoder.pos_embed
    assert isinstance(table, torch.nn.Parameter) == learn
    assert torch.equal(table.detach(), sincos_3d(32, model.encoder.grid)[None])  # starts from the sin-cos table
    names = {name for name, _ in model.named_parameters()}
    assert ("encoder.pos_embed" in names) == learn
    other = FinetuneConfig()
    other.model = dataclasses.replace(other.model, learn_pos_embed=not learn)
    rebuilt = build_task_model(ENCODER, other.model, SPEC, identity_head=other.iat.enabled, encoder=VisionTransformer(ENCODER))
    rebuilt.load_state_dict(model.state_dict(), strict=True)  # same key either way: checkpoints load across
    groups = build_param_groups(model, 0.05)
    assert all(g["weight_decay"] == 0 for g in groups if "encoder.pos_embed" in g["param_names"])


def test_expert_biases_get_no_weight_decay() -> None:
    encoder = VisionTransformer(ENCODER)
    attach_moae(encoder, 1, num_experts=4, top_k=2)
    decay = {name for g in build_param_groups(encoder, 0.05) if g["weight_decay"] > 0 for name in g["param_names"]}
    assert "blocks.1.parallel_branch.down_weight" in decay
    assert not decay & {"blocks.1.parallel_branch.down_bias", "blocks.1.parallel_branch.up_bias"}


def test_image_classes_map_onto_the_clip_vocabulary_by_name() -> None:
    dfew = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    affectnet = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]
    names, maps = shared_classes({"image": affectnet, "clip": dfew})
    assert names == dfew and "clip" not in maps
    assert maps["image"] == [2, 0, 1, 4, 6, 5, 3, -1]  # contempt has no DFEW class: left out
    assert shared_classes({"image": affectnet}) == (affectnet, {})
    with pytest.raises(ConfigError, match="data.images.train"):
        shared_classes({"image": ["a", "b"], "clip": dfew})


def test_mapped_labels_reach_the_loss_and_metrics() -> None:
    spec = TaskSpec(["image"], ["expression"], class_names=["x", "y", "z"], class_maps={"image": [1, 0, -1]})
    config = FinetuneConfig()
    module = FinetuneModule(dataclasses.asdict(ENCODER), dataclasses.asdict(config), dataclasses.asdict(spec), 32)
    batch = {"pixels": torch.zeros(4, 3, 32, 32, dtype=torch.uint8), "expression": torch.tensor([0, 1, 2, -1])}
    assert module._expression(batch).tolist() == [1, 0, -1, -1]


def test_image_passes_size_the_image_share_of_an_epoch(demo: dict[str, str], tmp_path) -> None:
    full = FinetuneDataModule(tiny_config(demo, tmp_path / "a", "--data.clips.passes", "1.0"), ENCODER).steps_per_epoch()
    half = FinetuneDataModule(tiny_config(demo, tmp_path / "b", "--data.images.passes", "0.5", "--data.clips.passes", "2.0"), ENCODER)
    assert half.steps_per_epoch() == {"image": round(full["image"] / 2), "clip": 2 * full["clip"]}
