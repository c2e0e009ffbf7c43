"""Release a trained model: the encoder alone (or the whole MAE) as safetensors + JSON config.

Accepts any checkpoint :func:`pretrain.loading.load_model` reads (our Lightning ``.ckpt``,
public MAE/FMAE/VideoMAE files, release folders) and DeepSpeed's sharded checkpoint
directories, which are first consolidated to one fp32 file with Lightning's
``convert_zero_checkpoint_to_fp32_state_dict``. The folder is written by
:func:`pretrain.release_format.write_release` (temp name, then rename).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from data_shards.config_checks import ConfigError


def is_deepspeed_checkpoint(path: Path) -> bool:
    """True for a DeepSpeed checkpoint directory (``latest`` tag file or ``*/mp_rank_*_model_states.pt``)."""
    return path.is_dir() and ((path / "latest").is_file() or any(path.glob("*/mp_rank_*_model_states.pt")))


def load_trained_model(checkpoint: str | Path) -> nn.Module:
    """The model stored in ``checkpoint`` (file, release folder or DeepSpeed directory), in eval mode."""
    from pretrain.loading import load_model

    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path}: no such file or folder")
    if not is_deepspeed_checkpoint(path):
        return load_model(path)
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    with tempfile.TemporaryDirectory(prefix="zero-to-fp32-") as scratch:
        consolidated = Path(scratch) / "consolidated.ckpt"
        convert_zero_checkpoint_to_fp32_state_dict(str(path), str(consolidated))
        return load_model(consolidated)


def release_checkpoint(checkpoint: str | Path, out: str | Path, with_decoder: bool = False) -> Path:
    """Write the encoder of ``checkpoint`` (with ``with_decoder``, the whole MAE) to the new folder ``out``.

    Returns the release folder (``model.safetensors`` + ``config.json``).
    """
    from pretrain.mae import MaskedAutoencoder
    from pretrain.release_format import write_release

    model = load_trained_model(checkpoint)
    if isinstance(model, MaskedAutoencoder):
        return write_release(model, model.config, out) if with_decoder else write_release(model.encoder, model.config.encoder, out)
    if with_decoder:
        raise ConfigError(f"--with_decoder: checkpoint {checkpoint} holds an encoder without a decoder; release it without --with_decoder")
    return write_release(model, model.config, out)
