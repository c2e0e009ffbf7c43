"""The sizes of the synthetic shard sets that the ``synthetic_shards`` fixture (tests/conftest.py) builds, and its type.

Every set is ``data_shards.synth.make_demo_shards`` output: 60/10/30 splits of the images and of the
clips over 48/12/16 subjects (train subjects identity-confounded, val and test clean).
"""

from __future__ import annotations

from collections.abc import Callable

SHARD_SIZES: dict[str, dict[str, int]] = {
    # 32 px, 4-frame clips: 140/23/70 images, 28/5/14 clips (the pretraining tests count on 140 and 28).
    # Pretraining, fine-tuning (beside a 64 px encoder: the `demo` fixture), releases, evaluation, the engine.
    "tiny": {"images": 233, "clips": 47, "img_size": 32, "frames": 4, "seed": 0},
    # 64 px, 8-frame clips: 180/30/90 images, 24/4/12 clips. The data_shards loaders and the SLURM jobs.
    "demo": {"images": 300, "clips": 40, "img_size": 64, "frames": 8, "seed": 0},
}

ShardSets = Callable[[str], dict[str, str]]
"""``synthetic_shards(size)``: the manifest path of each set of size ``size``, keyed ``images-train`` ... ``clips-test``."""
