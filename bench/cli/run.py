"""``bench run`` (pre-train or reuse, evaluate, update the leaderboard) and ``bench tune``."""

from __future__ import annotations

import time

import click

from bench.cli.common import (
    csv_floats,
    data_dir_option,
    engine_options,
    make_engine,
    open_dataset,
    report_skipped,
    set_options,
    skip_bad_option,
)
from bench.errors import BenchError


@click.command("run", short_help="Pre-train or reuse, evaluate the grid, update the leaderboard")
@click.option("--method", "methods", required=True, help="method(s), comma-separated, or 'all'")
@click.option(
    "--task",
    "tasks",
    default="all",
    show_default=True,
    help="'all' (the four benchmark tasks) or names",
)
@click.option(
    "--protocol",
    "protocols",
    default="linear,finetune",
    show_default=True,
    help="linear, attentive, finetune (comma-separated)",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=None,
    help="downstream seeds 0..N-1 per task and protocol (default: 3 with --preset gpu or paper, else 1)",
)
@click.option(
    "--label-fractions",
    default="1",
    show_default=True,
    help="fractions of the training folds, e.g. 0.01,0.1,1",
)
@click.option("--preset", default="cpu", show_default=True, help="smoke | cpu | gpu | paper")
@click.option("--encoder", default=None, help="encoder size (default: the preset's / paper's)")
@set_options
@click.option("--tuned", is_flag=True, help="use the best protocol settings found by `bench tune`")
@click.option(
    "--storage",
    default=None,
    help="with --tuned: the Optuna storage URL of `bench tune` (default: $BENCH_OPTUNA_STORAGE "
    "or sqlite results/optuna.db)",
)
@click.option(
    "--budget",
    default=None,
    metavar="FLOPS",
    help="pre-train every SSL method to this many counted training FLOPs (e.g. 1e15) instead "
    "of the preset's steps: compute-matched rows",
)
@click.option(
    "--budget-sweep",
    default=None,
    metavar="FLOPS,...",
    help="pre-train and evaluate every SSL method at each budget (e.g. 1e14,1e15,1e16); the "
    "report draws AUROC against compute per task",
)
@click.option(
    "--shard",
    default=None,
    metavar="K/N",
    help="run only the K-th of N disjoint parts of the grid (a job array: N jobs, same "
    "arguments, one results directory); a pre-training is never split",
)
@data_dir_option
@skip_bad_option
@engine_options
def run_command(methods, tasks, protocols, seeds, label_fractions, preset, encoder, overrides, eval_overrides, tuned, storage, budget, budget_sweep, shard, data_dir, skip_bad, device, precision, workers, no_mlflow, tracking_uri, no_progress) -> None:  # fmt: skip
    """Pre-train (or reuse), evaluate every task x protocol x seed, update the leaderboard."""
    from bench.budget import parse_budgets
    from bench.evaluate.run import RunPlan, run_benchmark, summary_table
    from bench.evaluate.shards import parse_shard
    from bench.evaluate.subjects import method_names
    from bench.task import resolve_tasks

    if budget is not None and budget_sweep is not None:
        raise BenchError("--budget and --budget-sweep are exclusive", hint="use one of them")
    budgets = (
        () if budget is None and budget_sweep is None else parse_budgets(budget or budget_sweep)
    )
    if budget is not None and len(budgets) != 1:
        raise BenchError(f"--budget takes one number, got {budget!r}", hint="or --budget-sweep")

    plan = RunPlan(
        methods=tuple(method_names(methods)),
        tasks=tuple(resolve_tasks(tasks)),
        protocols=tuple(p.strip() for p in protocols.split(",") if p.strip()),
        seeds=seeds or (3 if preset in ("gpu", "paper") else 1),
        fractions=csv_floats(label_fractions),
        preset=preset,
        encoder=encoder,
        overrides=tuple(overrides),
        eval_overrides=tuple(eval_overrides),
        tuned=tuned,
        budgets=budgets,
        shard=parse_shard(shard),
    )
    from bench.evaluate.config import resolve_eval_config

    resolve_eval_config(preset, eval_overrides)  # bad --eval-set fails before any training
    dataset = open_dataset(data_dir, skip_bad=skip_bad, quiet=no_progress)
    report_skipped(dataset)
    started = time.time()
    engine = make_engine(device, precision, workers, no_mlflow, tracking_uri, no_progress)
    records = run_benchmark(
        plan, dataset, engine, echo=lambda m: click.echo(m, err=True), storage=storage
    )
    kind = "  [SYNTHETIC data: not a result about real ECG]" if dataset.is_synthetic else ""
    click.echo(f"\ndataset: {dataset.name}{kind}")
    click.echo("test macro AUROC on fold 10, point(CI 5-95 %):")
    click.echo(summary_table(records))
    click.echo(f"wall time: {time.time() - started:.0f} s")


