"""``bench pretrain``: pre-train one SSL method."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.common import (
    data_dir_option,
    make_engine,
    open_dataset,
    precision_option,
    skip_bad_option,
)
from bench.errors import BenchError


@click.command("pretrain", short_help="Pre-train one SSL method on the training folds (1-8)")
@click.option("--method", required=True, help="a registered method (see `bench methods`)")
@click.option(
    "--encoder",
    default=None,
    help="encoder size: tiny (tests), xs, s, b (default: the preset's / paper's)",
)
@click.option("--preset", default="cpu", show_default=True, help="smoke | cpu | gpu | paper")
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
    from bench.train import pretrain, resolve_config

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
    engine = make_engine(
        device, precision, workers, no_mlflow, tracking_uri, no_progress,
        compile=compile_, checkpoint_every=checkpoint_every,
    )  # fmt: skip
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
