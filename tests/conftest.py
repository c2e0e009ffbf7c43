"""A real MLflow tracking server for the whole test session (see :mod:`tracking_server`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tracking_server import MlflowServer, running_server


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A tracking server on 127.0.0.1 for the session; its URI and storage folder."""
    with running_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server
