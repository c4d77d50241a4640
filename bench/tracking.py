"""MLflow tracking: the only module that imports mlflow.

Defaults are explicit, never MLflow's implicit ones (a stray ``./mlruns`` silently changes
those): a SQLite store ``results/mlflow.db`` and artifacts under ``results/mlartifacts``. A
tracking server is used when ``--tracking-uri`` or ``$MLFLOW_TRACKING_URI`` names one. MLflow is
the live view; run records (``bench/results.py``) are the store the leaderboard reads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.atomic import sqlite_store
from bench.paths import results_dir

EXPERIMENT = "ecg-ssl-bench"


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else SQLite under the results directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    path = results_dir() / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class Tracker:
    """A thin wrapper over one MLflow run (nested runs via :meth:`child`).

    ``enabled=False`` gives a tracker that records nothing (``--no-mlflow``), so engines never
    branch on whether tracking is on.
    """

    def __init__(self, run=None, client=None):
        self._run = run
        self._client = client

    @property
    def run_id(self) -> str | None:
        return self._run.info.run_id if self._run else None

    def log_params(self, params: dict[str, Any]) -> None:
        if self._run:
            import mlflow

            flat = _flatten(params)
            # MLflow caps a batch at 100 params and values at 6000 characters.
            items = [(k, str(v)[:6000]) for k, v in flat.items()]
            for i in range(0, len(items), 100):
                mlflow.log_params(dict(items[i : i + 100]), run_id=self.run_id)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._run:
            import mlflow

            mlflow.log_metrics(
                {k: float(v) for k, v in metrics.items()}, step=step, run_id=self.run_id
            )

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._run:
            import mlflow

            mlflow.log_artifact(str(path), artifact_path=artifact_path, run_id=self.run_id)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self._run:
            import mlflow

            client = mlflow.MlflowClient()
            for k, v in tags.items():
                client.set_tag(self.run_id, k, str(v))


@contextlib.contextmanager
def start_run(
    run_name: str,
    *,
    enabled: bool = True,
    uri: str | None = None,
    nested: bool = False,
    tags: dict[str, Any] | None = None,
) -> Iterator[Tracker]:
    """Open an MLflow run (status FAILED if the body raises, KILLED on Ctrl-C)."""
    if not enabled:
        yield Tracker()
        return
    import logging

    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)  # quieter first-time migrations
    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    with sqlite_store(uri, _build_mlflow_schema):
        # The first use of a new store migrates it: processes take turns, and it is built whole.
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            artifacts = results_dir() / "mlartifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
            experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    # Inside an active run (a pre-training started by `bench run`) the new run nests under it.
    nested = nested or mlflow.active_run() is not None
    run = mlflow.start_run(
        experiment_id=experiment.experiment_id, run_name=run_name, nested=nested, tags=tags
    )
    status = "FINISHED"
    try:
        yield Tracker(run)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        mlflow.end_run(status=status)


def _build_mlflow_schema(url: str) -> None:
    """MLflow's tables at ``url``, migrated to the installed version (what its store does on
    first use, through its own helpers)."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(url)
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def ui_command_line(host: str, port: int, uri: str | None = None) -> list[str]:
    """The ``mlflow ui`` command for the harness's store and artifact location."""
    import sys

    artifacts = results_dir() / "mlartifacts"
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", tracking_uri(uri),
        "--default-artifact-root", artifacts.as_uri(),
        "--host", host,
        "--port", str(port),
    ]  # fmt: skip
