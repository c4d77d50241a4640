"""The ``bench`` command line.

Start-up must stay well under a second: only click is imported at module level; numpy, pandas,
torch, wfdb, mlflow ... are imported inside the commands that need them.
"""

from __future__ import annotations

import errno
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from bench.errors import BenchError

DATA_DIR_HELP = (
    "PTB-XL directory (default: $PTBXL_DIR; without either, the embedded synthetic dataset)"
)


def data_dir_option(f):
    return click.option(
        "--data-dir", type=click.Path(path_type=Path), default=None, help=DATA_DIR_HELP
    )(f)


def skip_bad_option(f):
    return click.option(
        "--skip-bad",
        is_flag=True,
        help="skip records or metadata rows that fail validation (counted, never silent)",
    )(f)


def precision_option(f):
    return click.option(
        "--precision",
        type=click.Choice(["auto", "bf16", "fp32"]),
        default="auto",
        show_default=True,
        help="auto: bf16 where the device computes it natively (CUDA compute capability 8+, CPUs "
        "with AVX512-BF16 or AMX), fp32 elsewhere",
    )(f)


def open_dataset(data_dir: Path | None, skip_bad: bool = False, quiet: bool = False):
    """The PTB-XL dataset to use: ``--data-dir``, else ``$PTBXL_DIR``, else the embedded synthetic
    one (generated on first use under the results directory)."""
    from bench.data.ptbxl import PTBXL, resolve_data_dir

    root = resolve_data_dir(data_dir)
    if root is None:
        from bench.data.synthetic import generate_synthetic_ptbxl
        from bench.paths import synthetic_dir

        root = synthetic_dir()
        if not quiet:
            click.echo(
                f"note: no PTB-XL directory given (--data-dir or $PTBXL_DIR): using the embedded "
                f"SYNTHETIC dataset at {root}",
                err=True,
            )
        generate_synthetic_ptbxl(root, progress=not quiet)
    dataset = PTBXL(root, skip_bad=skip_bad)
    return dataset


def report_skipped(dataset) -> None:
    if dataset.skipped:
        from bench.data.ptbxl import format_bad_records

        click.echo(
            f"skipped {len(dataset.skipped)} bad metadata rows (--skip-bad): {format_bad_records(dataset.skipped)}",
            err=True,
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ecg-ssl-bench", prog_name="bench")
def cli() -> None:
    """Benchmark harness for self-supervised learning on 12-lead ECG (PTB-XL)."""


# --------------------------------------------------------------------------- data
@cli.group()
def data() -> None:
    """Download, generate, cache and inspect datasets."""


@data.command("download")
@click.argument("dataset", type=click.Choice(["ptbxl"]))
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    required=True,
    help="directory to create (needs ~1.7 GB for the zip plus ~3 GB extracted)",
)
@click.option("--url", default=None, help="zip URL (default: the PhysioNet v1.0.3 release)")
@click.option(
    "--sums-url", default=None, help="SHA256SUMS.txt URL (default: the release's published list)"
)
@click.option(
    "--sums-from-zip",
    is_flag=True,
    help="verify against the SHA256SUMS.txt inside the zip (detects corruption only)",
)
@click.option("--keep-zip", is_flag=True, help="keep the downloaded zip next to --dest")
@click.option("--no-progress", is_flag=True)
def data_download(dataset, dest, url, sums_url, sums_from_zip, keep_zip, no_progress) -> None:
    """Download PTB-XL: resumable, SHA-256 verified, extracted atomically."""
    from filelock import FileLock

    from bench.data import download

    kwargs = {"progress": not no_progress, "keep_zip": keep_zip}
    if url:
        kwargs["url"] = url
    if sums_from_zip:
        kwargs["sums_url"] = None
    elif sums_url:
        kwargs["sums_url"] = sums_url
    dest = dest.expanduser().resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Two downloads into one --dest would share a .part file: serialise them.
    with FileLock(str(dest.parent / f".{dest.name}.download.lock")):
        root = download.download_ptbxl(dest, **kwargs)
    click.echo(
        f"PTB-XL v{download.PTBXL_VERSION} ready at {root}\nnext: bench data prepare --data-dir {root}"
    )


