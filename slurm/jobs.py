"""The callables that submitit runs on the nodes: one per stage.

Training jobs are :class:`submitit.helpers.Checkpointable`: on USR2 (time limit or preemption)
the trainer saves ``last.ckpt`` at a step boundary (:class:`slurm.requeue.StopOnSignal`), then
rank 0 hands over to submitit, which calls :meth:`StageJob.checkpoint` and requeues the job. The
requeued job calls the same stage again; ``trainer.resume=auto`` resumes from ``last.ckpt`` (the
step count and the MLflow run continue, both restored by the training code from the run folder).
:meth:`StageJob.checkpoint` bounds the number of requeues. Every task of a job runs the same
callable; Lightning reads its rank from SLURM's variables.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission

from data_shards.build import merge_parts
from data_shards.cli import build
from face_core.engine.checkpointing import LAST_CHECKPOINT, checkpoint_dir
from finetune.training import run_finetuning
from pretrain.training import run_pretraining
from slurm.requeue import StopOnSignal, StopRequested


def announce(what: str) -> None:
    """One stderr line saying which task of which job runs ``what`` where (and after how many requeues)."""
    import submitit

    env = submitit.JobEnvironment()
    node = os.environ.get("SLURMD_NODENAME", env.hostname)
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    print(
        f"slurm job {env.job_id}: task {env.global_rank}/{env.num_tasks} on node {node} "
        f"({env.node} of {env.num_nodes}), restart {restarts}: {what}",
        file=sys.stderr, flush=True,
    )


class RequeueLimitReached(RuntimeError):
    """A job was stopped by SLURM more often than ``max_requeues`` allows."""


class StageJob(Checkpointable):
    """A resumable stage: ``run()`` does the work, requeues are counted and bounded.

    Args:
        max_requeues: times the job may save and requeue itself before it stops with an error.
    """

    def __init__(self, max_requeues: int) -> None:
        self.max_requeues = max_requeues
        self.requeues = 0

    def describe(self) -> str:
        """What the job runs and where its results go (used in messages)."""
        return type(self).__name__

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit (rank 0) on USR2 after the state is saved: the same job, one requeue more."""
        if self.requeues >= self.max_requeues:
            raise RequeueLimitReached(
                f"{self.describe()}: stopped by SLURM {self.requeues + 1} times, more than max_requeues="
                f"{self.max_requeues}; its last checkpoint is kept: submit it again to continue"
            )
        self.requeues += 1
        return DelayedSubmission(self, *args, **kwargs)


class TrainingJob(StageJob):
    """Base of the Lightning stages: runs ``train(callbacks)`` with a save-and-stop-on-signal callback.

    Args:
        config: the stage's config, its trainer layout already set for the allocation.
        max_requeues: times the job may save and requeue itself before it stops with an error.
    """

    stage = "training"  # what :meth:`describe` calls the work

    def __init__(self, config: Any, max_requeues: int) -> None:
        super().__init__(max_requeues)
        self.config = config
        self.output_dir = config.trainer.output_dir

    def describe(self) -> str:
        """What the job runs and where its results go."""
        return f"{self.stage} into {self.output_dir}"

    def checkpoint_path(self) -> Path:
        """The run's ``last.ckpt``, which ``trainer.resume=auto`` reads."""
        return checkpoint_dir(self.output_dir) / LAST_CHECKPOINT

    def train(self, callbacks: list[Any]) -> str:
        """Run the stage with ``callbacks`` added to the trainer; return the run folder."""
        raise NotImplementedError

    def __call__(self) -> str:
        """Train; on a SLURM stop signal, save, then let submitit requeue (rank 0) or exit (other ranks)."""
        import submitit

        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's handler: checkpoint() + scontrol requeue
        announce(self.describe())
        try:
            return self.train([StopOnSignal(self.checkpoint_path())])
        except StopRequested as stop:
            rank = submitit.JobEnvironment().global_rank
            if rank == 0 and "USR2" in stop.signals and callable(requeue):
                requeue(signal.SIGUSR2, None)  # dumps the next submission, requeues, exits
            # Other ranks (and a SIGTERM without USR2) end here without a result: SLURM requeues or
            # ends the whole job, and the resumed job writes the results.
            raise SystemExit(0 if rank else 1) from None


class PretrainJob(TrainingJob):
    """MAE pretraining of one :class:`pretrain.cli.PretrainConfig` (trainer layout already set for the allocation)."""

    stage = "pretraining"

    def train(self, callbacks: list[Any]) -> str:
        """Run :func:`pretrain.training.run_pretraining`."""
        return run_pretraining(self.config, extra_callbacks=callbacks)


class FinetuneJob(TrainingJob):
    """Fine-tuning of one finetune config (one fold/seed of an array, or the whole run)."""

    stage = "fine-tuning"

    def train(self, callbacks: list[Any]) -> dict[str, Any]:
        """Run :func:`finetune.training.run_finetuning`; return its result (run folder and metrics)."""
        return run_finetuning(self.config, extra_callbacks=callbacks).as_dict()


class ShardPartJob(StageJob):
    """One part of a job array building a shard set (``python -m data_shards build`` arguments).

    Finished shards are kept on a re-run, so a requeued part continues where it stopped.
    """

    def __init__(self, build_args: dict[str, Any], max_requeues: int) -> None:
        super().__init__(max_requeues)
        self.build_args = build_args

    def describe(self) -> str:
        """What the job runs and where its results go."""
        shards = self.build_args["shards"]
        return f"shard part {shards.part} of {shards.num_parts} into {self.build_args['out']}"

    def __call__(self) -> str:
        """Build this part; return the output folder."""
        announce(self.describe())
        build(**self.build_args)
        return self.build_args["out"]


class ShardMergeJob:
    """After the part array: merge the parts' summaries into ``manifest.json``."""

    def __init__(self, out: str) -> None:
        self.out = out

    def __call__(self) -> str:
        """Merge; return the manifest path."""
        return str(merge_parts(self.out).path)
