"""``python -m pretrain``: see :mod:`pretrain.cli`."""

from plumbing.cli import run_cli
from pretrain.cli import export, fit, release

if __name__ == "__main__":
    run_cli([fit, release, export], prog="python -m pretrain", description="Masked-autoencoder pretraining of one ViT on face images and clips.")