@data.command("synthetic")
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=None,
    help="directory to create (default: results/data/synthetic)",
)
@click.option(
    "--n",
    "n",
    type=click.IntRange(min=10),
    default=3000,
    show_default=True,
    help="number of records",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="processes (default: all cores)"
)
@click.option("--no-progress", is_flag=True)
def data_synthetic(
    dest: Path | None, n: int, seed: int, workers: int | None, no_progress: bool
) -> None:
    """Generate the synthetic PTB-XL-shaped dataset (same layout as the release)."""
    from bench.data.synthetic import generate_synthetic_ptbxl
    from bench.paths import synthetic_dir

    dest = dest or synthetic_dir()
    started = time.time()
    root = generate_synthetic_ptbxl(dest, n=n, seed=seed, workers=workers, progress=not no_progress)
    click.echo(
        f"SYNTHETIC dataset of {n} records (seed {seed}) at {root} ({time.time() - started:.1f} s)"
    )


@data.command("prepare")
@data_dir_option
@click.option(
    "--rate",
    "rates",
    type=click.IntRange(min=1),
    multiple=True,
    help="sampling rate(s) to cache in Hz (default: 100)",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="processes (default: all cores)"
)
@skip_bad_option
@click.option("--force", is_flag=True, help="rebuild even when the cache is up to date")
@click.option("--no-progress", is_flag=True)
def data_prepare(data_dir, rates, workers, skip_bad, force, no_progress) -> None:
    """Convert WFDB records once into a memory-mapped cache per sampling rate."""
    from bench.data.cache import cache_state, prepare_cache

    dataset = open_dataset(data_dir, skip_bad=skip_bad, quiet=no_progress)
    report_skipped(dataset)
    for rate in rates or (100,):
        state = (
            "rebuilt"
            if force
            else {"ready": "up to date", "stale": "rebuilt (source changed)", "missing": "built"}[
                cache_state(dataset, rate)
            ]
        )
        cache = prepare_cache(
            dataset, rate, workers=workers, skip_bad=skip_bad, progress=not no_progress, force=force
        )
        m = cache.manifest
        src = f" (resampled from {m['source_rate']} Hz)" if m["resampled"] else ""
        click.echo(
            f"{rate} Hz cache {state}: {m['shape'][0]} records x 12 leads x {m['shape'][2]} samples{src} at {cache.path}"
        )
        if m["skipped"]:
            from bench.data.ptbxl import format_bad_records

            skipped = {int(k): v for k, v in m["skipped"].items()}
            click.echo(
                f"  skipped {len(skipped)} bad records (--skip-bad): {format_bad_records(skipped, limit=5)}",
                err=True,
            )


@data.command("info")
@data_dir_option
@skip_bad_option
def data_info(data_dir, skip_bad) -> None:
    """Records per fold, sampling rates available, and cache state."""
    from bench.data.cache import cache_path, cache_state

    dataset = open_dataset(data_dir, skip_bad=skip_bad)
    report_skipped(dataset)
    meta = dataset.metadata
    click.echo(f"dataset: {dataset.name}{'  [SYNTHETIC]' if dataset.is_synthetic else ''}")
    click.echo(f"root:    {dataset.root}")
    click.echo(f"records: {len(meta)} from {meta['patient_id'].nunique()} patients")
    folds = meta["strat_fold"].value_counts().sort_index()
    click.echo("fold     " + " ".join(f"{f:>5d}" for f in folds.index))
    click.echo("records  " + " ".join(f"{n:>5d}" for n in folds.values))
    for rate in dataset.native_rates():
        column = "filename_lr" if rate == 100 else "filename_hr"
        present = sum((dataset.root / f"{name}.hea").is_file() for name in meta[column])
        click.echo(f"{rate} Hz records on disk: {present} of {len(meta)}")
    for rate in (100, 250, 500):
        click.echo(
            f"cache {rate:>3d} Hz: {cache_state(dataset, rate):8s} {cache_path(dataset, rate)}"
        )


@data.command("benchmark")
@data_dir_option
@click.option("--rate", type=int, default=100, show_default=True)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="time at most this many wfdb reads"
)
def data_benchmark(data_dir, rate, limit) -> None:
    """Time reading the training split: memory-mapped cache vs per-record wfdb reads."""
    from bench.data.benchmark import benchmark_training_read

    dataset = open_dataset(data_dir)
    for line in benchmark_training_read(dataset, rate, limit=limit):
        click.echo(line)


