"""MLflow tracking: the only module that imports mlflow.

Defaults are explicit, never MLflow's implicit ones (a stray ``./mlruns`` silently changes
those): a SQLite store ``results/mlflow.db`` and artifacts under ``results/mlartifacts``. A
tracking server is used when ``--tracking-uri`` or ``$MLFLOW_TRACKING_URI`` names one. MLflow is
the live view; run records (``bench/results.py``) are the store the leaderboard reads.

A tracking **server** may be unreachable or die in the middle of a benchmark: then the work goes
on untracked (records and leaderboards are the source of truth and are always written), every
later MLflow call of the process is skipped at once instead of waiting for retries, and
:func:`untracked_note` says which runs were not (completely) tracked. A local SQLite store has
no such leniency: a store that cannot be written is the storage error it always was.
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
# MLflow retries a failing request for minutes by default; a benchmark should not wait that
# long for a server that is gone (the user's own settings of these variables win).
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


class _Outage:
    """The process's view of a remote tracking server: why it was lost, and the runs that were
    not (completely) tracked because of it."""

    reason: str | None = None
    untracked: list[str] = []

    @classmethod
    def lose(cls, run_name: str, exc: BaseException) -> None:
        if cls.reason is None:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            cls.reason = f"{exc.__class__.__name__}: {first[:200]}"
        if run_name not in cls.untracked:
            cls.untracked.append(run_name)

    @classmethod
    def reset(cls) -> None:
        cls.reason, cls.untracked = None, []


def untracked_note() -> str | None:
    """One paragraph naming the runs a lost tracking server did not (completely) track, or
    ``None`` when nothing was lost."""
    if not _Outage.untracked:
        return None
    names = "\n".join(f"  - {name}" for name in _Outage.untracked)
    return (
        f"warning: the MLflow tracking server was lost ({_Outage.reason}); "
        f"{len(_Outage.untracked)} runs were not (completely) tracked:\n{names}\n"
        "  nothing else was lost: the run records and the leaderboard under the results "
        "directory were written as always"
    )


def _server_failure(exc: BaseException) -> bool:
    """A failure of the server or the network (MLflow's REST errors, requests' errors, sockets),
    not a defect of ours, which must still raise."""
    import requests
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException | requests.exceptions.RequestException | OSError)


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


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

    def __init__(self, run=None, client=None, name: str = "", remote: bool = False):
        self._run = run
        self._client = client
        self._name = name
        self._remote = remote

    @property
    def run_id(self) -> str | None:
        return self._run.info.run_id if self._run else None

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """On a remote server, a failed call loses the server for the process (see module)."""
        if not self._remote:
            yield
            return
        try:
            yield
        except Exception as exc:
            if not _server_failure(exc):
                raise
            _Outage.lose(self._name, exc)
            self._run = None

    def _live(self) -> bool:
        if self._run is not None and self._remote and _Outage.reason is not None:
            _Outage.lose(self._name, RuntimeError(_Outage.reason))
            self._run = None
        return self._run is not None

    def log_params(self, params: dict[str, Any]) -> None:
        if self._live():
            import mlflow

            flat = _flatten(params)
            # MLflow caps a batch at 100 params and values at 6000 characters.
            items = [(k, str(v)[:6000]) for k, v in flat.items()]
            with self._guard():
                for i in range(0, len(items), 100):
                    mlflow.log_params(dict(items[i : i + 100]), run_id=self.run_id)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._live():
            import mlflow

            with self._guard():
                mlflow.log_metrics(
                    {k: float(v) for k, v in metrics.items()}, step=step, run_id=self.run_id
                )

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self._live():
            import mlflow

            with self._guard():
                mlflow.log_artifact(str(path), artifact_path=artifact_path, run_id=self.run_id)

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self._live():
            import mlflow

            client = mlflow.MlflowClient()
            with self._guard():
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
    """Open an MLflow run (status FAILED if the body raises, KILLED on Ctrl-C). On a remote
    server that cannot be reached, the body runs with a tracker that records nothing."""
    if not enabled:
        yield Tracker()
        return
    import mlflow

    uri = tracking_uri(uri)
    remote = is_remote(uri)
    if remote and _Outage.reason is not None:  # lost earlier in this process: no waiting again
        _Outage.lose(run_name, RuntimeError(_Outage.reason))
        yield Tracker()
        return
    try:
        run = _open_run(mlflow, uri, run_name, nested, tags)
    except Exception as exc:
        if not (remote and _server_failure(exc)):
            raise
        _Outage.lose(run_name, exc)
        yield Tracker()
        return
    status = "FINISHED"
    try:
        yield Tracker(run, name=run_name, remote=remote)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        try:
            mlflow.end_run(status=status)  # pops the run from MLflow's stack before the call
        except Exception as exc:
            if not (remote and _server_failure(exc)):
                raise
            _Outage.lose(run_name, exc)


def _open_run(mlflow, uri: str, run_name: str, nested: bool, tags):
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # quieter first-time migrations
    if is_remote(uri):
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    mlflow.set_tracking_uri(uri)
    with sqlite_store(uri, _build_mlflow_schema):
        # The first use of a new store migrates it: processes take turns, and it is built whole.
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            artifacts = results_dir() / "mlartifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            # A server keeps artifacts where it was told to (its --artifacts-destination).
            location = None if is_remote(uri) else artifacts.as_uri()
            mlflow.create_experiment(EXPERIMENT, artifact_location=location)
            experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    # Inside an active run (a pre-training started by `bench run`) the new run nests under it.
    nested = nested or mlflow.active_run() is not None
    tags = {k: str(v) for k, v in (tags or {}).items()}  # a server takes string tags only
    return mlflow.start_run(
        experiment_id=experiment.experiment_id, run_name=run_name, nested=nested, tags=tags
    )


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
