"""Plan and submit a stage to SLURM with submitit: one job, or one job array.

:func:`plan_submission` reads the stage's recipe exactly as the stage's own CLI would (plus
overrides), fits the trainer to the allocation (one task per device: ``devices`` = tasks per
node, ``num_nodes`` = nodes, CPU when there are no GPUs) and builds the callables of
:mod:`slurm.jobs` (see :mod:`slurm.stages`). :func:`render_plan` shows the sbatch script and resolved configs
(``--dry-run``); :func:`submit_plan` submits and records the jobs in the folder's registry.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from plumbing.recipes import ConfigError, validate
from slurm.job_log import JobRecord, append_records
from slurm.resources import SlurmResources, sbatch_parameters
from slurm.stages import Fanout, PlannedJob, finetune_jobs, pretrain_jobs, shard_jobs, sweep_jobs

STAGES = ("pretrain", "finetune", "shards", "sweep")
FINAL_STEP = {"shards": "merge", "finetune": "summary"}  # the single job after an array


class SubmissionError(ConfigError):
    """SLURM is missing or refused the job (sbatch's own message is included)."""


@dataclass
class Plan:
    """Everything needed to submit (or print) a stage.

    ``jobs`` with more than one entry become one job array; ``after`` runs once the array has
    succeeded (the shard merge, the fold summary), as a single-task job. A Ray sweep runs one
    task per node whatever the GPUs (``one_task_per_node``).
    """

    stage: str
    resources: SlurmResources
    folder: str
    jobs: list[PlannedJob]
    after: PlannedJob | None = None
    one_task_per_node: bool = False
    tasks: int = field(init=False)

    def __post_init__(self) -> None:
        per_node = 1 if self.one_task_per_node else self.resources.devices_per_node
        self.tasks = self.resources.nodes * per_node

    def sbatch(self) -> dict[str, Any]:
        """submitit ``SlurmExecutor`` parameters of the main job (or array)."""
        params = sbatch_parameters(self.resources, f"face-{self.stage}")
        if self.one_task_per_node:
            params["ntasks_per_node"] = 1
        return params

    @property
    def final_stage(self) -> str:
        """Registry name of the ``after`` job (``shards-merge``, ``finetune-summary``)."""
        return f"{self.stage}-{FINAL_STEP[self.stage]}"

    def after_sbatch(self, array_id: str) -> dict[str, Any]:
        """Parameters of the ``after`` job: one task, started once array ``array_id`` has succeeded.

        If an element fails, SLURM cancels it (``--kill-on-invalid-dep``) instead of leaving it pending.
        """
        single = replace(self.resources, nodes=1, tasks_per_node=1, gpus_per_node=0)
        return {
            **sbatch_parameters(single, f"face-{self.final_stage}"),
            "dependency": f"afterok:{array_id}",
            "additional_parameters": {"kill-on-invalid-dep": "yes"},
        }


def plan_submission(
    stage: str,
    recipe: str,
    resources: SlurmResources,
    folder: str,
    overrides: Sequence[str] = (),
    fanout: Fanout | None = None,
) -> Plan:
    """Build the jobs of ``stage`` from ``recipe`` (+ ``overrides`` in the stage's syntax) for ``resources``.

    Raises ConfigError naming the key or flag for an impossible setting, FileNotFoundError for a
    missing recipe.
    """
    fanout = fanout or Fanout()
    validate({"resources": resources, "fanout": fanout})
    if stage not in STAGES:
        raise ConfigError(f"stage={stage!r}: expected one of {', '.join(STAGES)}")
    misplaced = {"seeds": bool(fanout.seeds) and stage != "finetune", "folds": bool(fanout.folds) and stage != "finetune",
                 "fold_partition": bool(fanout.fold_partition) and stage != "finetune",
                 "num_parts": fanout.num_parts > 1 and stage != "shards", "search_space": bool(fanout.search_space) and stage != "sweep"}
    for flag, wrong in misplaced.items():
        if wrong:
            raise ConfigError(f"--{flag} does not apply to stage {stage}")
    after = None
    if stage == "pretrain":
        jobs = pretrain_jobs(recipe, overrides, resources)
    elif stage == "finetune":
        jobs, after = finetune_jobs(recipe, overrides, resources, fanout)
    elif stage == "shards":
        jobs, after = shard_jobs(recipe, overrides, resources, fanout)
    else:
        jobs = sweep_jobs(recipe, overrides, resources, fanout)
    return Plan(stage, resources, str(Path(folder).resolve()), jobs, after, one_task_per_node=stage == "sweep")


def _plain(value: Any) -> Any:
    """A config as JSON-able plain data (tuples become lists)."""
    return json.loads(json.dumps(asdict(value) if is_dataclass(value) else value, default=str))


def sbatch_script(params: dict[str, Any], folder: str, array_size: int = 0) -> str:
    """The sbatch script that submitit's ``SlurmExecutor`` writes for ``params`` (an array of ``array_size`` jobs if > 1).

    submitit has no public call that renders its script without submitting (and its executor
    needs ``srun`` on the machine), so the dry run writes it here from the same parameters, as
    submitit does: one ``#SBATCH`` line per parameter (``additional_parameters`` as given), USR2
    ``signal_delay_s`` before the end, submitit's log files in ``folder``, then ``srun`` of
    submitit's runner.
    """
    logs = f"{folder}/{'%A_%a' if array_size > 1 else '%j'}_%t_log"
    flags = {key: value for key, value in params.items() if key not in ("signal_delay_s", "array_parallelism", "additional_parameters")}
    flags |= {"wckey": "submitit", "signal": f"USR2@{params.get('signal_delay_s', 90)}", "open-mode": "append"}
    flags |= {"output": f"{logs}.out".replace("%t", "0"), "error": f"{logs}.err".replace("%t", "0")}
    if array_size > 1:
        flags["array"] = f"0-{array_size - 1}%{min(array_size, params.get('array_parallelism', 256))}"
    flags |= params.get("additional_parameters", {})
    lines = ["#!/bin/bash", "", "# Parameters"]
    for key, value in sorted(flags.items()):
        flag = f"#SBATCH --{key.replace('_', '-')}"
        lines.append(flag if value is True else f"{flag}={shlex.quote(str(value))}")
    srun = shlex.join(["srun", "--unbuffered", "--output", f"{logs}.out", "--error", f"{logs}.err"])
    submitit_run = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(folder)}"
    return "\n".join([*lines, "", "# command", "export SUBMITIT_EXECUTOR=slurm", f"{srun} {submitit_run}", ""])