# --------------------------------------------------------------------------- tasks
@cli.command("tasks")
@data_dir_option
@click.option(
    "--task",
    "selection",
    default=None,
    help="'all' (the four benchmark tasks), names, or comma lists (default: every task)",
)
@click.option("--labels/--no-labels", default=True, help="print each task's label names")
@skip_bad_option
def tasks_command(data_dir, selection, labels, skip_bad) -> None:
    """Each task's labels and train / val / test record counts on the chosen dataset."""
    from bench.task import TASKS, resolve_tasks

    specs = resolve_tasks(selection) if selection else [TASKS.get(n) for n in TASKS.names()]
    dataset = open_dataset(data_dir, skip_bad=skip_bad)
    report_skipped(dataset)
    click.echo(f"dataset: {dataset.name}{'  [SYNTHETIC]' if dataset.is_synthetic else ''}")
    click.echo(
        f"{'task':16s} {'labels':>6s} {'records':>7s} {'train':>6s} {'val':>5s} {'test':>5s}"
    )
    for spec in specs:
        td = spec.build(dataset)
        c = td.counts()
        click.echo(
            f"{spec.name:16s} {len(td.classes):>6d} {len(td.ecg_ids):>7d} {c['train']:>6d} {c['val']:>5d} {c['test']:>5d}"
        )
        if labels:
            click.echo("    " + " ".join(td.classes))


