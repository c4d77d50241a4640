"""Optuna tuning on the validation fold: the only module that imports optuna.

* ``bench tune --protocol P``: tunes the protocol's settings (learning rate, weight decay ...)
  for one pre-trained encoder and task; objective = validation macro AUROC of the selected
  epoch; every epoch is reported so the median pruner stops hopeless trials.
* ``bench tune --pretrain``: tunes the method's pre-training hyperparameters (its
  ``search_space``: LR, mask ratio ...); each trial pre-trains, then the objective is the linear
  probe's validation macro AUROC on the task.

Studies use a TPE sampler (seeded), a median pruner and RDB storage: SQLite
``results/optuna.db`` by default, or any SQLAlchemy URL (PostgreSQL lets several machines share
a study). A study is resumable: it runs only the trials still missing, and trials left RUNNING
by a killed process are marked failed by the storage heartbeat. Fold 10 is never read: the
objective calls :meth:`bench.evaluate.runner.Evaluator.fit`, which refuses it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna

from bench.atomic import sqlite_store
from bench.config import apply_overrides
from bench.errors import BenchError
from bench.evaluate.config import EvalConfig, eval_hash
from bench.paths import results_dir

STORAGE_ENV = "BENCH_OPTUNA_STORAGE"
HEARTBEAT_ENV = "BENCH_OPTUNA_HEARTBEAT_S"
POSTGRES_HINT = "install the driver with: pip install 'ecg-ssl-bench[postgres]' (psycopg 3)"


def storage_url(url: str | None = None) -> str:
    """``url``, else ``$BENCH_OPTUNA_STORAGE``, else SQLite under the results directory."""
    if url:
        return url
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    path = results_dir() / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def shown_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: shown as given (it holds no parseable password)
        return url


def _driver_url(url: str) -> str:
    """A ``postgresql://`` URL names SQLAlchemy's default driver (psycopg2); the harness's
    ``postgres`` extra installs psycopg 3, the maintained one, so such URLs are sent to it."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # no scheme; a port that is no number
        raise BenchError(
            f"{url!r} is not a database URL",
            hint="e.g. sqlite:////abs/path/optuna.db or postgresql://USER:PASSWORD@HOST:5432/DB",
        ) from None
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise BenchError(
                f"{shown_url(url)}: no PostgreSQL driver installed", hint=POSTGRES_HINT
            ) from None
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def heartbeat() -> tuple[int, int]:
    """``(interval, grace)`` in seconds: a running trial reports alive every ``interval``; one
    silent for ``grace`` (its process was killed) is marked failed and run again. The interval
    is ``$BENCH_OPTUNA_HEARTBEAT_S`` (default 30 s), the grace three intervals."""
    raw = os.environ.get(HEARTBEAT_ENV, "30")
    try:
        interval = int(raw)
        if interval < 1:
            raise ValueError
    except ValueError:
        raise BenchError(
            f"${HEARTBEAT_ENV}={raw!r} is not a whole number of seconds >= 1", hint="e.g. 30"
        ) from None
    return interval, 3 * interval


def _storage(url: str | None):
    # The heartbeat marks trials of killed processes FAILED, so a resumed study re-runs them
    # (optuna flags heartbeats as experimental; the warning is noise for users).
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = storage_url(url)
    driver_url = _driver_url(url)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:///") else {}
    if driver_url.startswith("postgresql+psycopg://"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}

    def build(tmp_url: str) -> None:  # a new SQLite store's tables, in a temporary file
        optuna.storages.RDBStorage(tmp_url, engine_kwargs=engine_kwargs).engine.dispose()

    interval, grace = heartbeat()
    with sqlite_store(url, build), _storage_errors(url):
        return optuna.storages.RDBStorage(
            driver_url, heartbeat_interval=interval, grace_period=grace,
            engine_kwargs=engine_kwargs,
        )  # fmt: skip


