"""``bench perf``: the whole benchmark, its scaling sweep, the paper-preset projection, and
the tables it prints and writes.

Figures of one run:

* the matmul peak per precision (:mod:`bench.perf.peak`), measured first;
* per method x encoder: the engine step in fp32 and bf16 and the straightforward reference,
  each ``samples/s``, model FLOPs per sample (``torch.utils.flop_counter``, forward + backward,
  :func:`bench.flops.pretrain_step_flops`), achieved FLOP/s = FLOPs per sample x samples/s, that
  as a share of the peak of the precision the step ran in, peak memory, the data-wait share of
  step time, and the speed-up over the straightforward reference;
* optionally how cost grows with tokens, batch and encoder size (:func:`scaling_cases`);
* the projected device time of each method's ``paper`` preset (:func:`paper_projection`).

Figures are only as quiet as the machine: nothing else should run during a benchmark.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.perf.measure import Case, run_case

PERF_RECORDS = 320  # synthetic records for the loader (larger batches repeat them: measure.py)
SCALING_CROPS = (2.5, 5.0, 10.0)
SCALING_BATCHES = (8, 16, 32, 64)
SCALING_ENCODERS = ("xs", "s", "b")
# Dense bf16 tensor-core peaks from the vendors' data sheets, for the projection only.
GPU_PEAKS_TFLOPS = {"A100": 312.0, "H100 SXM": 989.0}


def prepare_data(
    data_dir: Path | None,
    rates: Sequence[int],
    results: Path,
    skip_bad: bool = False,
    progress: bool = False,
) -> tuple[Path, Path, str]:
    """A dataset and caches at ``rates`` for the loader: ``data_dir`` (PTB-XL), or a small
    synthetic PTB-XL (:data:`PERF_RECORDS` records) generated under ``results/perf``.

    ``skip_bad`` leaves out records that fail validation at a rate (e.g. the 500 Hz files a
    PTB-XL subset lacks) instead of stopping, as ``bench data prepare --skip-bad`` does.

    Returns ``(dataset root, cache root, dataset name)``; the name says how many records each
    rate's cache holds when that is fewer than the dataset's.
    """
    from bench.data.cache import prepare_cache
    from bench.data.ptbxl import PTBXL, resolve_data_dir
    from bench.data.synthetic import generate_synthetic_ptbxl

    root = resolve_data_dir(data_dir)
    if root is None:
        native = (100,) if max(rates) <= 100 else (100, 500)  # 250 Hz is resampled from 500
        root = generate_synthetic_ptbxl(
            results / "perf" / "data" / f"synthetic-{PERF_RECORDS}-{'-'.join(map(str, native))}",
            n=PERF_RECORDS,
            rates=native,
            progress=progress,
        )
    dataset = PTBXL(root, skip_bad=skip_bad)
    cache_root = results / "perf" / "cache"
    name, partial = dataset.name, []
    for rate in sorted(set(rates)):
        cache = prepare_cache(
            dataset, rate, cache_root=cache_root, skip_bad=skip_bad, progress=progress
        )
        held, listed = len(cache.ecg_ids), len(dataset.metadata)
        if held < listed:
            partial.append(f"{held} records at {rate} Hz")
    if partial:
        name += f"; caches: {', '.join(partial)}"
    return root, cache_root, name


def default_precisions(requested: str, device) -> list[str]:
    """The precisions to time: ``auto`` is fp32, plus bf16 where ``device`` computes bf16
    natively (:func:`bench.precision.native_bf16`); otherwise the comma-separated list given."""
    from bench.precision import native_bf16

    names = [p.strip() for p in requested.split(",") if p.strip()]
    if names == ["auto"]:
        return ["fp32", "bf16"] if native_bf16(device)[0] else ["fp32"]
    for p in names:
        if p not in ("fp32", "bf16"):
            raise BenchError(f"unknown precision {p!r}", hint="use auto, or fp32 and/or bf16")
    return names


def measure_peaks(device, precisions: Sequence[str]) -> dict:
    """:func:`bench.perf.peak.matmul_peak` of fp32 and every precision in ``precisions``, each
    marked ``native``: a bf16 "peak" on a device without native bf16 is an emulation's speed,
    not the hardware's, and no share of it is reported (:func:`_derived`)."""
    from bench.perf.peak import matmul_peak
    from bench.precision import native_bf16

    bf16_native = native_bf16(device)[0]
    peak = matmul_peak(device, tuple(sorted({*precisions, "fp32"} - {"bf16"})))
    if "bf16" in precisions:  # emulated bf16 is slow: smaller squares suffice to show it
        sizes = None if bf16_native else (256, 512)
        peak.update(matmul_peak(device, ("bf16",), sizes=sizes))
    for precision, entry in peak.items():
        entry["native"] = precision != "bf16" or bf16_native
    return peak


