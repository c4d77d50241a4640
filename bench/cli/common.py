"""What the command modules share: the common options, opening the dataset, the engine options
and comma-separated values. Imports only click at module level (``bench --help`` stays fast).
"""

from __future__ import annotations

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


def make_engine(device, precision, workers, no_mlflow, tracking_uri, no_progress, **more):
    """The engine options (``more``: other :class:`bench.train.EngineConfig` fields), the
    precision resolved for the device (and the choice printed)."""
    from bench.train import EngineConfig, with_resolved_precision

    engine = EngineConfig(
        device=device,
        precision=precision,
        workers=workers,
        mlflow=not no_mlflow,
        tracking_uri=tracking_uri,
        progress=not no_progress,
        **more,
    )
    return with_resolved_precision(engine, lambda line: click.echo(line, err=True))


def csv_items(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def csv_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise BenchError(f"--label-fractions {text!r}: expected numbers like 0.01,0.1,1") from None
