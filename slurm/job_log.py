"""The jobs submitted into one submitit folder: ``<folder>/jobs.jsonl``, one line per job.

``python -m slurm status|logs|cancel`` read it to know which jobs are ours, what stage each ran
and where its results go. Appending one complete line per job keeps the file whole when two
submissions write at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

REGISTRY = "jobs.jsonl"


@dataclass
class JobRecord:
    """One submitted job (an element of an array is one record).

    Args:
        job_id: SLURM job id, ``<array id>_<index>`` for an array element.
        stage: ``pretrain``, ``finetune``, ``shards``, ``sweep``, or the job after an array (``shards-merge``, ``finetune-summary``).
        name: what this job does (e.g. ``fold=1 seed=0``).
        output: the run folder or shard folder it writes.
        tasks: processes of the job (nodes x tasks per node).
        submitted: UTC time of submission (ISO 8601).
    """

    job_id: str
    stage: str
    name: str
    output: str
    tasks: int
    submitted: str


def append_records(folder: str | Path, records: list[JobRecord]) -> None:
    """Add ``records`` to the folder's registry."""
    path = Path(folder) / REGISTRY
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write("".join(json.dumps(asdict(record)) + "\n" for record in records))


def read_records(folder: str | Path) -> list[JobRecord]:
    """Every job recorded in ``folder``, oldest first; FileNotFoundError if nothing was ever submitted there."""
    path = Path(folder) / REGISTRY
    if not path.is_file():
        raise FileNotFoundError(f"no jobs submitted from {folder} ({path} missing): see --folder")
    return [JobRecord(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def find_record(folder: str | Path, job_id: str) -> JobRecord:
    """The record of ``job_id``; FileNotFoundError naming the known ids if it is not ours."""
    records = read_records(folder)
    for record in records:
        if record.job_id == job_id:
            return record
    known = ", ".join(r.job_id for r in records[-10:])
    raise FileNotFoundError(f"job {job_id} was not submitted from {folder} (latest: {known})")
