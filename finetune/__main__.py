"""``python -m finetune``: see :mod:`finetune.cli`."""

from data_shards.cli_support import run_cli
from finetune.cli import evaluate, fit, folds
from finetune.release_commands import release, score
from finetune.sweep import sweep

if __name__ == "__main__":
    run_cli(
        [fit, evaluate, folds, sweep, release, score],
        prog="python -m finetune",
        description="Fine-tune a pretrained face encoder: AU detection, static/dynamic expression, IAT, MoAE.",
    )
