"""``bench report`` (the leaderboard) and ``bench compare`` (does A beat B?)."""

from __future__ import annotations

from pathlib import Path

import click

from bench.errors import BenchError


@click.command(
    "report", short_help="Write the leaderboards (csv, md, html, figures) from the records"
)
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


@click.command(
    "compare", short_help="Paired bootstrap of the AUROC difference of two methods or runs"
)
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
