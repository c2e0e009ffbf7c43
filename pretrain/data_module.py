"""The pretraining data module: image and clip shard loaders interleaved one modality per step.

An epoch is ``images.passes`` passes over the image set and ``clips.passes`` over the clip set
(:func:`data_shards.interleave.sized_train_loader`), each clip read giving ``clips.repeats``
samples; the steps are scheduled and resumed by :class:`data_shards.interleave.InterleavedBatches`.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from data_shards.interleave import MODALITY_ORDER, InterleavedBatches, sized_train_loader
from data_shards.loaders import ShardLoader, loader_config
from face_core.engine.trainer import fit_position
from face_core.model.config import ViTConfig
from pretrain.config import PretrainDataConfig


class PretrainDataModule(pl.LightningDataModule):
    """Interleaved image/clip training batches from ``data_shards.loaders`` loaders.

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
        data = self.data
        loaders: dict[str, ShardLoader] = {}
        for modality in data.training():
            section = data.section(modality)
            config = loader_config(
                section, img_size=self.encoder.img_size, num_frames=self.encoder.num_frames, seed=self.seed,
                num_workers=data.num_workers, shuffle_buffer=data.shuffle_buffer,
                samples_per_epoch=data.samples_per_epoch if modality == "image" else 0,  # sizes image passes only
            )
            loaders[modality] = sized_train_loader(config, section.passes, rank=rank, world_size=self.world_size)
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
            self._batches = InterleavedBatches(self.loaders, self.steps_per_epoch(), self.seed, lambda: fit_position(self.trainer), rank_zero_info)
        return self._batches

    def skipped_samples(self) -> dict[str, int]:
        """Corrupt samples and truncated shards skipped so far on this rank, by modality and kind."""
        return self._batches.skipped() if self._batches is not None else {}