class _storage_errors:
    """A storage that cannot be reached or refuses us: one line naming it and what to do."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        import sqlalchemy

        if exc is None or not isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            return False
        if isinstance(exc, sqlalchemy.exc.OperationalError) and self.url.startswith("sqlite"):
            return False  # a local file: the CLI's storage error (disk full, read-only) says it
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        low = reason.lower()
        if "password" in low or "authentication" in low or "role" in low:
            hint = "check the user name and password in the URL (or ~/.pgpass)"
        elif "does not exist" in low and "database" in low:
            hint = "create the database first (createdb NAME), or name an existing one"
        else:
            hint = "check that the server is running and reachable at that host and port"
        raise BenchError(
            f"cannot open the Optuna storage {shown_url(self.url)}: {reason}", hint=hint
        ) from None


# Search spaces of the protocols, as --eval-set overrides.
def protocol_space(protocol: str, trial) -> dict[str, Any]:
    if protocol == "linear":
        return {
            "linear.lr": trial.suggest_float("linear.lr", 1e-4, 1e-2, log=True),
            "linear.weight_decay": trial.suggest_float("linear.weight_decay", 1e-6, 1e-1, log=True),
        }
    if protocol == "attentive":
        return {
            "attentive.lr": trial.suggest_float("attentive.lr", 1e-4, 1e-2, log=True),
            "attentive.weight_decay": trial.suggest_float(
                "attentive.weight_decay", 1e-3, 0.3, log=True
            ),
        }
    return {
        "finetune.lr": trial.suggest_float("finetune.lr", 1e-4, 3e-3, log=True),
        "finetune.encoder_lr_scale": trial.suggest_float(
            "finetune.encoder_lr_scale", 0.01, 1.0, log=True
        ),
        "finetune.weight_decay": trial.suggest_float("finetune.weight_decay", 1e-3, 0.3, log=True),
    }


def protocol_study_name(run_id: str, task: str, protocol: str, base: EvalConfig) -> str:
    """Study of one encoder x task x protocol from one base protocol config."""
    return f"protocol/{run_id}/{task}/{protocol}/{eval_hash(base, protocol)[:8]}"


def _open_study(name: str, storage: str | None, seed: int, warmup_epochs: int):
    return optuna.create_study(
        study_name=name,
        storage=_storage(storage),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=warmup_epochs),
    )


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
_TAKEN = (*FINISHED, optuna.trial.TrialState.RUNNING)


class _Surplus(Exception):
    """Another worker took the last trial at the same moment: this one is not run."""


def finished_trials(study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _run_missing_trials(
    study, objective, trials: int, poll_s: float | None = None, echo: Callable[[str], None] = print
):
    """Run trials until the study holds ``trials`` finished (complete or pruned) ones: a resumed
    study runs only the missing ones, and workers sharing it (other processes or machines)
    divide them, so exactly ``trials`` run however many workers there are.

    Before each trial the worker counts the finished and running trials; when they already make
    ``trials`` it waits instead of starting one (a running trial of a killed worker is failed by
    the heartbeat after its grace period, and then run again here). Two workers that start a
    trial at the same moment are ordered by trial number: the one beyond ``trials`` is marked
    failed (user attribute ``surplus``) without running.
    """
    interval, grace = heartbeat()
    poll_s = interval if poll_s is None else poll_s
    waiting = False

    def guarded(trial) -> float:
        taken = study.get_trials(deepcopy=False, states=_TAKEN)
        if sum(t.number < trial.number for t in taken) >= trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus
        return objective(trial)

    while True:
        optuna.storages.fail_stale_trials(study)  # killed workers' trials: failed, to re-run
        done = finished_trials(study)
        if done >= trials:
            return study
        running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
        if done + running >= trials:  # the others hold the last trials: wait for them
            if not waiting:
                echo(
                    f"waiting: {running} of the study's last trials are running in other workers "
                    f"(a killed worker's trial is failed after {grace} s without heartbeat and "
                    "run here)"
                )
                waiting = True
            time.sleep(poll_s)
            continue
        waiting = False
        quiet = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # a surplus trial is no failure to show
        try:
            study.optimize(guarded, n_trials=1, catch=(_Surplus,))
        finally:
            optuna.logging.set_verbosity(quiet)


def tune_protocol(
    evaluator,
    td,
    protocol: str,
    trials: int,
    base: EvalConfig,
    *,
    storage: str | None = None,
    seed: int = 0,
    tracking: Callable[[str], Any] | None = None,
    echo: Callable[[str], None] = print,
):
    """Tune ``protocol`` for ``evaluator``'s subject on task data ``td``; returns the study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = protocol_study_name(evaluator.subject.run_id, td.task.name, protocol, base)
    study = _open_study(name, storage, seed, warmup_epochs=2)
    study.set_user_attr("objective", "validation macro AUROC (fold 9)")

    def objective(trial) -> float:
        overrides = protocol_space(protocol, trial)
        cfg = apply_overrides(base, overrides)

        def fit(tracker):
            def report(epoch: int, logs: dict[str, float]) -> None:
                if tracker is not None:
                    tracker.log_metrics(logs, step=epoch)
                trial.report(logs["val_macro_auroc"], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            return evaluator.fit(td, protocol, seed, eval_cfg=cfg, on_epoch=report)

        return _tracked_trial(f"{name}/trial-{trial.number}", trial, overrides, fit, tracking, echo)

    return _run_missing_trials(study, objective, trials, echo=echo)


def tune_pretraining(
    method: str,
    td,
    trials: int,
    make_evaluator: Callable[[list[str]], Any],
    *,
    name: str,
    storage: str | None = None,
    seed: int = 0,
    tracking: Callable[[str], Any] | None = None,
    echo: Callable[[str], None] = print,
):
    """Tune ``method``'s pre-training hyperparameters (its ``search_space``).

    ``make_evaluator(overrides)`` pre-trains with the ``--set`` style overrides (or reuses a
    finished run) and returns an evaluator; the objective is its linear probe's validation macro
    AUROC on ``td``.
    """
    from bench.method import METHODS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cls = METHODS.get(method)
    study = _open_study(name, storage, seed, warmup_epochs=0)

    def objective(trial) -> float:
        overrides = cls.search_space(trial)
        items = [f"{k}={_text(v)}" for k, v in overrides.items()]
        trial.set_user_attr("overrides", items)  # --set items (search params may be derived)

        def fit(tracker):
            evaluator = make_evaluator(items)
            result = evaluator.fit(td, "linear", seed)
            trial.set_user_attr("run_id", evaluator.subject.run_id)
            return result

        return _tracked_trial(f"{name}/trial-{trial.number}", trial, overrides, fit, tracking, echo)

    return _run_missing_trials(study, objective, trials, echo=echo)


def _tracked_trial(run_name: str, trial, overrides: dict, fit, tracking, echo) -> float:
    """One trial's objective: ``fit(tracker)`` inside the trial's tracked run (its overrides
    and the objective logged there), one line echoed; the validation macro AUROC."""
    with tracking(run_name) if tracking else _null() as tracker:
        if tracker is not None:
            tracker.log_params({"trial": trial.number, **overrides})
        result = fit(tracker)
        if tracker is not None:
            tracker.log_metrics({"objective_val_macro_auroc": result.val_macro_auroc})
    echo(f"trial {trial.number}: val macro AUROC {result.val_macro_auroc:.4f} {overrides}")
    return result.val_macro_auroc


def tuned_eval_config(
    base: EvalConfig, run_id: str, task: str, protocol: str, storage: str | None = None
) -> tuple[EvalConfig, dict]:
    """``base`` with the best parameters of the matching study, and their provenance."""
    name = protocol_study_name(run_id, task, protocol, base)
    try:
        study = optuna.load_study(study_name=name, storage=_storage(storage))
        best = study.best_trial
    except (KeyError, ValueError):
        raise BenchError(
            f"no finished tuning study {name!r} in {shown_url(storage_url(storage))}",
            hint=f"run `bench tune --task {task} --protocol {protocol} ...` with the same "
            "method, preset and --set/--eval-set values first",
        ) from None
    cfg = apply_overrides(base, dict(best.params))
    return cfg, {
        "study": name,
        "trial": best.number,
        "params": dict(best.params),
        "val_macro_auroc": best.value,
    }


def _text(value: Any) -> str:
    """A ``--set`` value: tuples as comma lists."""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
