"""``bench perf``: how fast a pre-training step (or linear probing) runs, against the peak."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click

from bench.cli.common import csv_items, data_dir_option, open_dataset, skip_bad_option


@click.command("perf", short_help="Time a full pre-training step against the matmul peak")
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
@click.option(
    "--equivalence",
    "equivalence_steps",
    type=click.IntRange(min=2),
    default=None,
    metavar="N",
    help="instead: train the first N steps of each method (first --encoder, --batch-size) as "
    "the engine does and as a plain eager step, and compare the loss curves against bf16's own "
    "rounding (exit 1 if a curve moves more)",
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
    no_straightforward, scaling_method, no_projection, probe, equivalence_steps, data_dir, skip_bad,
    device, attention, compile_, profile_steps, workers, out, timeout, repeats,
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

    names = list(METHODS.names()) if methods == "all" else csv_items(methods)
    if scaling_method:
        suite.check_methods([scaling_method])
    suite.check_methods(names)
    sizes = [None if e == "paper" else e for e in csv_items(encoders)]
    torch_device = resolve_device(device)
    if equivalence_steps:
        _perf_equivalence(
            names, sizes[0], preset, overrides, batch_size, equivalence_steps, torch_device,
            compile_, attention, data_dir, skip_bad, out,
        )  # fmt: skip
        return
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
    sizes = csv_items(encoders)
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


def _perf_equivalence(
    names, encoder, preset, overrides, batch_size, steps, device, compile_, attention, data_dir,
    skip_bad, out,
) -> None:  # fmt: skip
    import json

    import numpy as np

    from bench.data.cache import open_cache
    from bench.data.ptbxl import PTBXL
    from bench.data.transforms import lead_indices
    from bench.errors import BenchError
    from bench.paths import results_dir
    from bench.perf import suite
    from bench.perf.equivalence import (
        EQUIVALENCE_HEADER,
        equivalence_cells,
        loss_equivalence,
    )
    from bench.perf.measure import Case
    from bench.report.build import atomic_write
    from bench.train import lead_statistics, training_rows

    precision = "bf16" if "bf16" in suite.default_precisions("auto", device) else "fp32"
    schedule = (f"optim.steps={steps}", f"optim.warmup_steps={max(1, steps // 10)}")
    configs = {
        name: Case(
            method=name, encoder=encoder, precision=precision, impl="engine",
            batch_size=batch_size, data_root="", cache_root="", preset=preset,
            overrides=(*overrides, *schedule),
        ).config()
        for name in names
    }  # fmt: skip
    root = results_dir()
    rates = [cfg.data.rate for cfg in configs.values()]
    data_root, cache_root, dataset_name = suite.prepare_data(data_dir, rates, root, skip_bad)
    dataset = PTBXL(data_root, skip_bad=skip_bad)
    env = suite.environment(str(device))
    click.echo(f"{env['machine']}; torch {env['torch']}; data: {dataset_name}")
    click.echo(
        f"loss curves of {steps} steps at batch {batch_size}, {precision}: eager step vs "
        f"the engine's{' (compiled)' if compile_ else ''}, and fp32 for bf16's own rounding"
    )
    results = []
    for name, cfg in configs.items():
        cache = open_cache(dataset, cfg.data.rate, cache_root, verify=False)
        rows = training_rows(cache, dataset)
        if len(rows) < batch_size:  # any batch size runs, as in the timed cases
            rows = np.resize(rows, batch_size)
        leads = lead_indices(cfg.data.leads)
        mean, std = lead_statistics(cache.signals, rows, leads)
        result = loss_equivalence(
            name,
            cfg,
            cache,
            rows,
            leads,
            mean,
            std,
            device,
            precision,
            steps,
            compile_,
            attention,
        )
        results.append(result)
        click.echo("  ".join(equivalence_cells(result)))
    table = suite.markdown_table(EQUIVALENCE_HEADER, [equivalence_cells(r) for r in results])
    out_dir = out or root / "perf"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "equivalence-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = {"environment": env, "dataset": dataset_name, "results": results}
    atomic_write(out_dir / f"{stem}.json", json.dumps(report, indent=1))
    atomic_write(
        out_dir / f"{stem}.md",
        f"# Loss curves: engine vs eager step\n\n{env['machine']}, torch {env['torch']}, "
        f"data: {dataset_name}\n\n{table}\n",
    )
    click.echo(f"wrote {out_dir / stem}.json and .md")
    failed = [r["method"] for r in results if not r["passed"]]
    if failed:
        raise BenchError(
            f"the engine's loss curve moved more than bf16 rounding does for {', '.join(failed)}",
            hint="rerun with --attention matmul or without --compile to find the setting",
        )
