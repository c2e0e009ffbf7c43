"""Commands of ``python -m slurm``: submit a stage, and follow the jobs of a submitit folder.

Flags may be written with dashes or underscores (``--gpus-per-node`` = ``--gpus_per_node``), a
bare ``--dry-run`` means true, and ``--config`` names the recipe (``--recipe``; jsonargparse keeps
the name ``config`` for its own config files) (see :func:`normalize_argv`). Recipe overrides in the stage's own
syntax go after ``--``: ``python -m slurm submit pretrain --config tiny.yaml -- --trainer.max_steps 20``.
Heavy libraries are imported inside the commands.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

DEFAULT_FOLDER = "runs/slurm"
BOOLEAN_FLAGS = {"--dry_run"}


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Dashes to underscores in flag names, ``--config`` after the subcommand to ``--recipe``,
    ``true`` after a bare boolean flag, and ``-- X...`` to ``--overrides``."""
    head, tail = list(argv), []
    if "--" in head:
        at = head.index("--")
        head, tail = head[:at], head[at + 1 :]
    out: list[str] = []
    for index, token in enumerate(head):
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token.partition("=")
            token = "--" + name[2:].replace("-", "_") + sep + value
            if name == "--config" and index > 0:
                token = "--recipe" + sep + value
            following = head[index + 1] if index + 1 < len(head) else "--"
            if token in BOOLEAN_FLAGS and (following.startswith("-") or following in ("pretrain", "finetune", "shards", "sweep")):
                out += [token, "true"]
                continue
        out.append(token)
    if tail:
        out += ["--overrides", json.dumps(tail)]
    return out


def submit(
    stage: Literal["pretrain", "finetune", "shards", "sweep"],
    recipe: str = "",
    nodes: int = 1,
    gpus_per_node: int = 0,
    tasks_per_node: int = 1,
    partition: str = "",
    time: str = "01:00:00",
    account: str = "",
    qos: str = "",
    constraint: str = "",
    mem: str = "",
    cpus_per_task: int = 1,
    max_requeues: int = 3,
    signal_delay_s: int = 120,
    seeds: list[int] | None = None,
    folds: int = 0,
    fold_partition: Literal["", "auto", "published", "random"] = "",
    val_fraction: float = 0.15,
    num_parts: int = 1,
    search_space: str = "",
    num_samples: int = 4,
    cpus_per_trial: float = 1.0,
    folder: str = DEFAULT_FOLDER,
    dry_run: bool = False,
    overrides: list[str] | None = None,
) -> list[str]:
    """Submit a stage to SLURM with submitit (one job, or one job array); print the job ids.

    Args:
        stage: ``pretrain``, ``finetune``, ``shards`` (``data_shards build`` arguments) or ``sweep`` (Ray Tune over a finetune recipe).
        recipe: the stage's YAML recipe (also ``--config``), as for ``python -m <stage> ... --config``.
        nodes: nodes per job.
        gpus_per_node: GPUs per node, one task each; 0 = CPU job.
        tasks_per_node: CPU processes per node when ``gpus_per_node`` is 0.
        partition: SLURM partition; empty = the cluster's default.
        time: time limit per job (``HH:MM:SS`` or ``D-HH:MM:SS``); USR2 comes ``signal_delay_s`` before it.
        account: account to charge; empty = your default.
        qos: quality of service; empty = the default.
        constraint: required node features, e.g. ``a100``.
        mem: memory per node, e.g. ``64G``; empty = the partition's default.
        cpus_per_task: CPU cores per task.
        max_requeues: times a job may save and requeue itself (time limit, preemption) before it stops.
        signal_delay_s: seconds before the time limit at which the job saves and requeues.
        seeds: finetune: one run per seed, e.g. ``--seeds [0,1,2]`` (a job array); empty = the recipe's seed.
        folds: finetune: subject-exclusive k-fold as ``python -m finetune folds`` runs it, one array element per
            fold x seed, then one summary job (``folds.json``, MLflow parent run); 0 = no folds, unless
            ``fold_partition`` is given (then the partition's fold count).
        fold_partition: finetune folds: ``auto`` (the published partition of the data's subjects, else random),
            ``published`` or ``random`` (``--partition`` is SLURM's); empty = ``auto`` when ``folds`` is given.
        val_fraction: finetune folds: share of each fold's training subjects used for validation.
        num_parts: shards: parts of the job array, one shard range each, then a manifest merge job.
        search_space: sweep: the sweep file; the job runs a Ray cluster over its nodes (one task each) and the sweep there.
        num_samples: sweep: trials to sample.
        cpus_per_trial: sweep: cores reserved per trial (give each node's cores with ``--cpus_per_task``).
        folder: submitit folder: scripts, logs, results and the job registry.
        dry_run: print the sbatch script and the resolved config; submit nothing.
        overrides: recipe overrides in the stage's syntax (write them after ``--``).
    """
    from plumbing.recipes import ConfigError
    from slurm.launcher import plan_submission, render_plan, submit_plan
    from slurm.resources import SlurmResources
    from slurm.stages import Fanout

    if not recipe:
        raise ConfigError(f"--config is required: the {stage} recipe (YAML) to submit")

    resources = SlurmResources(
        nodes=nodes, gpus_per_node=gpus_per_node, tasks_per_node=tasks_per_node, partition=partition,
        time=time, account=account, qos=qos, constraint=constraint, mem=mem, cpus_per_task=cpus_per_task,
        signal_delay_s=signal_delay_s, max_requeues=max_requeues,
    )
    fanout = Fanout(
        seeds=seeds or [], folds=folds, fold_partition=fold_partition, val_fraction=val_fraction, num_parts=num_parts,
        search_space=search_space, num_samples=num_samples, cpus_per_trial=cpus_per_trial,
    )
    plan = plan_submission(stage, recipe, resources, folder, overrides or [], fanout)
    if dry_run:
        print(render_plan(plan), end="")
        return []
    records = submit_plan(plan)
    for record in records:
        print(f"submitted {record.stage} job {record.job_id}: {record.name} -> {record.output}")
    print(f"follow with: python -m slurm status --folder {folder}")
    return [record.job_id for record in records]


