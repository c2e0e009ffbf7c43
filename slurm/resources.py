"""What a SLURM job asks for, and how that maps onto sbatch flags and Lightning's trainer.

:class:`SlurmResources` is the typed form of ``--nodes --gpus-per-node --partition --time ...``.
:func:`sbatch_parameters` turns it into the parameters of submitit's ``SlurmExecutor`` (the same
dict renders the ``--dry-run`` script and submits the real job). :func:`trainer_layout` gives the
Lightning settings that match the allocation: one task per device, as Lightning requires.
Nothing here imports submitit, torch or Lightning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Problems = list[tuple[str, str]]

_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def time_to_minutes(text: str) -> int:
    """Minutes in a SLURM time limit: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM[:SS]``.

    Seconds round up to a whole minute. Raises ValueError for anything else.
    """
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)")
    days = int(match["days"] or 0)
    parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
    if match["days"] is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:  # MM or MM:SS
        hours, minutes, seconds = 0, parts[0], (parts[1] if len(parts) == 2 else 0)
    return days * 24 * 60 + hours * 60 + minutes + (1 if seconds else 0)


@dataclass
class SlurmResources:
    """The allocation of one job (every element of an array gets the same).

    Args:
        nodes: nodes of the job; Lightning's ``num_nodes``.
        gpus_per_node: GPUs per node; one task per GPU. 0 = a CPU job (accelerator ``cpu``).
        tasks_per_node: tasks (processes) per node when ``gpus_per_node`` is 0; ignored otherwise.
        partition: SLURM partition; empty = the cluster's default.
        time: time limit (``HH:MM:SS``, ``D-HH:MM:SS`` or minutes).
        account: account to charge; empty = your default.
        qos: quality of service; empty = the default.
        constraint: node features (``--constraint``), e.g. ``a100``; empty = any.
        mem: memory per node (``64G``, ``500M``); empty = the partition's default.
        cpus_per_task: CPU cores per task (data loader workers + 1 is a good start).
        signal_delay_s: seconds before the time limit at which SLURM sends USR2 (save and requeue).
        max_requeues: times a job may save and requeue itself (preemption or time limit) before it stops.
        array_parallelism: elements of a job array allowed to run at once.
    """

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    partition: str = ""
    time: str = "01:00:00"
    account: str = ""
    qos: str = ""
    constraint: str = ""
    mem: str = ""
    cpus_per_task: int = 1
    signal_delay_s: int = 120
    max_requeues: int = 3
    array_parallelism: int = 256

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        for name in ("nodes", "tasks_per_node", "cpus_per_task", "array_parallelism"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        if self.gpus_per_node < 0:
            found.append(("gpus_per_node", "must be >= 0"))
        try:
            if time_to_minutes(self.time) < 1:
                found.append(("time", "must be at least one minute"))
        except ValueError as err:
            found.append(("time", str(err)))
        if self.mem and not re.fullmatch(r"\d+[KMGT]?B?", self.mem.upper()):
            found.append(("mem", "expected a size such as 64G or 500M"))
        if self.signal_delay_s < 0 or self.max_requeues < 0:
            found.append(("signal_delay_s", "signal_delay_s and max_requeues must be >= 0"))
        return found

    @property
    def devices_per_node(self) -> int:
        """Processes per node: one per GPU, else ``tasks_per_node`` CPU processes."""
        return self.gpus_per_node if self.gpus_per_node > 0 else self.tasks_per_node


def sbatch_parameters(resources: SlurmResources, job_name: str) -> dict[str, Any]:
    """Parameters of submitit's ``SlurmExecutor.update_parameters`` for ``resources``."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "nodes": resources.nodes,
        "ntasks_per_node": resources.devices_per_node,
        "cpus_per_task": resources.cpus_per_task,
        "time": time_to_minutes(resources.time),
        "signal_delay_s": resources.signal_delay_s,
        "array_parallelism": resources.array_parallelism,
    }
    if resources.gpus_per_node:
        params["gpus_per_node"] = resources.gpus_per_node
    for name in ("partition", "account", "qos", "constraint"):
        if getattr(resources, name):
            params[name] = getattr(resources, name)
    if resources.mem:
        params["mem"] = resources.mem.upper().removesuffix("B")
    return params


def trainer_layout(resources: SlurmResources, strategy: str) -> dict[str, Any]:
    """Lightning trainer settings matching the allocation (``accelerator``, ``devices``, ``num_nodes``, ``strategy``).

    A job of more than one process needs a distributed strategy: ``auto`` becomes ``ddp``.
    """
    world = resources.nodes * resources.devices_per_node
    return {
        "accelerator": "gpu" if resources.gpus_per_node else "cpu",
        "devices": resources.devices_per_node,
        "num_nodes": resources.nodes,
        "strategy": "ddp" if strategy == "auto" and world > 1 else strategy,
    }
