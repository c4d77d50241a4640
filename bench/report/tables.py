"""Leaderboard tables built from run records (never from MLflow).

One directory per dataset under ``results/leaderboard/`` (synthetic and PTB-XL results are never
mixed): ``leaderboard.csv`` (tidy, one row per method x encoder x task x protocol x label
fraction, aggregated over seeds) and ``leaderboard.md`` (one table per protocol in the
benchmark's ``0.925(08)`` notation, mean ± sd over seeds where there are several).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.evaluate.metrics import ci_notation
from bench.paths import results_dir

TASK_ORDER = ("superdiagnostic", "form", "rhythm", "all_statements", "diagnostic", "subdiagnostic")
GROUP = ["dataset", "method", "kind", "encoder", "run_id", "task", "protocol", "label_fraction"]


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record with the fields the tables need."""
    rows = []
    for r in records:
        rows.append(
            {
                "dataset": r["dataset"]["name"],
                "synthetic": r["dataset"]["synthetic"],
                "method": r["method"],
                "kind": r["kind"],
                "encoder": r["encoder"],
                "run_id": r["run_id"],
                "task": r["task"],
                "protocol": r["protocol"],
                "label_fraction": r["label_fraction"],
                "seed": r["seed"],
                "test_macro_auroc": r["test_macro_auroc"],
                "ci_low": r["test_macro_auroc_ci"][0],
                "ci_high": r["test_macro_auroc_ci"][1],
                "test_macro_ap": r["test_macro_ap"],
                "val_macro_auroc": r["selection"]["val_macro_auroc"],
            }
        )
    return pd.DataFrame(rows)


def leaderboard_frame(records: list[dict]) -> pd.DataFrame:
    """Seeds aggregated: mean and sd of the test macro AUROC, mean CI bounds, notation."""
    frame = records_frame(records)
    if frame.empty:
        return frame
    grouped = frame.groupby(GROUP, sort=True, dropna=False)
    table = grouped.agg(
        synthetic=("synthetic", "first"),
        seeds=("seed", "nunique"),
        test_macro_auroc=("test_macro_auroc", "mean"),
        test_macro_auroc_sd=(
            "test_macro_auroc",
            lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else np.nan,
        ),
        ci_low=("ci_low", "mean"),
        ci_high=("ci_high", "mean"),
        test_macro_ap=("test_macro_ap", "mean"),
        val_macro_auroc=("val_macro_auroc", "mean"),
    ).reset_index()
    table["notation"] = [
        ci_notation(p, lo, hi) + (f" ± {sd:.3f}" if n > 1 else "")
        for p, lo, hi, sd, n in zip(
            table.test_macro_auroc, table.ci_low, table.ci_high, table.test_macro_auroc_sd,
            table.seeds, strict=True,
        )
    ]  # fmt: skip
    return table


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-").lower() or "dataset"


def markdown(table: pd.DataFrame) -> str:
    """One table per protocol (and label fraction): rows method (encoder), columns tasks."""
    lines = [f"# Leaderboard: {table['dataset'].iloc[0]}", ""]
    if bool(table["synthetic"].iloc[0]):
        lines += ["**SYNTHETIC data**: these numbers say nothing about real ECG.", ""]
    lines += [
        "Test macro AUROC on fold 10, `point(CI)`: bootstrap 5-95 % interval, the larger "
        "deviation in units of the last digit; `± sd` over seeds where there are several.",
        "",
    ]
    order = {p: i for i, p in enumerate(("linear", "attentive", "finetune"))}
    for (protocol, fraction), part in sorted(
        table.groupby(["protocol", "label_fraction"]),
        key=lambda g: (order.get(g[0][0], 9), g[0][1]),
    ):
        tasks = [t for t in TASK_ORDER if t in set(part["task"])]
        tasks += sorted(set(part["task"]) - set(tasks))
        lines += [f"## {protocol} (label fraction {fraction:g})", ""]
        lines += ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
        runs_per_row = part.groupby(["method", "encoder"])["run_id"].nunique()
        for (method, encoder, run_id), rows in part.groupby(["method", "encoder", "run_id"]):
            cells = []
            for task in tasks:
                hit = rows[rows.task == task]
                cells.append(hit["notation"].iloc[0] if len(hit) else "")
            # several configs of one method and size: name the run so rows stay distinct
            label = f"{method} ({encoder})"
            if runs_per_row[(method, encoder)] > 1:
                label += f" `{run_id}`"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_leaderboards(records: list[dict], root: Path | None = None) -> list[Path]:
    """Write ``leaderboard.csv`` / ``.md`` per dataset; returns the directories written."""
    table = leaderboard_frame(records)
    written = []
    if table.empty:
        return written
    root = root or results_dir() / "leaderboard"
    for dataset, part in table.groupby("dataset", sort=True):
        directory = root / slug(str(dataset))
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / "leaderboard.csv", part.to_csv(index=False, float_format="%.6f"))
        _atomic_write(directory / "leaderboard.md", markdown(part.reset_index(drop=True)))
        written.append(directory)
    return written


def _atomic_write(path: Path, text: str) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