@click.command("tune", short_help="Tune on the validation fold (9) with Optuna")
@click.option("--method", required=True, help="a registered method or reference row")
@click.option("--task", required=True, help="one task name")
@click.option(
    "--protocol", default="linear", show_default=True, help="linear, attentive or finetune"
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="trials the study should have (a resumed study runs only the missing ones)",
)
@click.option(
    "--pretrain",
    "tune_pretrain",
    is_flag=True,
    help="tune the method's pre-training hyperparameters (objective: linear-probe validation AUROC)",
)
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL (default: $BENCH_OPTUNA_STORAGE or sqlite results/optuna.db)",
)
@click.option("--seed", type=int, default=0, show_default=True, help="sampler and downstream seed")
@click.option("--preset", default="cpu", show_default=True, help="smoke | cpu | gpu | paper")
@click.option("--encoder", default=None, help="encoder size")
@set_options
@data_dir_option
@skip_bad_option
@engine_options
def tune_command(method, task, protocol, trials, tune_pretrain, storage, seed, preset, encoder, overrides, eval_overrides, data_dir, skip_bad, device, precision, workers, no_mlflow, tracking_uri, no_progress) -> None:  # fmt: skip
    """Tune on the validation fold (9) with Optuna; fold 10 is never read."""
    from bench import tuning
    from bench.config import config_hash
    from bench.evaluate.config import check_protocol, resolve_eval_config
    from bench.evaluate.run import RunPlan, prepare_subject
    from bench.evaluate.runner import Evaluator
    from bench.evaluate.subjects import REFERENCES, method_names, subject_config
    from bench.task import TASKS
    from bench.tracking import start_run
    from bench.train import resolve_device

    (name,) = method_names(method)[:1]
    spec = TASKS.get(task)
    check_protocol(protocol)
    base = resolve_eval_config(preset, eval_overrides)
    dataset = open_dataset(data_dir, skip_bad=skip_bad, quiet=no_progress)
    report_skipped(dataset)
    engine = make_engine(device, precision, workers, no_mlflow, tracking_uri, no_progress)
    td = spec.build(dataset)
    echo = lambda m: click.echo(m, err=True)  # noqa: E731

    def evaluator_for(extra: list[str]) -> Evaluator:
        plan = RunPlan(methods=(name,), tasks=(spec,), preset=preset, encoder=encoder,
                       overrides=tuple(overrides) + tuple(extra))  # fmt: skip
        subject, cache = prepare_subject(name, plan, dataset, engine, echo)
        return Evaluator(subject, dataset, cache, base, resolve_device(device), engine.precision,
                         precision_reason=engine.precision_reason)  # fmt: skip

    def tracking(run_name: str):
        return start_run(run_name, enabled=engine.mlflow, uri=tracking_uri, nested=True,
                         tags={"kind": "tuning-trial"})  # fmt: skip

    with start_run(f"bench tune {name} {task} {'pretrain' if tune_pretrain else protocol}",
                   enabled=engine.mlflow, uri=tracking_uri, tags={"kind": "tuning"}) as parent:  # fmt: skip
        if tune_pretrain:
            if name in REFERENCES:
                raise BenchError(f"{name} has no pre-training to tune")
            cfg = subject_config(name, preset, overrides, encoder)
            study_name = f"pretrain/{name}/{task}/{config_hash(cfg)[:8]}"
            study = tuning.tune_pretraining(
                name, td, trials, evaluator_for, name=study_name, storage=storage, seed=seed,
                tracking=tracking, echo=echo,
            )  # fmt: skip
        else:
            study = tuning.tune_protocol(
                evaluator_for([]), td, protocol, trials, base, storage=storage, seed=seed,
                tracking=tracking, echo=echo,
            )  # fmt: skip
        best = study.best_trial
        parent.log_params({"study": study.study_name, "trials": trials,
                           "precision": engine.precision,
                           "precision_reason": engine.precision_reason})  # fmt: skip
        parent.log_metrics({"best_val_macro_auroc": best.value})
    click.echo(f"study {study.study_name} in {tuning.shown_url(tuning.storage_url(storage))}")
    click.echo(
        f"trials: {tuning.finished_trials(study)}; best #{best.number}: validation macro AUROC "
        f"{best.value:.4f}"
    )
    for key, value in best.params.items():
        click.echo(f"  {key} = {value}")
    if not tune_pretrain:
        click.echo(
            f"use them: bench run --method {name} --task {task} --protocol {protocol} --preset {preset} --tuned"
        )
    else:
        sets = " ".join(f"--set {item}" for item in best.user_attrs.get("overrides", []))
        click.echo(f"use them: bench run --method {name} --preset {preset} {sets}")
