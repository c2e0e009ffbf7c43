"""Masking plans: the reference's argsort recipe per sample, and tube masks constant over time."""

import torch

from face_core.model.masking import keep_all, kept_count, random_masking, tube_masking


def test_random_masking_follows_the_argsort_recipe() -> None:
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4]])
    plan = random_masking(noise, ratio=0.75)
    assert plan.ids_keep.tolist() == [[1, 5]]  # the two lowest-noise tokens, in noise order
    assert plan.mask.tolist() == [[1, 0, 1, 1, 1, 0, 1, 1]]
    shuffled = torch.argsort(noise, dim=1)
    assert torch.equal(torch.gather(shuffled, 1, plan.ids_restore), torch.arange(8).unsqueeze(0))


def test_random_masking_is_per_sample_and_reproducible() -> None:
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(16, 49, generator=generator)
    plan = random_masking(noise, ratio=0.75)
    assert plan.ids_keep.shape == (16, kept_count(49, 0.75)) == (16, 12)
    assert torch.all(plan.mask.sum(1) == 49 - 12)
    assert len({tuple(row.tolist()) for row in plan.mask}) == 16
    for row in range(16):
        assert torch.all(plan.mask[row, plan.ids_keep[row]] == 0)
    again = random_masking(noise.clone(), ratio=0.75)
    assert torch.equal(again.ids_keep, plan.ids_keep) and torch.equal(again.mask, plan.mask)


def test_tube_masking_repeats_one_spatial_mask_over_time() -> None:
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(1))
    plan = tube_masking(noise, ratio=0.75, frames=4)
    mask = plan.mask.reshape(3, 4, 16)
    assert torch.equal(mask, mask[:, :1].expand(-1, 4, -1))
    spatial = random_masking(noise, ratio=0.75)
    assert torch.equal(mask[:, 0], spatial.mask)
    assert plan.ids_keep.shape == (3, 4 * 4)
    for row in range(3):
        assert torch.all(plan.mask[row, plan.ids_keep[row]] == 0)
        assert sorted((plan.ids_keep[row] % 16).unique().tolist()) == sorted(spatial.ids_keep[row].tolist())
    # ids_restore puts [kept..., removed...] back into token order
    order = torch.argsort(plan.ids_restore, dim=1)
    assert torch.equal(order[:, :16], plan.ids_keep)
    assert torch.all(torch.gather(plan.mask, 1, order[:, 16:]) == 1)
    assert torch.equal(torch.gather(order, 1, plan.ids_restore), torch.arange(64).expand(3, -1))


def test_keep_all_sees_every_token_but_keeps_the_mask() -> None:
    mask = random_masking(torch.rand(2, 10), 0.5).mask
    plan = keep_all(mask)
    assert plan.ids_keep.shape == (2, 10) and torch.equal(plan.mask, mask)

