"""``bench reproduce``: re-run a record's evaluation and report any difference."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli.common import data_dir_option, open_dataset, report_skipped, skip_bad_option


@click.command(
    "reproduce", short_help="Re-run a run record's configuration and report any difference"
)
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
@click.option(
    "--unchecked-data",
    is_flag=True,
    help="run a record that predates content identity (its data fingerprint hashed file mtimes) "
    "even when the data cannot be checked against it; every difference is reported",
)
@click.option("--no-progress", is_flag=True)
def reproduce_command(record, data_dir, skip_bad, re_pretrain, tolerance, device, workers, keep, unchecked_data, no_progress) -> None:  # fmt: skip
    """Re-run a run record's exact evaluation and report any difference (exit 1 if any).

    RECORD is a record's .json under results/records/. The re-run goes to a temporary results
    directory; the original record, features and pre-training run are only read.
    """
    from bench.reproduce import format_report, reproduce

    dataset = open_dataset(data_dir, skip_bad=skip_bad, quiet=no_progress)
    report_skipped(dataset)
    result = reproduce(
        record, dataset, pretrain=re_pretrain, tolerance=tolerance, device=device,
        workers=workers, keep=keep, progress=not no_progress, unchecked_data=unchecked_data,
        echo=lambda m: click.echo(m, err=True),
    )  # fmt: skip
    click.echo(format_report(result))
    if result.differences:
        sys.exit(1)