# --------------------------------------------------------------------------- pre-training
@cli.command("pretrain")
@click.option("--method", required=True, help="a registered method (see `bench methods`)")
@click.option(
    "--encoder",
    default=None,
    help="encoder size: tiny (tests), xs, s, b (default: the preset's / paper's)",
)
@click.option("--preset", default="cpu", show_default=True, help="smoke | cpu | paper")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a config field, e.g. optim.lr=5e-4 (repeatable)",
)
@data_dir_option
@click.option(
    "--extra-data",
    "extra_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="a directory of WFDB records (any rate, length, lead order) added to pre-training; repeatable",
)
@skip_bad_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@precision_option
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="DataLoader worker processes",
)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--resume", is_flag=True, help="continue the run with the same config from its last checkpoint"
)
@click.option(
    "--force", is_flag=True, help="train again even if a finished run with the same config exists"
)
@click.option("--no-mlflow", is_flag=True, help="do not log to MLflow")
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking server (default: $MLFLOW_TRACKING_URI or results/mlflow.db)",
)
@click.option("--no-progress", is_flag=True)
def pretrain_command(
    method,
    encoder,
    preset,
    overrides,
    data_dir,
    extra_dirs,
    skip_bad,
    device,
    precision,
    compile_,
    workers,
    checkpoint_every,
    resume,
    force,
    no_mlflow,
    tracking_uri,
    no_progress,
) -> None:
    """Pre-train one SSL method on the training folds (1-8), plus any --extra-data corpora."""
    from bench.evaluate.subjects import REFERENCES

    if method in REFERENCES:
        raise BenchError(
            f"{method} is a reference row without pre-training",
            hint=f"evaluate it with: bench run --method {method}",
        )
    from bench.data.cache import prepare_cache
    from bench.data.corpus import prepare_corpus
    from bench.train import EngineConfig, pretrain, resolve_config, with_resolved_precision

    cfg = resolve_config(method, preset, overrides, encoder)
    dataset = open_dataset(data_dir, skip_bad=skip_bad, quiet=no_progress)
    cache = prepare_cache(dataset, cfg.data.rate, skip_bad=skip_bad, progress=not no_progress)
    extra = [prepare_corpus(d, cfg.data.rate, progress=not no_progress) for d in extra_dirs]
    for corpus in extra:
        m = corpus.manifest
        click.echo(
            f"extra corpus {m['dataset_root']}: {m['shape'][0]} segments of 10 s from {m['records']} records"
            + (
                f" ({len(m['skipped'])} records skipped: see {corpus.path / 'manifest.json'})"
                if m["skipped"]
                else ""
            )
        )
    engine = with_resolved_precision(EngineConfig(
        device=device,
        precision=precision,
        compile=compile_,
        workers=workers,
        checkpoint_every=checkpoint_every,
        mlflow=not no_mlflow,
        tracking_uri=tracking_uri,
        progress=not no_progress,
    ), lambda line: click.echo(line, err=True))  # fmt: skip
    result = pretrain(method, cfg, dataset, cache, engine, resume=resume, force=force, extra=extra)
    losses = result.losses
    tenth = max(1, len(losses) // 10)
    loss = f"loss {sum(losses[:tenth]) / tenth:.4f} -> {sum(losses[-tenth:]) / tenth:.4f} (mean of first / last 10 %)"
    what = f"{method} ({cfg.encoder.size}, preset {preset}) on {dataset.name}"
    what += "  [SYNTHETIC data]" if dataset.is_synthetic else ""
    if result.reused:
        click.echo(
            f"{what}: a finished run with this exact config and data exists, reused ({result.steps} steps; {loss}); --force trains again"
        )
    else:
        resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
        click.echo(
            f"{what}: {result.steps} steps in {result.wall_seconds:.1f} s, {result.samples_per_second:.1f} samples/s{resumed}; {loss}"
        )
    click.echo(f"checkpoint: {result.final_checkpoint}")


# --------------------------------------------------------------------------- evaluation
def engine_options(f):
    """Options shared by the commands that train (device, precision, tracking, progress)."""
    options = [
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N"),
        precision_option,
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            default=2,
            show_default=True,
            help="DataLoader worker processes for pre-training",
        ),
        click.option("--no-mlflow", is_flag=True, help="do not log to MLflow"),
        click.option(
            "--tracking-uri",
            default=None,
            help="MLflow tracking server (default: $MLFLOW_TRACKING_URI or results/mlflow.db)",
        ),
        click.option("--no-progress", is_flag=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def set_options(f):
    f = click.option(
        "--eval-set",
        "eval_overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="override a protocol setting, e.g. finetune.epochs=10 (see `bench protocols`)",
    )(f)
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="override a method config field, e.g. optim.lr=5e-4 (repeatable)",
    )(f)


def _engine(device, precision, workers, no_mlflow, tracking_uri, no_progress):
    """The engine options, the precision resolved for the device (and the choice printed)."""
    from bench.train import EngineConfig, with_resolved_precision

    engine = EngineConfig(
        device=device,
        precision=precision,
        workers=workers,
        mlflow=not no_mlflow,
        tracking_uri=tracking_uri,
        progress=not no_progress,
    )
    return with_resolved_precision(engine, lambda line: click.echo(line, err=True))


def _csv(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _csv_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise BenchError(f"--label-fractions {text!r}: expected numbers like 0.01,0.1,1") from None


@cli.command("run")
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
    help="downstream seeds 0..N-1 per task and protocol (default: 3 with --preset paper, else 1)",
)
@click.option(
    "--label-fractions",
    default="1",
    show_default=True,
    help="fractions of the training folds, e.g. 0.01,0.1,1",
)
@click.option("--preset", default="cpu", show_default=True, help="smoke | cpu | paper")
@click.option("--encoder", default=None, help="encoder size (default: the preset's / paper's)")
@set_options
@click.option("--tuned", is_flag=True, help="use the best protocol settings found by `bench tune`")
@data_dir_option
@skip_bad_option
@engine_options
def run_command(methods, tasks, protocols, seeds, label_fractions, preset, encoder, overrides, eval_overrides, tuned, data_dir, skip_bad, device, precision, workers, no_mlflow, tracking_uri, no_progress) -> None:  # fmt: skip
    """Pre-train (or reuse), evaluate every task x protocol x seed, update the leaderboard."""
    from bench.evaluate.run import RunPlan, run_benchmark, summary_table
    from bench.evaluate.subjects import method_names
    from bench.task import resolve_tasks

    plan = RunPlan(
        methods=tuple(method_names(methods)),
        tasks=tuple(resolve_tasks(tasks)),
        protocols=tuple(p.strip() for p in protocols.split(",") if p.strip()),
        seeds=seeds or (3 if preset == "paper" else 1),
        fractions=_csv_floats(label_fractions),
        preset=preset,
        encoder=encoder,
        overrides=tuple(overrides),
        eval_overrides=tuple(eval_overrides),
        tuned=tuned,
    )
    from bench.evaluate.config import resolve_eval_config

    resolve_eval_config(preset, eval_overrides)  # bad --eval-set fails before any training
    dataset = open_dataset(data_dir, skip_bad=skip_bad, quiet=no_progress)
    report_skipped(dataset)
    started = time.time()
    engine = _engine(device, precision, workers, no_mlflow, tracking_uri, no_progress)
    records = run_benchmark(plan, dataset, engine, echo=lambda m: click.echo(m, err=True))
    kind = "  [SYNTHETIC data: not a result about real ECG]" if dataset.is_synthetic else ""
    click.echo(f"\ndataset: {dataset.name}{kind}")
    click.echo("test macro AUROC on fold 10, point(CI 5-95 %):")
    click.echo(summary_table(records))
    click.echo(f"wall time: {time.time() - started:.0f} s")


@cli.command("tune")
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
@click.option("--preset", default="cpu", show_default=True, help="smoke | cpu | paper")
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
    engine = _engine(device, precision, workers, no_mlflow, tracking_uri, no_progress)
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
    click.echo(f"study {study.study_name} in {tuning.storage_url(storage)}")
    click.echo(
        f"trials: {len(study.trials)}; best #{best.number}: validation macro AUROC {best.value:.4f}"
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


@cli.command("report")
@click.option(
    "--results",
    "results",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="results directory holding records/ and pretrain/ (default: $BENCH_RESULTS_DIR or results/)",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="where the leaderboard goes (default: <results>/leaderboard)",
)
@click.option("--no-figures", is_flag=True, help="tables only (csv, md, html without figures)")
def report_command(results, out, no_figures) -> None:
    """Write the leaderboard (csv, md, html, figures) from the run records, per dataset."""
    from bench.paths import results_dir
    from bench.report.build import write_report
    from bench.results import RecordStore

    root = results.resolve() if results else results_dir()
    store = RecordStore(root / "records")
    records = store.records()
    for path in store.last_skipped:
        click.echo(f"skipped an incomplete or corrupt record: {path}", err=True)
    if not records:
        raise BenchError(
            f"no complete run records under {root / 'records'}",
            hint="run `bench run --method <method> --task all` first, or pass --results DIR",
        )
    written = write_report(
        records,
        root=out or root / "leaderboard",
        pretrain_root=root / "pretrain",
        figures=not no_figures,
        echo=click.echo,
    )
    click.echo(f"{len(records)} records -> {len(written)} leaderboard(s); open leaderboard.html")


@cli.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--task", required=True, help="a task name (see `bench tasks`)")
@click.option("--protocol", default="linear", show_default=True)
@click.option("--label-fraction", type=float, default=1.0, show_default=True)
@click.option("--resamples", type=click.IntRange(min=100), default=1000, show_default=True)
@click.option("--confidence", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the resampling")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def compare_command(a, b, task, protocol, label_fraction, resamples, confidence, seed, as_json):
    """Does A beat B? Paired bootstrap of the test macro AUROC difference.

    A and B are method names (or pre-training run ids) with records for the task and protocol.
    """
    import json

    from bench.report.compare import compare_subjects, format_comparison
    from bench.results import RecordStore

    result = compare_subjects(
        RecordStore(), a, b, task, protocol, label_fraction, resamples, seed, confidence
    )
    click.echo(json.dumps(result, indent=2) if as_json else format_comparison(result))


@cli.command("perf")
@click.option(
    "--method",
    "methods",
    default="all",
    show_default=True,
    help="method(s), comma-separated, or 'all'",
)
@click.option(
    "--encoder",
    "encoders",
    default="xs,s",
    show_default=True,
    help="encoder sizes, comma-separated ('paper': each method's own)",
)
@click.option(
    "--preset",
    default="paper",
    show_default=True,
    help="config the cases start from (paper: the published token layout)",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a config field of every case (repeatable)",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--steps", type=click.IntRange(min=1), default=5, show_default=True, help="timed steps per case"
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="untimed steps per case before timing",
)
@click.option(
    "--precision",
    "precisions",
    default="auto",
    show_default=True,
    help="engine precisions, comma-separated: fp32, bf16; auto = fp32, plus bf16 where the "
    "device computes it natively",
)
@click.option(
    "--no-straightforward",
    is_flag=True,
    help="skip the straightforward reference (no speed-up column)",
)
@click.option(
    "--scaling",
    "scaling_method",
    default=None,
    metavar="METHOD",
    help="also sweep tokens, batch and encoder size for this method (in the precision auto picks)",
)
@click.option("--no-projection", is_flag=True, help="skip the paper-preset projection")
@click.option(
    "--probe",
    is_flag=True,
    help="instead: time linear probing of the four tasks from cached features (--preset cpu)",
)
@data_dir_option
@skip_bad_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option(
    "--attention",
    type=click.Choice(["auto", "fused", "matmul"]),
    default="auto",
    show_default=True,
    help="attention kernel of the engine rows",
)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the engine rows")
@click.option(
    "--profile",
    "profile_steps",
    is_flag=True,
    help="also profile two steps of each engine row: operators per step and the costliest; on "
    "CUDA kernel launches, host syncs and device busy time per step",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="DataLoader worker processes (the engine's default)",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="where perf-<time>.json/.md go (default: <results>/perf)",
)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=None, help="seconds allowed per case"
)
@click.option(
    "--repeat",
    "repeats",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="measure every case this many times, round-robin; rows show the median run's share "
    "of peak and the range (for a machine whose speed drifts)",
)
def perf_command(
    methods, encoders, preset, overrides, batch_size, steps, warmup, precisions,
    no_straightforward, scaling_method, no_projection, probe, data_dir, skip_bad, device,
    attention, compile_, profile_steps, workers, out, timeout, repeats,
) -> None:  # fmt: skip
    """Samples/s, FLOP/s against the measured matmul peak, memory and data wait of a full
    pre-training step, per method x encoder x precision, against a straightforward version.

    With --probe: seconds of linear probing of the four tasks from cached features, against the
    straightforward probe."""
    if probe:
        _perf_probe(data_dir, skip_bad, preset, encoders, device, out)
        return
    from bench.method import METHODS
    from bench.paths import results_dir
    from bench.perf import suite
    from bench.perf.measure import Case
    from bench.train import resolve_device

    names = list(METHODS.names()) if methods == "all" else _csv(methods)
    if scaling_method:
        suite.check_methods([scaling_method])
    suite.check_methods(names)
    sizes = [None if e == "paper" else e for e in _csv(encoders)]
    torch_device = resolve_device(device)
    precision_list = suite.default_precisions(precisions, torch_device)
    root = results_dir()
    base = Case(
        method=names[0], encoder=sizes[0], precision=precision_list[0], impl="engine",
        batch_size=batch_size, data_root="", cache_root="", preset=preset,
        overrides=tuple(overrides), steps=steps, warmup=warmup, device=str(torch_device),
        attention=attention, compile=compile_, workers=workers, skip_bad=skip_bad,
        profile=profile_steps,
    )  # fmt: skip
    cases = suite.benchmark_cases(names, sizes, base, precision_list, not no_straightforward)
    # the sweep runs in the precision `--precision auto` would train in on this device
    best = "bf16" if "bf16" in suite.default_precisions("auto", torch_device) else "fp32"
    sweep = suite.scaling_cases(scaling_method, base, best) if scaling_method else []
    rates = [c.config().data.rate for c in [*cases, *sweep]]  # also validates every config
    data_root, cache_root, dataset_name = suite.prepare_data(data_dir, rates, root, skip_bad)
    cases = [replace(c, data_root=str(data_root), cache_root=str(cache_root)) for c in cases]
    sweep = [replace(c, data_root=str(data_root), cache_root=str(cache_root)) for c in sweep]

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    env = suite.environment(str(torch_device))
    click.echo(
        f"{env['machine']}; torch {env['torch']}, {env['threads']} threads; data: {dataset_name}"
    )
    peak = suite.measure_peaks(torch_device, precision_list)
    for line in suite.peak_lines(peak):
        click.echo(line)
    click.echo(suite.PEAK_NOTE)
    click.echo(
        f"{len(cases) + len(sweep)} cases, {steps} timed steps each after {warmup} warm-up steps"
        + (f", {repeats} runs of each, round-robin" if repeats > 1 else "")
    )
    click.echo("  ".join(suite.ROW_HEADER))

    def echo(row: dict) -> None:
        click.echo("  ".join(suite.row_cells(row)))

    rows = suite.measure_all(cases, peak, echo, timeout, repeats)
    scaling = suite.measure_all(sweep, peak, echo, timeout, repeats) if sweep else []
    projection = [] if no_projection else suite.paper_projection(names, rows)
    report = {
        "started": started, "environment": env, "dataset": dataset_name, "steps": steps,
        "warmup": warmup, "repeats": repeats, "peak": peak, "rows": rows, "scaling": scaling,
        "projection": projection,
    }  # fmt: skip
    click.echo("")
    click.echo(suite.text_table(suite.ROW_HEADER, [suite.row_cells(r) for r in rows]))
    if suite.profile_rows(rows):
        click.echo("\nwhere the step time goes (torch.profiler):")
        click.echo(suite.text_table(suite.PROFILE_HEADER, suite.profile_rows(rows)))
    if scaling:
        click.echo("\nscaling:")
        click.echo(suite.text_table(suite.ROW_HEADER, [suite.row_cells(r) for r in scaling]))
    if projection:
        click.echo("\nprojected pre-training time of the paper preset (FLOPs counted):")
        click.echo(
            suite.text_table(
                suite.PROJECTION_HEADER, [suite.projection_cells(p) for p in projection]
            )
        )
    json_path, md_path = suite.write_report(report, out or root / "perf")
    click.echo(f"\nwrote {json_path} and {md_path}")


def _perf_probe(data_dir, skip_bad, preset, encoders, device, out) -> None:
    import json

    from bench.paths import results_dir
    from bench.perf.probe import probe_benchmark
    from bench.report.build import atomic_write
    from bench.task import BENCHMARK_TASKS
    from bench.train import resolve_device

    dataset = open_dataset(data_dir, skip_bad=skip_bad)
    sizes = _csv(encoders)
    preset = "cpu" if preset == "paper" else preset  # probing a paper-size encoder on a CPU: no
    encoder = None if sizes == ["paper"] else sizes[0]
    result = probe_benchmark(
        dataset, BENCHMARK_TASKS, preset, encoder, resolve_device(device), echo=click.echo,
    )  # fmt: skip
    out_dir = out or results_dir() / "perf"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("probe-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ".json")
    atomic_write(path, json.dumps(result, indent=1))
    click.echo(f"wrote {path}")


@cli.command("reproduce")
@click.argument("record", type=click.Path(path_type=Path))
@data_dir_option
@skip_bad_option
@click.option(
    "--pretrain",
    "re_pretrain",
    is_flag=True,
    help="re-run the pre-training too (default: reuse the record's checkpoint)",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="largest absolute difference accepted on every compared number",
)
@click.option("--device", default=None, help="default: the record's device (else the CPU)")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="DataLoader worker processes for a re-run pre-training",
)
@click.option("--keep", is_flag=True, help="keep the temporary results directory of the re-run")
@click.option("--no-progress", is_flag=True)
def reproduce_command(record, data_dir, skip_bad, re_pretrain, tolerance, device, workers, keep, no_progress) -> None:  # fmt: skip
    """Re-run a run record's exact evaluation and report any difference (exit 1 if any).

    RECORD is a record's .json under results/records/. The re-run goes to a temporary results
    directory; the original record, features and pre-training run are only read.
    """
    from bench.reproduce import format_report, reproduce

    dataset = open_dataset(data_dir, skip_bad=skip_bad, quiet=no_progress)
    report_skipped(dataset)
    result = reproduce(
        record, dataset, pretrain=re_pretrain, tolerance=tolerance, device=device,
        workers=workers, keep=keep, progress=not no_progress,
        echo=lambda m: click.echo(m, err=True),
    )  # fmt: skip
    click.echo(format_report(result))
    if result.differences:
        sys.exit(1)


@cli.command("protocols")
@click.option("--preset", default=None, help="show the values a preset gives")
def protocols_command(preset) -> None:
    """The downstream protocols and every --eval-set key with its value."""
    from bench.config import flat_keys
    from bench.evaluate.config import PROTOCOLS, resolve_eval_config

    cfg = resolve_eval_config(preset)
    click.echo("protocols: " + ", ".join(PROTOCOLS))
    for key in flat_keys(cfg):
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        click.echo(f"  {key} = {value}")


@cli.command("ui")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="bind address (127.0.0.1 keeps it private)",
)
@click.option(
    "--tracking-uri",
    default=None,
    help="store to browse (default: $MLFLOW_TRACKING_URI or results/mlflow.db)",
)
@click.option("--print-command", is_flag=True, help="print the command instead of starting it")
def ui_command(port, host, tracking_uri, print_command) -> None:
    """Start the MLflow UI on the harness's tracking store (bound to 127.0.0.1 by default)."""
    import os
    import shlex
    import subprocess

    from bench.tracking import ui_command_line

    argv = ui_command_line(host, port, tracking_uri)
    if print_command:
        click.echo(shlex.join(argv))
        return
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: the MLflow UI will be reachable from other machines on {host}", err=True
        )
    click.echo(f"MLflow UI at http://{host}:{port} (Ctrl-C to stop)", err=True)
    sys.exit(subprocess.call(argv, env=os.environ.copy()))


