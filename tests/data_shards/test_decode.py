"""Training and test views (data_shards.decode) as the references build them (issue 11): frame rate, multi-view
test, augmentation.

Clips are written frame by frame as JPEGs whose grey level encodes the frame number, so the
frames a view holds can be read back from its pixels.
"""

import numpy as np
import torch
from PIL import Image

from data_shards.decode import ViewConfig, ViewOptions, _rand_augment, posterize_to_bits, rand_augment_frames, sample_pixels
from data_shards.media import encode_jpeg

LEVEL = 3  # grey level per frame number


def clip_members(frames: int, height: int = 32, width: int = 32, rows: bool = False) -> dict[str, bytes]:
    """A clip sample: frame ``i`` is grey level ``3 * i`` (or, with ``rows``, each row its own level)."""
    members = {}
    for index in range(frames):
        if rows:
            picture = np.repeat(np.arange(height, dtype=np.uint8)[:, None, None] * 5, width, axis=1).repeat(3, axis=2)
        else:
            picture = np.full((height, width, 3), LEVEL * index, dtype=np.uint8)
        members[f"{index:03d}.jpg"] = encode_jpeg(picture, quality=95)
    return members


def view(train: bool, **options: object) -> ViewConfig:
    return ViewConfig("clip", 32, 16, 4, (1.0, 1.0), (3 / 4, 4 / 3), 0.0, train, ViewOptions(**options))  # type: ignore[arg-type]


def frames_of(clip: torch.Tensor) -> list[int]:
    """Frame numbers of a ``(3, T, H, W)`` view of :func:`clip_members` pixels."""
    return [round(level / LEVEL) for level in clip.float().mean(dim=(0, 2, 3)).tolist()]


def test_test_windows_keep_the_training_stride_and_span_the_clip() -> None:
    """Regression (issue 11, error 2): the test read ``num_frames * test_clips`` frames in one window,
    spread evenly over a short clip (stride 2.5 at 80 frames where training used 4)."""
    pixels = sample_pixels(clip_members(80), view(False, test_clips=2), np.random.default_rng(0))
    assert pixels.shape == (2, 3, 16, 32, 32)
    first, last = frames_of(pixels[0]), frames_of(pixels[1])
    assert first == list(range(0, 64, 4)) and last == list(range(16, 80, 4))  # stride 4, first and last strided frames
    one = sample_pixels(clip_members(80), view(False), np.random.default_rng(0))
    assert frames_of(one) == list(range(8, 72, 4))  # one window: the centre one, still at stride 4


def test_short_clips_keep_the_stride_and_repeat_their_last_frame() -> None:
    strided = [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8  # 30 frames hold 8 frames at stride 4
    test = sample_pixels(clip_members(30), view(False, test_clips=3), np.random.default_rng(0))
    assert all(frames_of(window) == strided for window in test)
    train = sample_pixels(clip_members(30), view(True), np.random.default_rng(0))
    assert frames_of(train) == strided


def test_training_frames_are_strided_from_a_random_start() -> None:
    starts = set()
    for seed in range(8):
        frames = frames_of(sample_pixels(clip_members(80), view(True), np.random.default_rng(seed)))
        assert np.diff(frames).tolist() == [4] * 15
        starts.add(frames[0])
    assert len(starts) > 1


def test_test_crops_move_along_the_long_side() -> None:
    members = clip_members(16, height=48, width=32, rows=True)  # portrait frames: crops slide down
    pixels = sample_pixels(members, view(False, test_crops=2), np.random.default_rng(0))
    assert pixels.shape == (2, 3, 16, 32, 32)
    top_rows = [round(float(crop[:, :, 0].float().mean()) / 5) for crop in pixels]
    assert top_rows == [0, 16]  # rows 0-31, then rows 16-47


def test_repeated_sampling_crops_each_read_several_times() -> None:
    members = clip_members(20, rows=True)
    config = ViewConfig("clip", 16, 4, 2, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, True, ViewOptions(repeats=3))
    pixels = sample_pixels(members, config, np.random.default_rng(1))
    assert pixels.shape == (3, 3, 4, 16, 16)
    assert not torch.equal(pixels[0], pixels[1]) or not torch.equal(pixels[1], pixels[2])


def test_rand_augment_draws_once_per_clip() -> None:
    config = view(True, rand_augment="rand-m9-mstd0.5-inc1", interpolation="bicubic")
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, 3, 32, 32), dtype=np.uint8)).repeat(6, 1, 1, 1)
    changed = 0
    for seed in range(10):
        out = rand_augment_frames(frames, config, seed)
        assert all(torch.equal(out[0], frame) for frame in out)  # one draw for every frame
        assert torch.equal(out, rand_augment_frames(frames, config, seed))  # seeded
        changed += not torch.equal(out, frames)
    assert changed >= 5  # each of the 2 operations applies with probability 0.5
    state = np.random.get_state()[1][:4].tolist()
    rand_augment_frames(frames, config, 123)
    assert np.random.get_state()[1][:4].tolist() == state  # the global generators are left as they were


def test_rand_augment_posterize_to_zero_bits_gives_black_as_in_the_references() -> None:
    """A magnitude of 10 (drawn ~2% of the time by rand-m9-mstd0.5) keeps 0 bits: black, not a 'corrupt' sample."""
    picture = Image.new("RGB", (8, 8), (200, 120, 40))
    assert np.array(posterize_to_bits(picture, 0)).max() == 0
    assert np.array(posterize_to_bits(picture, 8)).tolist() == np.array(picture).tolist()
    transform = _rand_augment("rand-m9-mstd0.5-inc1", 32, "bicubic")
    assert all(op.aug_fn is posterize_to_bits for op in transform.ops if op.name.startswith("Posterize"))
