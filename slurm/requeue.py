"""Save at a step boundary when SLURM says the job must stop, so a requeued job resumes there.

SLURM announces the end of an allocation with signals: USR2 some seconds before the time limit
(``#SBATCH --signal=USR2@N``, set by submitit) or on preemption, usually after a SIGTERM.
Saving inside a signal handler would catch the model mid-step and, with several ranks, call a
collective on one rank only. :class:`StopOnSignal` instead only notes the signal; at the next
optimiser-step boundary every rank agrees (one all-reduce, every ``check_every_n_steps`` steps
when distributed), saves ``last.ckpt`` together and raises :class:`StopRequested`. The SLURM job
(:mod:`slurm.jobs`) catches it and lets submitit requeue. Lightning's own SLURM auto-requeue
(SIGUSR1) is switched off: one owner of requeue.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

WATCHED = {signal.SIGUSR2: "USR2", signal.SIGTERM: "TERM"}


class StopRequested(Exception):
    """Training stopped on a SLURM signal after saving ``checkpoint``; ``signals`` names those seen on this rank."""

    def __init__(self, checkpoint: str, step: int, signals: frozenset[str]) -> None:
        super().__init__(f"stopped on signal {'+'.join(sorted(signals)) or 'of another rank'} at step {step}; saved {checkpoint}")
        self.checkpoint = checkpoint
        self.step = step
        self.signals = signals


class StopOnSignal(pl.Callback):
    """Note USR2/SIGTERM; at the next step boundary all ranks save ``checkpoint_path`` and stop.

    Args:
        checkpoint_path: where to save (the run's ``last.ckpt``, which ``resume=auto`` reads).
        check_every_n_steps: steps between the all-reduce that makes ranks agree (distributed runs only).
    """

    def __init__(self, checkpoint_path: str | Path, check_every_n_steps: int = 10) -> None:
        self.checkpoint_path = str(checkpoint_path)
        self.check_every_n_steps = check_every_n_steps
        self.seen: set[str] = set()
        self._previous: dict[int, Any] = {}
        self._checked_step = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Turn off Lightning's SLURM auto-requeue before the trainer registers its signal handlers."""
        # The trainer's signal connector reads the accelerator connector's environment (a
        # single-device strategy holds none of its own); Lightning offers no public switch later.
        connector = getattr(trainer, "_accelerator_connector", None)
        for environment in (getattr(connector, "cluster_environment", None), getattr(trainer.strategy, "cluster_environment", None)):
            if isinstance(environment, SLURMEnvironment):
                environment.auto_requeue = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Take over USR2 and SIGTERM for the duration of training (Lightning's SIGTERM exit included)."""
        for signum in WATCHED:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note)
        self._checked_step = trainer.global_step

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.seen.add(WATCHED[signum])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After an optimiser step: if any rank saw a signal, save together and raise :class:`StopRequested`."""
        step = trainer.global_step
        if step == self._checked_step:  # mid gradient accumulation: not a step boundary
            return
        if trainer.world_size > 1 and step % self.check_every_n_steps:
            return
        self._checked_step = step
        if not trainer.strategy.reduce_boolean_decision(bool(self.seen), all=False):
            return
        rank_zero_info(f"SLURM signal {sorted(self.seen)}: saving {self.checkpoint_path} at step {step}, then stopping")
        trainer.save_checkpoint(self.checkpoint_path)
        raise StopRequested(self.checkpoint_path, step, frozenset(self.seen))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Give the signals back to their previous owners."""
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Give the signals back when training ends with an error (or with :class:`StopRequested`)."""
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
