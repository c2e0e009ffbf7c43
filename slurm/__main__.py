"""``python -m slurm``: see :mod:`slurm.cli`."""

import sys

from plumbing.cli import run_cli
from slurm.cli import cancel, logs, normalize_argv, status, submit

if __name__ == "__main__":
    run_cli(
        [submit, status, logs, cancel],
        prog="python -m slurm",
        description="Submit pretraining, fine-tuning and shard building to SLURM (submitit); follow and cancel the jobs.",
        args=normalize_argv(sys.argv[1:]),
    )
