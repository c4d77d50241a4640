"""Leaderboard tables built from run records (never from MLflow).

One directory per dataset under ``results/leaderboard/`` (synthetic and PTB-XL results are never
mixed): ``leaderboard.csv`` (tidy, one row per method x encoder x task x protocol x label
fraction, aggregated over seeds) and ``leaderboard.md`` (one table per protocol in the
benchmark's ``0.925(08)`` notation, mean ± sd over seeds where there are several).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bench.evaluate.metrics import ci_notation

TASK_ORDER = ("superdiagnostic", "form", "rhythm", "all_statements", "diagnostic", "subdiagnostic")
PROTOCOL_ORDER = {"linear": 0, "attentive": 1, "finetune": 2}
GROUP = [
    "dataset", "method", "kind", "encoder", "run_id", "eval_hash", "task", "protocol",
    "label_fraction",
]  # fmt: skip


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
                "eval_hash": r["key"]["eval_hash"],
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
    # One pre-training run evaluated under two protocol configs (say default and --tuned) gives
    # two rows per cell: name those rows "<run id>@<eval hash>" so every table, figure and page
    # shows them apart instead of averaging them as if they were seeds.
    configs = table.groupby(["run_id", "protocol"])["eval_hash"].transform("nunique")
    several = configs > 1
    table.loc[several, "run_id"] = (
        table.loc[several, "run_id"] + "@" + table.loc[several, "eval_hash"].str[:8]
    )
    return table


def slug(name: str) -> str:
    """A directory name for a dataset name: never ``.``/``..``, hidden or over-long."""
    text = re.sub(r"[^A-Za-z0-9.]+", "-", name)[:100].strip("-.").lower()
    return text or "dataset"


def markdown(table: pd.DataFrame, published: pd.DataFrame | None = None) -> str:
    """One table per protocol (and label fraction): rows method (encoder), columns tasks.

    The best measured value of each column is bold. On real data, ``published`` rows (see
    :mod:`bench.report.published`) follow the measured ones in the tables of their protocol at
    label fraction 1, marked as published and never counted as best.
    """
    synthetic = bool(table["synthetic"].iloc[0])
    lines = [f"# Leaderboard: {table['dataset'].iloc[0]}", ""]
    if synthetic:
        lines += ["**SYNTHETIC data**: these numbers say nothing about real ECG.", ""]
    lines += [
        "Test macro AUROC on fold 10, `point(CI)`: bootstrap 5-95 % interval, the larger "
        "deviation in units of the last digit; `± sd` over seeds where there are several. "
        "**Bold**: best measured value of the column.",
        "",
    ]
    shown_published = False
    for (protocol, fraction), part in sorted(
        table.groupby(["protocol", "label_fraction"]),
        key=lambda g: (PROTOCOL_ORDER.get(g[0][0], 9), -g[0][1]),  # full labels first
    ):
        tasks = ordered_tasks(part["task"])
        lines += [f"## {protocol} (label fraction {fraction:g})", ""]
        lines += ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
        best = part.groupby("task")["test_macro_auroc"].max()
        for label, rows in measured_rows(part):
            cells = []
            for task in tasks:
                hit = rows[rows.task == task]
                cell = hit["notation"].iloc[0] if len(hit) else ""
                if len(hit) and hit["test_macro_auroc"].iloc[0] == best[task]:
                    cell = f"**{cell}**"
                cells.append(cell)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        context = (
            published[published.protocol == protocol]
            if published is not None and not synthetic and fraction == 1.0
            else None
        )
        if context is not None and len(context):
            shown_published = True
            for label, rows in context.groupby("label", sort=False):
                cells = []
                for task in tasks:
                    hit = rows[rows.task == task]
                    cells.append(f"*{hit['auroc'].iloc[0]:.3f}* †" if len(hit) else "")
                lines.append(f"| *published: {label}* † | " + " | ".join(cells) + " |")
        lines.append("")
    if shown_published:
        lines += [
            "† Published, not re-measured: numbers from the papers (PROTOCOL.md section 2), "
            "obtained with other sampling rates, leads, windows, backbones, pre-training data or "
            "PTB-XL versions; context only, not a ranking.",
            "",
        ]
        sources = published.drop_duplicates("label")
        lines += [f"- {r.label}: {r.source}" + (f" ({r.note})" if r.note else "")
                  for r in sources.itertuples()]  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def ordered_tasks(tasks) -> list[str]:
    """The benchmark tasks first in :data:`TASK_ORDER`, any other task after them by name."""
    present = set(tasks)
    return [t for t in TASK_ORDER if t in present] + sorted(present - set(TASK_ORDER))


def measured_rows(part: pd.DataFrame):
    """``(label, rows)`` per measured row of one table: ``method (encoder)``, plus the run id
    when one method and size has several configurations, so rows stay distinct."""
    runs_per_row = part.groupby(["method", "encoder"])["run_id"].nunique()
    for (method, encoder, run_id), rows in part.groupby(["method", "encoder", "run_id"]):
        label = f"{method} ({encoder})"
        if runs_per_row[(method, encoder)] > 1:
            label += f" `{run_id}`"
        yield label, rows


def csv_frame(table: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The tidy csv: measured rows (``published`` False), then on real data the published
    context rows (``published`` True, no CI, seeds or config)."""
    measured = table.assign(published=False, source="measured")
    if published is None or bool(table["synthetic"].iloc[0]) or published.empty:
        return measured
    context = pd.DataFrame(
        {
            "dataset": "published (not re-measured)",
            "method": published["method"],
            "kind": "published",
            "encoder": published["label"],
            "task": published["task"],
            "protocol": published["protocol"],
            "label_fraction": 1.0,
            "synthetic": False,
            "test_macro_auroc": published["auroc"],
            "notation": [f"{v:.3f}" for v in published["auroc"]],
            "published": True,
            "source": published["source"],
        }
    )
    return pd.concat([measured, context], ignore_index=True)