def status(job_id: str = "", folder: str = DEFAULT_FOLDER) -> list[str]:
    """Show the state of every job submitted from ``folder`` (or of one job, with its error in full).

    Args:
        job_id: one job (``<id>`` or ``<array id>_<index>``); empty = all jobs of the folder.
        folder: submitit folder the jobs were submitted from.
    """
    from slurm.job_log import find_record, read_records
    from slurm.monitor import job_status

    records = [find_record(folder, job_id)] if job_id else read_records(folder)
    states = []
    for record in records:
        found = job_status(folder, record)
        states.append(found.state)
        print(f"{record.job_id:>10}  {found.state:<11} {record.stage:<13} {record.name}  -> {record.output}")
        if found.error:
            shown = found.error if job_id else found.error.splitlines()[-1]
            print("    " + shown.replace("\n", "\n    "))
    return states


def logs(job_id: str, task: int = 0, stream: Literal["out", "err"] = "err", lines: int = 50, folder: str = DEFAULT_FOLDER) -> str:
    """Print the end of one task's stdout or stderr.

    Args:
        job_id: the job (``<id>`` or ``<array id>_<index>``).
        task: task (rank) of the job.
        stream: ``out`` (stdout) or ``err`` (stderr: Lightning's and submitit's logs).
        lines: lines from the end; 0 = all.
        folder: submitit folder the job was submitted from.
    """
    from slurm.job_log import find_record
    from slurm.monitor import log_path, tail

    record = find_record(folder, job_id)
    if not 0 <= task < record.tasks:
        raise FileNotFoundError(f"--task={task}: job {job_id} has tasks 0..{record.tasks - 1}")
    path = log_path(folder, job_id, task, stream)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist yet (job {job_id} has not started?)")
    text = tail(path, lines) if lines else path.read_text(errors="replace")
    print(text)
    return text


def cancel(job_id: str, folder: str = DEFAULT_FOLDER) -> list[str]:
    """Cancel one job (or array), or every unfinished job submitted from ``folder`` with ``all``.

    Args:
        job_id: ``<id>``, ``<array id>`` for a whole array, ``<array id>_<index>``, or ``all``.
        folder: submitit folder the jobs were submitted from.
    """
    from slurm import monitor
    from slurm.job_log import find_record, read_records

    records = read_records(folder)
    if job_id == "all":
        targets = [r.job_id for r in records if monitor.slurm_state(r.job_id) in monitor.ACTIVE]
    else:
        if not any(r.job_id == job_id or r.job_id.startswith(job_id + "_") for r in records):
            find_record(folder, job_id)  # raises, naming the known ids
        targets = [job_id]
    for target in targets:
        monitor.cancel(target)
        print(f"cancelled {target}")
    return targets
