"""Random erasing in the fine-tuning module, as the references erase (issue 11): one box per sample, the same in every frame."""

import pytest
import torch

from finetune.lightning_module import erase_randomly


@pytest.mark.parametrize("shape", [(8, 3, 16, 16), (8, 3, 4, 16, 16)])
def test_random_erasing_boxes_are_shared_by_the_frames(shape: tuple[int, ...]) -> None:
    pixels = torch.zeros(shape)
    erase_randomly(pixels, 1.0)
    erased = pixels != 0
    for sample in erased:
        assert 0.02 * 16 * 16 * 0.5 <= sample.reshape(-1, 16, 16)[0].sum() <= 16 * 16 / 3 + 16  # timm's area bounds
        if sample.ndim == 4:  # (C, T, H, W): the same box in every frame, its own noise
            assert all(torch.equal(sample[:, 0], sample[:, t]) for t in range(sample.shape[1]))
    if len(shape) == 5:
        assert not torch.equal(pixels[:, :, 0], pixels[:, :, 1])
    untouched = torch.zeros(shape)
    erase_randomly(untouched, 0.0)
    assert not untouched.any()
