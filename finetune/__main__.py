"""``python -m finetune``: see :mod:`finetune.cli`."""

from finetune.cli import evaluate, fit, folds, release, score, sweep
from plumbing.cli import run_cli

if __name__ == "__main__":
    run_cli(
        [fit, evaluate, folds, sweep, release, score],
        prog="python -m finetune",
        description="Fine-tune a pretrained face encoder: AU detection, static/dynamic expression, IAT, MoAE.",
    )
