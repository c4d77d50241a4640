"""``bench data``: download, generate, cache and inspect datasets."""

from __future__ import annotations

import time
from pathlib import Path

import click

from bench.cli.common import data_dir_option, open_dataset, report_skipped, skip_bad_option


@click.group(short_help="Download, generate, cache and inspect datasets")
def data() -> None:
    """Download, generate, cache and inspect datasets."""


@data.command("download", short_help="Download PTB-XL from PhysioNet, SHA-256 verified")
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


@data.command("synthetic", short_help="Generate the embedded synthetic dataset in PTB-XL's layout")
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


@data.command("prepare", short_help="Cache WFDB records as one memory-mapped array per rate")
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
    labels = {
        "ready": "up to date",
        "stale": "rebuilt (source changed)",
        "missing": "built",
        "outdated": "rebuilt (older cache format)",
    }
    for rate in rates or (100,):
        # the first check of a dataset hashes its files (then remembered): show that progress
        state = "rebuilt" if force else labels[cache_state(dataset, rate, progress=not no_progress)]
        cache = prepare_cache(
            dataset, rate, workers=workers, skip_bad=skip_bad, progress=not no_progress, force=force
        )
        m = cache.manifest
        if state == labels["outdated"] and "upgraded_from" in m:
            state = "upgraded to a content fingerprint (source unchanged, not rebuilt)"
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


@data.command("info", short_help="Records per fold, sampling rates on disk and cache state")
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


@data.command("benchmark", short_help="Time reading the training split: cache vs per-record WFDB")
@data_dir_option
@click.option("--rate", type=int, default=100, show_default=True)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="time at most this many wfdb reads"
)
@click.option(
    "--identity",
    is_flag=True,
    help="instead: time the content fingerprint (first-time hashing, warm check) per rate and "
    "project it on the full release",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="hashing threads (--identity)"
)
def data_benchmark(data_dir, rate, limit, identity, threads) -> None:
    """Time reading the training split: memory-mapped cache vs per-record wfdb reads."""
    from bench.data.benchmark import benchmark_identity, benchmark_training_read

    dataset = open_dataset(data_dir)
    lines = (
        benchmark_identity(dataset, threads)
        if identity
        else benchmark_training_read(dataset, rate, limit=limit)
    )
    for line in lines:
        click.echo(line)