def _derived(row: dict, flops_per_sample: float, peak: dict) -> dict:
    """Achieved FLOP/s and its share of the peak: the peak measured around the case itself
    (``case_peak_flops``) when there is one, else the run's peak of that precision; no share
    (None) for a precision the hardware does not compute natively."""
    achieved = flops_per_sample * row["samples_per_s"]
    row["flops_per_sample"] = flops_per_sample
    row["achieved_flops"] = achieved
    entry = peak.get(row["precision_used"], {})
    if not entry.get("native", True):
        row["peak_share"] = None
        return row
    reference = row.get("case_peak_flops") or entry["flops"]
    row["peak_share"] = achieved / reference
    return row


def _rank_key(row: dict) -> float:
    """Repeated runs are ranked by share of peak, or by samples/s where there is no share."""
    return row["peak_share"] if row["peak_share"] is not None else row["samples_per_s"]


def benchmark_cases(
    methods: Sequence[str],
    encoders: Sequence[str | None],
    base: Case,
    precisions: Sequence[str] = ("fp32", "bf16"),
    straightforward: bool = True,
) -> list[Case]:
    """Engine steps at each precision, then the straightforward reference, per method x
    encoder (``None``: the method's paper size)."""
    cases = []
    for method in methods:
        for encoder in encoders:
            for precision in precisions:
                cases.append(replace(base, method=method, encoder=encoder, precision=precision))
            if straightforward:
                cases.append(
                    replace(
                        base,
                        method=method,
                        encoder=encoder,
                        precision="fp32",
                        impl="straightforward",
                        profile=False,
                    )
                )
    return cases


def scaling_cases(method: str, base: Case, precision: str = "bf16") -> list[Case]:
    """Engine steps of ``method`` at ``precision`` varying one factor at a time around ``base``:
    crop length (tokens) over :data:`SCALING_CROPS` seconds, batch over :data:`SCALING_BATCHES`,
    encoder over :data:`SCALING_ENCODERS`."""
    base = replace(base, method=method, precision=precision, impl="engine", profile=False)
    cases = [
        replace(base, overrides=(*base.overrides, f"data.crop_seconds={s}")) for s in SCALING_CROPS
    ]
    cases += [replace(base, batch_size=b) for b in SCALING_BATCHES]
    cases += [replace(base, encoder=e) for e in SCALING_ENCODERS]
    return cases


