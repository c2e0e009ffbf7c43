"""A new SQLite MLflow store opened by several processes at the same moment is created once, without a race."""

import multiprocessing as mp
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from plumbing.tracking_store import create_sqlite_store


def _open_store(uri: str, start: mp.Event, failures: mp.Queue) -> None:
    start.wait()
    try:
        create_sqlite_store(uri)
        MlflowClient(uri).create_experiment(f"from-{mp.current_process().name}")
    except Exception as err:  # noqa: BLE001 - reported to the parent, which fails the test
        failures.put(repr(err))


@pytest.mark.slow
def test_processes_starting_together_share_one_new_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'nested' / 'mlflow.db'}"
    context = mp.get_context("spawn")
    start, failures = context.Event(), context.Queue()
    workers = [context.Process(target=_open_store, args=(uri, start, failures), name=f"p{i}") for i in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=240)
    errors = [failures.get() for _ in range(failures.qsize())]
    assert not errors and all(worker.exitcode == 0 for worker in workers)
    names = {e.name for e in MlflowClient(uri).search_experiments()}
    assert {f"from-p{i}" for i in range(4)} <= names


def test_other_stores_are_left_alone(tmp_path: Path) -> None:
    create_sqlite_store(f"file://{tmp_path / 'mlruns'}")
    create_sqlite_store("http://127.0.0.1:1")  # not contacted
    assert not any(tmp_path.iterdir())
