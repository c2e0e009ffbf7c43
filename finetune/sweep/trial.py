"""One trial of a sweep, as Ray Tune runs it in a worker process: the recipe with the trial's values.

Kept apart from :mod:`finetune.sweep.driver` (the driver) because Ray ships this function to its
workers by reference: everything it needs arrives as arguments, nothing from the driver's globals.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from finetune.sweep.report import CHECKPOINT_FILE, KeepTrialHyperparameters, TuneReportCallback
from finetune.sweep.search_space import apply_overrides
from finetune.training import run_finetuning


def trial_config(base_config: FinetuneConfig, params: dict[str, Any], trial_dir: Path, tracking_uri: str, run_name: str, resume: str) -> FinetuneConfig:
    """The recipe of one trial: its sampled values, its own folder and the sweep's MLflow store.

    Trials never touch the test split (selection happens on validation) and skip the identity
    probe; the best trial's recipe can be re-run in full afterwards.
    """
    config = apply_overrides(base_config, params)
    config.trainer = dataclasses.replace(config.trainer, output_dir=str(trial_dir), resume=resume)
    config.tracking = dataclasses.replace(config.tracking, tracking_uri=tracking_uri, run_name=run_name)
    config.eval = dataclasses.replace(config.eval, test=False, identity_probe=False)
    return config


def train_trial(params: dict[str, Any], *, base_config: FinetuneConfig, metric: str, parent_run_id: str, tracking_uri: str, trials_dir: str, workdir: str) -> None:
    """Fine-tune with ``params`` and report ``metric`` after each validation (Ray Tune function trainable).

    A checkpoint handed over by PBT (or a restarted trial) is resumed from, keeping this trial's
    optimiser settings (:class:`~finetune.sweep.report.KeepTrialHyperparameters`), in a segment
    folder of its own: its values differ from the segment before, so it is a new MLflow child run.
    """
    from ray import tune

    os.chdir(workdir)  # the recipe's relative shard paths are relative to where the sweep started
    context = tune.get_context()
    name = context.get_trial_name()
    handed = tune.get_checkpoint()
    trial_dir, resume = Path(trials_dir) / name, "never"
    if handed is not None:  # a PBT hand-over (or a restart): a new segment folder, so a new MLflow child run
        resume = str(Path(handed.to_directory()) / CHECKPOINT_FILE)
        trial_dir = trial_dir / f"resumed-{len(list(trial_dir.glob('resumed-*'))) + 1}"
    config = trial_config(base_config, params, trial_dir, tracking_uri, name, resume)
    tags = {"ray.trial_id": context.get_trial_id(), "ray.trial_name": name}
    callbacks = [TuneReportCallback(metric, parent_run_id, tags), *([KeepTrialHyperparameters()] if handed else [])]
    run_finetuning(config, extra_callbacks=callbacks)
