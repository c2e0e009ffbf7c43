"""State, logs, errors and cancellation of the jobs in a submitit folder.

A job's state comes from SLURM while SLURM remembers it (``squeue``, then ``sacct`` when the
cluster keeps accounting, then ``scontrol show job`` for a few minutes after the end), and from
the result files submitit writes (``<id>_<task>_result.pkl``: the return value, or the remote
traceback of a failed task) after that. Imports nothing heavy: submitit is only used for paths.
"""

from __future__ import annotations

import pickle
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from submitit.core.utils import JobPaths

from slurm.job_log import JobRecord

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED"}
ENDED_BADLY = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


@dataclass
class JobStatus:
    """What is known of one job.

    Args:
        record: the job as submitted.
        state: SLURM state (``RUNNING``, ``COMPLETED``, ``FAILED`` ...), or ``UNKNOWN``.
        error: the remote traceback (or the end of stderr) when the job failed, else empty.
    """

    record: JobRecord
    state: str
    error: str = ""


def _ask(command: list[str]) -> str:
    """stdout of a SLURM client command, or "" when it fails or SLURM does not answer in 20 s."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def slurm_state(job_id: str) -> str:
    """The job's state as SLURM knows it now, or "" once SLURM has forgotten it."""
    queued = _ask(["squeue", "-h", "-j", job_id, "-o", "%T"])
    if queued:
        return queued.split()[0]
    accounted = _ask(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"])
    if accounted:
        return accounted.splitlines()[-1].split()[0]
    shown = re.search(r"JobState=(\S+)", _ask(["scontrol", "show", "job", job_id]))
    return shown.group(1) if shown else ""


def task_outcome(folder: str | Path, job_id: str, task: int) -> tuple[str, object]:
    """``("success", value)``, ``("error", traceback)`` or ``("", None)`` while the task has no result."""
    path = JobPaths(folder, job_id=job_id, task_id=task).result_pickle
    if not path.is_file():
        return "", None
    with path.open("rb") as handle:
        outcome, payload = pickle.load(handle)
    return outcome, payload


def log_path(folder: str | Path, job_id: str, task: int, stream: str) -> Path:
    """The stdout (``out``) or stderr (``err``) file of one task."""
    paths = JobPaths(folder, job_id=job_id, task_id=task)
    return paths.stdout if stream == "out" else paths.stderr


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a text file ("" if absent)."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def job_status(folder: str | Path, record: JobRecord) -> JobStatus:
    """State of ``record`` and, if it failed, the remote traceback of its first failing task."""
    outcomes = [task_outcome(folder, record.job_id, task) for task in range(record.tasks)]
    errors = [(task, payload) for task, (outcome, payload) in enumerate(outcomes) if outcome == "error"]
    state = slurm_state(record.job_id)
    if state in ACTIVE:
        return JobStatus(record, state)
    if errors:
        task, trace = errors[0]
        return JobStatus(record, "FAILED", f"task {task} raised:\n{trace}".rstrip())
    if not state:
        state = "COMPLETED" if outcomes and all(o == "success" for o, _ in outcomes) else "UNKNOWN"
    if state in ENDED_BADLY or state == "UNKNOWN":
        stderr = tail(log_path(folder, record.job_id, 0, "err"), 30)
        note = f"no result written; end of task 0's stderr:\n{stderr}" if stderr else "no result and no log written"
        return JobStatus(record, state, note)
    return JobStatus(record, state)


def cancel(job_id: str) -> None:
    """``scancel`` the job; RuntimeError with SLURM's message if it refuses."""
    done = subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"scancel {job_id} failed: {done.stderr.strip() or done.stdout.strip()}")
