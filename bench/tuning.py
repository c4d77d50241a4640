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


def storage_url(url: str | None = None) -> str:
    """``url``, else ``$BENCH_OPTUNA_STORAGE``, else SQLite under the results directory."""
    if url:
        return url
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    path = results_dir() / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _storage(url: str | None):
    # The heartbeat marks trials of killed processes FAILED, so a resumed study re-runs them
    # (optuna flags heartbeats as experimental; the warning is noise for users).
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = storage_url(url)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:///") else {}

    def build(tmp_url: str) -> None:  # a new SQLite store's tables, in a temporary file
        optuna.storages.RDBStorage(tmp_url, engine_kwargs=engine_kwargs).engine.dispose()

    with sqlite_store(url, build):
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=30, grace_period=90, engine_kwargs=engine_kwargs
        )


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


def _run_missing_trials(study, objective, trials: int):
    """Resume: run only the trials still missing for ``trials`` finished (complete or pruned).

    Processes sharing the study stop once it holds ``trials`` finished trials between them
    (checked after each trial, so concurrent ones may add one trial each beyond it).
    """
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = [t for t in study.trials if t.state in finished]
    if len(done) < trials:
        enough = optuna.study.MaxTrialsCallback(trials, states=finished)
        study.optimize(objective, n_trials=trials - len(done), catch=(), callbacks=[enough])
    return study


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

    return _run_missing_trials(study, objective, trials)


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

    return _run_missing_trials(study, objective, trials)


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
        study = optuna.load_study(study_name=name, storage=storage_url(storage))
        best = study.best_trial
    except (KeyError, ValueError):
        raise BenchError(
            f"no finished tuning study {name!r} in {storage_url(storage)}",
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
