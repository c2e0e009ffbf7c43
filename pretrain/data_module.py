"""The pretraining data module: image and clip shard loaders interleaved one modality per step.

An epoch is ``image_passes`` passes over the image set and ``clip_passes`` over the clip set
(:func:`data_shards.interleave.sized_train_loader`), each clip read giving ``clip_repeats``
samples; the steps are scheduled and resumed by :class:`data_shards.interleave.InterleavedBatches`.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from data_shards.decode import ViewOptions
from data_shards.interleave import MODALITY_ORDER, InterleavedBatches, sized_train_loader
from data_shards.loaders import LoaderConfig, ShardLoader
from face_core.model.config import ViTConfig
from pretrain.config import PretrainDataConfig


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
        crop_scale=tuple(data.crop_scale if image else data.clip_crop_scale),  # type: ignore[arg-type]
        hflip=data.hflip,
        num_workers=data.num_workers,
        shuffle_buffer=data.shuffle_buffer,
        samples_per_epoch=data.samples_per_epoch if image else 0,
        seed=seed,
    )


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
        for modality in MODALITY_ORDER:
            if not getattr(data, f"{modality}_shards"):
                continue
            image = modality == "image"
            options = ViewOptions(interpolation=data.interpolation if image else "bilinear", repeats=1 if image else data.clip_repeats)
            passes = data.image_passes if image else data.clip_passes
            config = loader_config(data, self.encoder, modality, self.seed)
            loaders[modality] = sized_train_loader(config, passes, rank=rank, world_size=self.world_size, view_options=options)
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
            self._batches = InterleavedBatches(self.loaders, self.steps_per_epoch(), self.seed, self.position, rank_zero_info)
        return self._batches

    def position(self) -> tuple[int, int]:
        """The current epoch and the batches of it trained so far (Lightning's progress counters)."""
        return self.trainer.current_epoch, self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def skipped_samples(self) -> dict[str, int]:
        """Corrupt samples and truncated shards skipped so far on this rank, by modality and kind."""
        return self._batches.skipped() if self._batches is not None else {}
