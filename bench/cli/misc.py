"""What the harness has: ``bench tasks``, ``bench protocols``, ``bench methods``; and ``bench ui``
(the MLflow UI)."""

from __future__ import annotations

import sys

import click

from bench.cli.common import data_dir_option, open_dataset, report_skipped, skip_bad_option


@click.command("tasks", short_help="Each task's labels and train / val / test sizes")
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


@click.command("protocols", short_help="The downstream protocols and every --eval-set key")
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


@click.command("ui", short_help="The MLflow UI on the harness's store, bound to 127.0.0.1")
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


@click.command("methods", short_help="List the registered SSL methods and their paper defaults")
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
