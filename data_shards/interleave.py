"""Image and clip loaders interleaved one modality per step, resumable mid-epoch (both training stages).

An epoch is a fixed number of steps per modality; their order is a permutation drawn from
``(seed, epoch)``, so every rank runs the same modality at the same step (token counts differ
between modalities; DDP needs every rank in the same graph). Each batch carries ``modality``.

Resume: :class:`InterleavedBatches` is stateful the way Lightning expects: ``position()`` gives
the epoch and the batches trained in it (the trainer's progress counters, so a batch prefetched
but not trained is not counted). A resumed run continues that epoch's schedule at that batch,
and each shard loader continues its epoch after the batches already consumed (a fresh draw of
the rest: nothing is re-read from the start).

How much of each modality an epoch holds is said by :func:`sized_train_loader`: ``passes`` over
a modality's training set (S4D pretraining: a quarter of the clips per pass over the images).
A training batch whose samples carry several views (repeated sampling: each clip read once,
cropped ``repeats`` times, as S4D's ``Replicate`` and VideoMAE's ``num_sample``) arrives here as
``(B, R, ...)`` and leaves as ``B * R`` samples, labels repeated.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from data_shards.loaders import LoaderConfig, ShardLoader, rank_and_world, train_loader

log = logging.getLogger(__name__)
MODALITY_ORDER = ("image", "clip")


def epoch_schedule(image_steps: int, clip_steps: int, seed: int, epoch: int) -> list[str]:
    """The modality of each step of ``epoch``: a seeded shuffle of image and clip steps."""
    order = np.array(["image"] * image_steps + ["clip"] * clip_steps)
    np.random.default_rng([seed, epoch]).shuffle(order)
    return order.tolist()


def sized_train_loader(config: LoaderConfig, passes: float, **overrides: Any) -> ShardLoader:
    """A training loader over ``passes`` of its set per epoch (at least one step).

    A pass is ``config.samples_per_epoch`` samples, or the set's (filtered) manifest count.
    """
    config = dataclasses.replace(config, **overrides)
    loader = train_loader(config)
    if passes != 1.0:
        steps = max(1, round(passes * len(loader)))
        loader = train_loader(config, samples_per_epoch=steps * config.batch_size * rank_and_world(config)[1])
    return loader


def flatten_views(batch: dict[str, Any]) -> dict[str, Any]:
    """A training batch with a views axis (``(B, R, C, ...)`` pixels) as ``B * R`` samples, labels repeated."""
    pixels = batch["pixels"]
    if pixels.ndim == (4 if batch["modality"] == "image" else 5):
        return batch
    views = pixels.shape[1]
    flat = {"pixels": pixels.flatten(0, 1), "modality": batch["modality"], "key": [k for k in batch["key"] for _ in range(views)]}
    for name, value in batch.items():
        if name not in flat and isinstance(value, torch.Tensor):
            flat[name] = value.repeat_interleave(views, dim=0)
    return flat


class InterleavedBatches:
    """Iterable of one epoch of interleaved batches for Lightning (``len`` = steps per epoch).

    ``position`` gives (epoch, batches trained in it): the state saved in checkpoints, and where
    an iteration starts — mid-way through the epoch right after a resume, at 0 otherwise.
    """

    def __init__(
        self,
        loaders: dict[str, ShardLoader],
        steps: dict[str, int],
        seed: int,
        position: Callable[[], tuple[int, int]],
        announce: Callable[[str], None] = log.info,
    ) -> None:
        self.loaders = loaders
        self.steps = steps
        self.seed = seed
        self.position = position
        self.announce = announce

    def __len__(self) -> int:
        return sum(self.steps.values())

    def skipped(self) -> dict[str, int]:
        """Corrupt samples and truncated shards skipped so far on this rank, keyed ``<modality>_<kind>``."""
        return {f"{m}_{kind}": count for m, loader in self.loaders.items() for kind, count in loader.skipped.items()}

    def state_dict(self) -> dict[str, int]:
        """The epoch and the batches of it trained so far."""
        epoch, batches_done = self.position()
        return {"epoch": epoch, "batches_done": batches_done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Nothing to load: :meth:`__iter__` continues from ``position``, Lightning's progress
        counters, which every resume restores (Lightning calls this method only for some mid-epoch
        checkpoints). Defined so that Lightning treats the loader as resumable."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, batches_done = self.position()
        order = epoch_schedule(self.steps["image"], self.steps["clip"], self.seed, epoch)
        start = min(batches_done, len(order))  # > 0 only on the first iteration after a mid-epoch resume
        if start:
            done = order[:start]
            self.announce(
                f"data: epoch {epoch} continues after batch {start} of {len(order)} "
                f"({done.count('image')} image and {done.count('clip')} clip batches already trained)"
            )
        iterators = {}
        for modality, loader in self.loaders.items():
            loader.load_state_dict({"epoch": epoch, "batches_done": order[:start].count(modality)})
            iterators[modality] = iter(loader)
        for modality in order[start:]:
            batch = next(iterators[modality])
            batch["modality"] = modality
            yield flatten_views(batch)