def measure_all(
    cases: Sequence[Case],
    peak: dict,
    echo: Callable[[dict], None] = lambda row: None,
    timeout: float | None = None,
    repeats: int = 1,
) -> list[dict]:
    """Run every case (fresh process each) and add FLOPs, achieved FLOP/s and peak share.

    With ``repeats`` > 1 the cases run round-robin that many times (so a slow spell of the
    machine hits every case alike, not one case's repeats); each row is then the run with the
    median share of peak, with every run's samples/s and share in ``runs``. ``echo`` sees each
    run as it finishes.

    FLOPs per sample are counted once per distinct config (at batch 4: per-sample counts do not
    depend on the batch beyond batch-wide terms such as SimCLR's similarity matrix).
    """
    from bench.config import config_hash, to_dict
    from bench.flops import pretrain_step_flops

    counted: dict[str, float] = {}
    runs: list[list[dict]] = [[] for _ in cases]
    for _ in range(repeats):
        for i, case in enumerate(cases):
            cfg = case.config()
            # The optimiser settings (batch size included) do not change FLOPs per sample.
            key = case.method + config_hash({**to_dict(cfg), "optim": None})
            if key not in counted:
                counted[key] = pretrain_step_flops(case.method, cfg, batch_size=4)
            result = run_case(case, timeout=timeout)
            row = {
                "method": case.method,
                "impl": case.impl,
                "precision": result["precision_used"],
                "batch_size": case.batch_size,
                "overrides": list(case.overrides),
                "crop_seconds": cfg.data.crop_seconds,
                "rate": cfg.data.rate,
                **result,
            }
            runs[i].append(_derived(row, counted[key], peak))
            echo(row)
    rows = []
    for measured in runs:
        ranked = sorted(measured, key=_rank_key)
        row = dict(ranked[(len(ranked) - 1) // 2])  # the median run (the lower one of two)
        if len(measured) > 1:
            row["runs"] = [
                {"samples_per_s": r["samples_per_s"], "peak_share": r["peak_share"]}
                for r in measured
            ]
        rows.append(row)
    _speedups(rows)
    return rows


def _speedups(rows: list[dict]) -> None:
    """``speedup``: samples/s of each engine row over the straightforward row of the same
    method, encoder, batch and overrides (None where there is none)."""

    def group(r):
        return (r["method"], r["encoder"], r["batch_size"], tuple(r["overrides"]))

    reference = {group(r): r["samples_per_s"] for r in rows if r["impl"] == "straightforward"}
    for r in rows:
        ref = reference.get(group(r))
        r["speedup"] = r["samples_per_s"] / ref if ref and r["impl"] == "engine" else None


def paper_projection(methods: Sequence[str], rows: Sequence[dict] = ()) -> list[dict]:
    """Projected device time of each method's ``paper`` preset from counted FLOPs.

    Total = FLOPs per sample x ``optim.batch_size`` x ``optim.steps``. Hours are given at 40 %
    of the dense bf16 peak of the GPUs in :data:`GPU_PEAKS_TFLOPS` (an assumed utilisation,
    typical of well-fed ViT training, not a measurement), and on this machine at the utilisation
    measured for that method's fastest engine step in ``rows`` (same encoder size, any
    precision timed: bf16 where the machine has it natively, else fp32).
    """
    from bench.flops import pretrain_step_flops, pretrain_total_flops
    from bench.train import resolve_config

    out = []
    for method in methods:
        cfg = resolve_config(method, "paper")
        per_sample = pretrain_step_flops(method, cfg, batch_size=2)
        total = pretrain_total_flops(per_sample, cfg.optim.batch_size, cfg.optim.steps)
        entry = {
            "method": method,
            "encoder": cfg.encoder.size,
            "tokens": None,
            "flops_per_sample": per_sample,
            "batch_size": cfg.optim.batch_size,
            "steps": cfg.optim.steps,
            "total_flops": total,
            "gpu_hours_at_40pct": {
                name: total / (tflops * 1e12 * 0.4) / 3600
                for name, tflops in GPU_PEAKS_TFLOPS.items()
            },
            "this_machine_hours": None,
        }
        measured = [
            r for r in rows
            if r["method"] == method and r["impl"] == "engine"
            and r["encoder"] == cfg.encoder.size and not r["overrides"]
        ]  # fmt: skip
        if measured:
            fastest = max(measured, key=lambda r: r["achieved_flops"])
            entry["this_machine_hours"] = total / fastest["achieved_flops"] / 3600
            entry["this_machine_precision"] = fastest["precision"]
        out.append(entry)
    return out


# --------------------------------------------------------------------------- formatting
def _si(value: float, unit: str = "") -> str:
    for factor, prefix in (
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


ROW_HEADER = (
    "method", "encoder", "tokens", "batch", "impl", "precision", "samples/s", "FLOP/sample",
    "achieved FLOP/s", "% of peak", "peak memory", "data wait", "speed-up",
)  # fmt: skip


def row_cells(r: dict) -> list[str]:
    impl = "straightforward" if r["impl"] == "straightforward" else f"engine ({r['attention']})"
    return [
        r["method"],
        r["encoder"],
        str(r["tokens"]),
        str(r["batch_size"]) + ("*" if _recurring(r) else ""),
        impl,
        r["precision"],
        f"{r['samples_per_s']:.1f}",
        _si(r["flops_per_sample"]),
        _si(r["achieved_flops"]),
        _share(r),
        f"{r['peak_memory_bytes'] / 2**20:.0f} MiB",
        f"{100 * r['data_wait_fraction']:.1f} %",
        f"{r['speedup']:.2f}x" if r.get("speedup") else "",
    ]


def _recurring(r: dict) -> bool:
    """The batch is larger than the distinct training records: records recur in an epoch."""
    return r.get("distinct_records") is not None and r["distinct_records"] < r["batch_size"]


RECURRING_NOTE = (
    "*: batch larger than the distinct training records at hand: records recur within an "
    "epoch (other crops); the step's cost is the same."
)

PROFILE_HEADER = (
    "method", "encoder", "precision", "ops/step", "kernels/step", "host syncs/step",
    "device busy", "compile", "costliest operators (ms per step)",
)  # fmt: skip


def profile_cells(r: dict) -> list[str]:
    """One row of the profile table (``bench perf --profile``); CUDA-only figures '-' on CPU."""
    p = r["profile"]

    def maybe(key: str, fmt: str) -> str:
        return fmt.format(p[key]) if p.get(key) is not None else "-"

    top = ", ".join(f"{o['name']} {o['ms']:.1f}" for o in p["top_ops"][:4])
    compile_s = f"{r['compile_seconds']:.1f} s" if r.get("compile_seconds") is not None else "-"
    return [
        r["method"], r["encoder"], r["precision"], f"{p['ops_per_step']:.0f}",
        maybe("kernels_per_step", "{:.0f}"), maybe("syncs_per_step", "{:.1f}"),
        maybe("device_busy_fraction", "{:.0%}"), compile_s, top,
    ]  # fmt: skip


def profile_rows(rows: Sequence[dict]) -> list[list[str]]:
    return [profile_cells(r) for r in rows if r.get("profile")]


def _share(r: dict) -> str:
    if r["peak_share"] is None:
        return "n/a (no native peak)"
    return f"{100 * r['peak_share']:.0f} %" + _spread(r)


def _spread(r: dict) -> str:
    """`` (52-58)``: the range of the share of peak over repeated runs, if any."""
    if len(r.get("runs", [])) < 2:
        return ""
    shares = [100 * run["peak_share"] for run in r["runs"]]
    return f" ({min(shares):.0f}-{max(shares):.0f})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in rows)])


def projection_cells(p: dict) -> list[str]:
    gpus = [f"{p['gpu_hours_at_40pct'][name]:.1f} h" for name in GPU_PEAKS_TFLOPS]
    here = f"{p['this_machine_hours']:.0f} h" if p["this_machine_hours"] else "not measured"
    return [
        p["method"], p["encoder"], _si(p["flops_per_sample"]), str(p["batch_size"]),
        str(p["steps"]), _si(p["total_flops"]), *gpus, here,
    ]  # fmt: skip


PROJECTION_HEADER = (
    "method", "encoder", "FLOP/sample", "batch", "steps", "total FLOPs",
    *(f"{name} at 40 %" for name in GPU_PEAKS_TFLOPS), "this machine",
)  # fmt: skip


PEAK_NOTE = (
    "% of peak: achieved FLOP/s over the matmul peak of the step's precision measured around "
    "that case (the higher of a reading before and after it), so drift of the machine's speed "
    "during the run cancels out."
)


def peak_lines(peak: dict) -> list[str]:
    return [
        f"matmul peak {precision}: {_si(v['flops'], 'FLOP/s')} (square {v['size']})"
        + ("" if v.get("native", True) else "; emulated, no native bf16: no share of it reported")
        for precision, v in peak.items()
    ]


def render_markdown(report: dict) -> str:
    """The whole report as Markdown (the README's performance section quotes it)."""
    env = report["environment"]
    parts = [
        f"# bench perf, {report['started']}",
        "",
        f"{env['machine']}; torch {env['torch']}, {env['threads']} threads; "
        f"data: {report['dataset']}; {report['steps']} timed steps after {report['warmup']} "
        "warm-up steps per case"
        + (
            f"; every case run {report['repeats']} times round-robin, each row the run with "
            "the median % of peak (the range in brackets)."
            if report.get("repeats", 1) > 1
            else "."
        ),
        "",
        *[f"- {line}" for line in peak_lines(report["peak"])],
        "",
        PEAK_NOTE,
        "",
        markdown_table(ROW_HEADER, [row_cells(r) for r in report["rows"]]),
    ]
    if any(_recurring(r) for r in report["rows"]):
        parts += ["", RECURRING_NOTE]
    if profile_rows(report["rows"]):
        parts += [
            "",
            "## Where the step time goes (torch.profiler, engine rows)",
            "",
            markdown_table(PROFILE_HEADER, profile_rows(report["rows"])),
        ]
    if report.get("scaling"):
        parts += [
            "",
            "## Scaling",
            "",
            markdown_table(ROW_HEADER, [row_cells(r) for r in report["scaling"]]),
        ]
    if report.get("projection"):
        parts += [
            "",
            "## Projected pre-training time of the paper preset",
            "",
            markdown_table(PROJECTION_HEADER, [projection_cells(p) for p in report["projection"]]),
        ]
    return "\n".join(parts) + "\n"


def _machine(device: str) -> str:
    import os

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def environment(device: str) -> dict[str, Any]:
    import torch

    return {
        "machine": _machine(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.version.cuda if torch.device(device).type == "cuda" else None,
    }


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """``perf-<time>.json`` and ``.md`` in ``out_dir``, each written atomically."""
    from bench.report.build import atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "perf-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    atomic_write(json_path, json.dumps(report, indent=1))
    atomic_write(md_path, render_markdown(report))
    return json_path, md_path


def check_methods(methods: Sequence[str]) -> None:
    from bench.evaluate.subjects import REFERENCES
    from bench.method import METHODS

    for method in methods:
        if method in REFERENCES:
            raise BenchError(f"{method} is a reference row without pre-training: nothing to time")
        METHODS.get(method)  # unknown names raise a BenchError listing the registered ones