@cli.command("methods")
def methods_command() -> None:
    """List the registered SSL methods and their paper defaults."""
    from bench.evaluate.subjects import REFERENCE_PROTOCOLS
    from bench.method import METHODS

    for name in METHODS.names():
        cls = METHODS.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        click.echo(f"{name:12s} {doc}")
    for name, protocols in REFERENCE_PROTOCOLS.items():
        what = (
            "randomly initialised encoder"
            if name == "random"
            else "encoder trained from scratch on the task"
        )
        click.echo(f"{name:12s} reference row: {what} ({', '.join(protocols)})")


# errno values of a failed write the user can fix: disk full, file too large (a quota or
# RLIMIT_FSIZE), read-only file system, permission denied, operation not permitted (immutable).
_STORAGE_ERRNOS = {
    errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print a message and hint, not a traceback."""
    try:
        cli.main(args=argv, prog_name="bench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BenchError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(
            "interrupted: nothing half-written was kept; run the same command again to continue",
            err=True,
        )
        sys.exit(130)
    except OSError as exc:
        # A full disk, a file-size limit or a read-only / unwritable results directory: every
        # writer publishes through a temporary file and a rename, so what exists is whole.
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        click.echo(f"error: {storage_error_message(exc)}", err=True)
        click.echo(
            "  hint: free disk space, or choose a writable results directory "
            "(BENCH_RESULTS_DIR=DIR); nothing half-written was kept, and the same command "
            "continues where it stopped",
            err=True,
        )
        sys.exit(1)
    except Exception as exc:
        # The same failure inside a SQLite store (MLflow's or Optuna's) arrives as
        # sqlite3.OperationalError wrapped by SQLAlchemy / MLflow, not as an OSError.
        reason = sqlite_storage_failure(exc)
        if reason is None:
            raise
        click.echo(f"error: cannot write a SQLite store (MLflow or Optuna): {reason}", err=True)
        click.echo(
            "  hint: free disk space, or choose a writable results directory "
            "(BENCH_RESULTS_DIR=DIR) or store (--tracking-uri / --storage); a new store is "
            "created whole or not at all, and the same command continues where it stopped",
            err=True,
        )
        sys.exit(1)


# What SQLite reports when it cannot write its file: ENOSPC, EFBIG (a quota or RLIMIT_FSIZE),
# EROFS / EACCES.
_SQLITE_WRITE_FAILURES = (
    "database or disk is full",
    "disk i/o error",
    "attempt to write a readonly database",
    "unable to open database file",
)


def sqlite_storage_failure(exc: BaseException) -> str | None:
    """SQLite's message if ``exc`` is, or was caused by, a failed write of a SQLite file."""
    import sqlite3

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error):
            message = str(current)
            if message.lower() in _SQLITE_WRITE_FAILURES:
                return message
        current = current.__cause__ or current.__context__
    return None


def storage_error_message(exc: OSError) -> str:
    """``cannot write <path>: <reason> (<ERRNO>)`` for a failed write."""
    import os

    from bench.paths import results_dir

    where = exc.filename or f"under {results_dir()}"
    reason = exc.strerror or os.strerror(exc.errno)
    return f"cannot write {where}: {reason} ({errno.errorcode.get(exc.errno, exc.errno)})"


if __name__ == "__main__":
    main()
