"""Image and clip shard loaders interleaved one modality per step, resumable mid-epoch.

An epoch is ``n_image`` image steps (the image loader's epoch) and
``round(clip_step_ratio * n_image)`` clip steps (the clip loader is sized to match; with clips
only, its own epoch). Their order is a permutation drawn from ``(seed, epoch)``, so every rank
runs the same modality at the same step (token counts differ between modalities; DDP needs
every rank in the same graph). Each batch carries ``modality``.

Resume: the interleaved loader is stateful the way Lightning expects (its state is saved in
each checkpoint under the fit loop): the epoch and the number of batches trained in it, taken
from Lightning's progress counters (so a batch the loop had prefetched but not trained is not
counted). A resumed run continues that epoch's schedule at that batch, and each shard loader
continues its epoch after the batches already consumed (a fresh draw of the rest: nothing is
re-read from the start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from data_shards.streaming import LoaderConfig, ShardLoader, train_loader
from pretrain.config import PretrainDataConfig, ViTConfig

MODALITY_ORDER = ("image", "clip")


def epoch_schedule(image_steps: int, clip_steps: int, seed: int, epoch: int) -> list[str]:
    """The modality of each step of ``epoch``: a seeded shuffle of image and clip steps."""
    order = np.array(["image"] * image_steps + ["clip"] * clip_steps)
    np.random.default_rng([seed, epoch]).shuffle(order)
    return order.tolist()


def loader_config(data: PretrainDataConfig, encoder: ViTConfig, modality: str, seed: int) -> LoaderConfig:
    """The shard loader settings of one modality from the pretraining data config."""
    image = modality == "image"
    return LoaderConfig(
        shards=list(data.image_shards if image else data.clip_shards),
        weights=list(data.image_weights if image else data.clip_weights),
        modality=modality,  # type: ignore[arg-type]
        batch_size=data.image_batch_size if image else data.clip_batch_size,
        img_size=encoder.img_size,
        num_frames=encoder.num_frames,
        frame_stride=data.clip_stride,
        crop_scale=tuple(data.crop_scale),  # type: ignore[arg-type]
        hflip=data.hflip,
        num_workers=data.num_workers,
        shuffle_buffer=data.shuffle_buffer,
        samples_per_epoch=data.samples_per_epoch if image else 0,
        seed=seed,
    )


class InterleavedBatches:
    """Iterable of one epoch of interleaved batches for Lightning (``len`` = steps per epoch).

    ``position`` gives (epoch, batches trained in it): the state saved in checkpoints, and where
    an iteration starts — mid-way through the epoch right after a resume, at 0 otherwise.
    """

    def __init__(self, loaders: dict[str, ShardLoader], steps: dict[str, int], seed: int, position: Callable[[], tuple[int, int]]) -> None:
        self.loaders = loaders
        self.steps = steps
        self.seed = seed
        self.position = position

    def __len__(self) -> int:
        return sum(self.steps.values())

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
            rank_zero_info(
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
            yield batch


class PretrainDataModule(pl.LightningDataModule):
    """Interleaved image/clip training batches from ``data_shards.streaming`` loaders.

    ``world_size`` (processes over all nodes) sizes the epoch before the processes exist;
    the loaders of each rank are built when Lightning asks for the train loader.
    """

    def __init__(self, data: PretrainDataConfig, encoder: ViTConfig, seed: int, world_size: int) -> None:
        super().__init__()
        self.data = data
        self.encoder = encoder
        self.seed = seed
        self.world_size = world_size
        self.loaders: dict[str, ShardLoader] = {}
        self._steps: dict[str, int] | None = None
        self._batches: InterleavedBatches | None = None

    def _build_loaders(self, rank: int) -> dict[str, ShardLoader]:
        loaders: dict[str, ShardLoader] = {}
        placement = {"rank": rank, "world_size": self.world_size}
        if self.data.image_shards:
            loaders["image"] = train_loader(loader_config(self.data, self.encoder, "image", self.seed), **placement)
        if self.data.clip_shards:
            clip = loader_config(self.data, self.encoder, "clip", self.seed)
            if "image" in loaders:  # size the clip epoch to the ratio of image steps
                if self.data.clip_step_ratio == 0:
                    return loaders
                clip_steps = max(1, round(self.data.clip_step_ratio * len(loaders["image"])))
                clip.samples_per_epoch = clip_steps * clip.batch_size * self.world_size
            loaders["clip"] = train_loader(clip, **placement)
        return loaders

    def steps_per_epoch(self) -> dict[str, int]:
        """Steps of each modality in one epoch; reads the manifests (bad paths fail here)."""
        if self._steps is None:
            counted = self._build_loaders(rank=0)
            self._steps = {m: len(counted[m]) if m in counted else 0 for m in MODALITY_ORDER}
        return self._steps

    def train_dataloader(self) -> InterleavedBatches:
        """The interleaved iterable over this rank's loaders (built once; iterated once per epoch)."""
        if self._batches is None:
            self.loaders = self._build_loaders(rank=self.trainer.global_rank)
            self._batches = InterleavedBatches(self.loaders, self.steps_per_epoch(), self.seed, self.position)
        return self._batches

    def position(self) -> tuple[int, int]:
        """The current epoch and the batches of it trained so far (Lightning's progress counters)."""
        return self.trainer.current_epoch, self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def skipped_samples(self) -> dict[str, int]:
        """Corrupt samples and truncated shards skipped so far on this rank, by modality and kind."""
        return {f"{m}_{kind}": count for m, loader in self.loaders.items() for kind, count in loader.skipped.items()}
