"""Train a tiny MAE on fixed in-memory batches with N processes; used by ``test_ddp.py``.

``python tests/pretrain/ddp_equivalence_run.py OUTPUT_DIR DEVICES``: the global batch (8 images
or 4 clips, with fixed masking noise) is the same for every N; rank r trains on its 1/N slice.
Lightning relaunches this script for ranks > 0 (strategy ``ddp``, gloo on CPU).
"""

import sys

import lightning.pytorch as pl
import torch

from data_shards.sections import ClipSection, ImageSection
from face_core.engine.config import OptimConfig, TrainerConfig
from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from pretrain.config import PretrainConfig, PretrainDataConfig
from pretrain.training import run_pretraining

GLOBAL_IMAGES, GLOBAL_CLIPS, STEPS = 8, 4, 6


class FixedBatches(pl.LightningDataModule):
    """Alternating image and clip batches drawn once from a fixed seed; each rank takes its slice."""

    def __init__(self, model: MAEConfig, devices: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(123)
        mae = MaskedAutoencoder(model)
        enc = model.encoder
        self.batches = []
        for step in range(STEPS):
            if step % 2 == 0:
                pixels = torch.randint(0, 256, (GLOBAL_IMAGES, 3, enc.img_size, enc.img_size), generator=generator, dtype=torch.uint8)
                modality = "image"
            else:
                pixels = torch.randint(0, 256, (GLOBAL_CLIPS, 3, enc.num_frames, enc.img_size, enc.img_size), generator=generator, dtype=torch.uint8)
                modality = "clip"
            noise = torch.rand(mae.noise_shape(pixels), generator=generator)
            self.batches.append({"pixels": pixels, "noise": noise, "modality": modality})
        self.devices = devices

    def steps_per_epoch(self) -> dict[str, int]:
        return {"image": STEPS // 2, "clip": STEPS // 2}

    def skipped_samples(self) -> dict[str, int]:
        return {}

    def train_dataloader(self):
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return OneEpoch(
            [{"pixels": b["pixels"].chunk(world)[rank], "noise": b["noise"].chunk(world)[rank], "modality": b["modality"]} for b in self.batches]
        )


class OneEpoch:
    """A sized iterable of batches (a plain list would be taken as a list of loaders)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def main(output_dir: str, devices: int) -> None:
    encoder = ViTConfig(img_size=16, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=2)
    model = MAEConfig(encoder=encoder, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    config = PretrainConfig(
        model=model,
        data=PretrainDataConfig(
            images=ImageSection(train=["in-memory"], batch_size=GLOBAL_IMAGES // devices), clips=ClipSection(batch_size=GLOBAL_CLIPS // devices)
        ),
        optim=OptimConfig(base_lr=0.5, warmup_fraction=0.3, weight_decay=0.05, grad_clip=1.0),
        trainer=TrainerConfig(
            output_dir=output_dir, max_epochs=1, accelerator="cpu", devices=devices, strategy="ddp", precision="32",
            log_every_n_steps=1, image_log_every_n_steps=0, checkpoint_every_n_steps=STEPS, resume="never",
        ),
    )
    run_pretraining(config, datamodule=FixedBatches(model, devices))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