def render_plan(plan: Plan) -> str:
    """The sbatch script(s) submitit would submit and every resolved config, as text (``--dry-run``)."""
    import yaml

    parts = [f"# sbatch script ({len(plan.jobs)} job{'s' if len(plan.jobs) > 1 else ''}, folder {plan.folder})"]
    parts.append(sbatch_script(plan.sbatch(), plan.folder, array_size=len(plan.jobs)))
    if plan.after is not None:
        parts.append(f"# then, once every array element succeeded: {plan.after.name}")
        parts.append(sbatch_script(plan.after_sbatch("ARRAY_JOB_ID"), plan.folder))
    for planned in plan.jobs + ([plan.after] if plan.after else []):
        parts.append(f"# resolved config of {planned.name} -> {planned.output}")
        parts.append(yaml.safe_dump(_plain(planned.config), sort_keys=False).rstrip())
    return "\n".join(parts) + "\n"


def _executor(folder: str, resources: SlurmResources, params: dict[str, Any]) -> Any:
    import submitit

    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise SubmissionError(
            "sbatch/srun not found: run on a SLURM login node, or start the one-host cluster with "
            "`bash slurm/local-cluster/up.sh` and `export SLURM_CONF=/tmp/face-slurm/slurm.conf` (or use --dry-run)"
        )
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=resources.max_requeues)
    executor.update_parameters(**params)
    return executor


def _submit(action: Any) -> Any:
    """Run a submitit submission, turning sbatch's refusal into a :class:`SubmissionError`."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        return action()
    except (FailedJobError, FailedSubmissionError) as err:
        raise SubmissionError(f"sbatch refused the job: {str(err).strip()}") from err


def submit_plan(plan: Plan) -> list[JobRecord]:
    """Submit the plan's jobs (an array if several, then the ``after`` job); record and return them."""
    executor = _executor(plan.folder, plan.resources, plan.sbatch())
    if len(plan.jobs) == 1:
        submitted = [_submit(lambda: executor.submit(plan.jobs[0].job))]
    else:
        submitted = _submit(lambda: executor.submit_array([planned.job for planned in plan.jobs]))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records = [
        JobRecord(job.job_id, plan.stage, planned.name, planned.output, plan.tasks, now)
        for job, planned in zip(submitted, plan.jobs)
    ]
    append_records(plan.folder, records)  # recorded at once: the array runs even if what follows fails
    if plan.after is not None:
        after_executor = _executor(plan.folder, plan.resources, plan.after_sbatch(submitted[0].job_id.split("_")[0]))
        job = _submit(lambda: after_executor.submit(plan.after.job))
        after = JobRecord(job.job_id, plan.final_stage, plan.after.name, plan.after.output, 1, now)
        append_records(plan.folder, [after])
        records.append(after)
    return records
