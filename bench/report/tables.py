"""Leaderboard tables built from run records (never from MLflow).

One directory per dataset under ``results/leaderboard/`` (synthetic and PTB-XL results are never
mixed): ``leaderboard.csv`` (tidy, one row per method x encoder x task x protocol x label
fraction, aggregated over seeds) and ``leaderboard.md`` (one table per protocol in the
benchmark's ``0.925(08)`` notation, mean ± sd over seeds where there are several).

Both carry each run's pre-training health (:mod:`bench.health`): flat ``loss_*``,
``effective_rank*``, ``relative_spread*`` and ``health_warnings`` columns in the csv, and a
"Pre-training health" table in the markdown. Health is a property of the pre-training run, so a
row takes it from the newest record of its run that has one; records written before health
existed have none and show as not recorded.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bench.evaluate.metrics import ci_notation
from bench.health import WARNING_NAMES, assess

TASK_ORDER = ("superdiagnostic", "form", "rhythm", "all_statements", "diagnostic", "subdiagnostic")
PROTOCOL_ORDER = {"linear": 0, "attentive": 1, "finetune": 2}
BUDGET_COLUMNS = (
    "pretrain_steps", "pretrain_batch", "pretrain_flops", "pretrain_seconds", "budget_flops",
)  # fmt: skip
GROUP = [
    "dataset", "method", "kind", "encoder", "run_id", "eval_hash", "task", "protocol",
    "label_fraction",
]  # fmt: skip


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record with the fields the tables need."""
    rows = []
    for r in records:
        pretrain = r.get("pretrain") or {}
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
                # what the pre-training cost (NaN for reference rows and older records)
                "pretrain_steps": pretrain.get("steps", np.nan),
                "pretrain_batch": pretrain.get("batch_size", np.nan),
                "pretrain_flops": _number(pretrain.get("flops")),
                "pretrain_seconds": _number(pretrain.get("train_seconds")),
                "budget_flops": _number(pretrain.get("budget_flops")),
            }
        )
    return pd.DataFrame(rows)


def _number(value) -> float:
    return np.nan if value is None else float(value)


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
        **{k: (k, "first") for k in BUDGET_COLUMNS},
    ).reset_index()
    table["notation"] = [
        ci_notation(p, lo, hi) + (f" ± {sd:.3f}" if n > 1 else "")
        for p, lo, hi, sd, n in zip(
            table.test_macro_auroc, table.ci_low, table.ci_high, table.test_macro_auroc_sd,
            table.seeds, strict=True,
        )
    ]  # fmt: skip
    table["source_run_id"] = table["run_id"]  # the pre-training run, whatever the row's label
    health = run_health(records)
    flat = pd.DataFrame([health_row(health.get(r)) for r in table["run_id"]], index=table.index)
    table = pd.concat([table, flat], axis=1)
    # One pre-training run evaluated under two protocol configs (say default and --tuned) gives
    # two rows per cell: name those rows "<run id>@<eval hash>" so every table, figure and page
    # shows them apart instead of averaging them as if they were seeds.
    configs = table.groupby(["run_id", "protocol"])["eval_hash"].transform("nunique")
    several = configs > 1
    table.loc[several, "run_id"] = (
        table.loc[several, "run_id"] + "@" + table.loc[several, "eval_hash"].str[:8]
    )
    return table


def run_health(records: list[dict]) -> dict[str, dict]:
    """``run id -> health block`` of the newest record of each run that has one.

    Every record of a run written by one evaluator carries the same block; records written
    before health signals existed have none (their runs are absent here).
    """
    found: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: str(r.get("created", ""))):
        if isinstance(record.get("health"), dict):
            found[record["run_id"]] = record["health"]
    return found


def health_row(health: dict | None) -> dict:
    """The flat csv columns of one run's health block (None / NaN where absent).

    ``health_recorded``; ``loss_status``, ``loss_summary``, ``loss_min``, ``loss_min_step``,
    ``loss_final``, ``loss_steps``; ``effective_rank``, ``relative_spread``, ``spread``,
    ``signal_dims`` of the final encoder and the same with ``_init`` for the encoder at init; ``feature_dim``; and
    ``health_warnings``: the codes of :func:`bench.health.assess` (``budget``, ``nonfinite``,
    ``collapse``, ``dimensional``) joined by ``;``.
    """
    health = health or {}
    loss = health.get("loss") or {}
    end, init = health.get("features") or {}, health.get("features_init") or {}
    codes = list(dict.fromkeys(w.code for w in assess(health)))
    return {
        "health_recorded": bool(health),
        "loss_status": loss.get("status"),
        "loss_summary": loss.get("summary"),
        "loss_min": loss.get("min"),
        "loss_min_step": loss.get("min_step"),
        "loss_final": loss.get("final"),
        "loss_steps": loss.get("steps"),
        "effective_rank": end.get("effective_rank"),
        "effective_rank_init": init.get("effective_rank"),
        "relative_spread": end.get("relative_spread"),
        "relative_spread_init": init.get("relative_spread"),
        "spread": end.get("spread"),
        "spread_init": init.get("spread"),
        "signal_dims": end.get("signal_dims"),
        "signal_dims_init": init.get("signal_dims"),
        "feature_dim": end.get("dim"),
        "health_warnings": ";".join(codes),
    }


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
    budget = budget_title(table)
    lines = [f"# Leaderboard: {table['dataset'].iloc[0]}" + (f": {budget}" if budget else ""), ""]
    if synthetic:
        lines += ["**SYNTHETIC data**: these numbers say nothing about real ECG.", ""]
    lines += [
        "Test macro AUROC on fold 10, `point(CI)`: bootstrap 5-95 % interval, the larger "
        "deviation in units of the last digit; `± sd` over seeds where there are several. "
        "**Bold**: best measured value of the column.",
        "",
    ]
    lines += warmup_markdown(table)
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
    lines += budget_markdown(table)
    lines += health_markdown(table)
    return "\n".join(lines)


def budget_title(table: pd.DataFrame) -> str | None:
    """The pre-training budget of the SSL rows for a title, e.g. ``pre-training 200 x 64 steps
    x batch (ecg_jepa 150 x 32), 4.1e+13-1.2e+14 training FLOPs``; None without SSL rows."""
    runs = table[(table["kind"] == "ssl") & table["pretrain_steps"].notna()]
    runs = runs.drop_duplicates("source_run_id")
    if runs.empty:
        return None
    shapes = runs.assign(
        shape=[
            f"{s:,.0f} x {b:,.0f}"
            for s, b in zip(runs.pretrain_steps, runs.pretrain_batch, strict=True)
        ]
    )
    common = shapes["shape"].mode().iloc[0]
    others = [f"{r.method} {r.shape}" for r in shapes.itertuples() if r.shape != common]
    text = f"pre-training {common} steps x batch" + (f" ({', '.join(others)})" if others else "")
    flops = runs["pretrain_flops"].dropna()
    if len(flops):
        low, high = flops.min(), flops.max()
        span = f"{low:.2g}" if low == high else f"{low:.2g}-{high:.2g}"
        text += f", {span} training FLOPs"
    budgets = runs["budget_flops"].dropna().unique()
    if len(budgets):
        text += ", budgets " + ", ".join(budget_text(b) for b in sorted(budgets))
    return text


# What the loss curve says about the warm-up regime (bench.health's statuses).
_WARMUP = {
    "turned": "past its warm-up regime",
    "plateau": "past its warm-up regime",
    "still falling": "still in its warm-up regime (the budget is too small to compare it)",
    "flat": "no warm-up seen (the loss barely moved: little was learned)",
    "rising": "no warm-up seen (the loss rose from the start)",
    "too short": "too short to judge",
}


def warmup_markdown(table: pd.DataFrame) -> list[str]:
    """One line per SSL run: whether it passed its warm-up regime, from its health signal (the
    loss curve's status), and any collapse it shows."""
    runs = table[table["kind"] == "ssl"].drop_duplicates("source_run_id")
    if runs.empty or "health_recorded" not in runs or not runs["health_recorded"].any():
        return []  # records from before health existed: nothing to say
    lines = ["Warm-up of each SSL row, from its pre-training health (details below):", ""]
    for row in runs.sort_values(["method", "encoder", "source_run_id"]).itertuples():
        label = f"{row.method} ({row.encoder})"
        if not row.health_recorded:
            lines.append(f"- **{label}**: health not recorded (records from before it existed)")
            continue
        text = f"{_WARMUP.get(row.loss_status, row.loss_status)}: loss {row.loss_summary}"
        codes = [c for c in str(row.health_warnings).split(";") if c in WARNING_NAMES]
        if codes:
            text += "; " + ", ".join(WARNING_NAMES[c] for c in codes)
            if "collapse" in codes:
                text += f" (relative spread {row.relative_spread_init:.3f} -> {row.relative_spread:.3f})"
        lines.append(f"- **{label}**: {text}")
    lines.append("")
    return lines


def budget_markdown(table: pd.DataFrame) -> list[str]:
    """The "Pre-training budget" table: what each row's pre-training cost (steps x batch,
    counted FLOPs, wall time) and the budget it was given, if any."""
    runs = table.drop_duplicates("source_run_id")
    runs = runs.assign(reference=runs["kind"] != "ssl").sort_values(
        ["reference", "method", "encoder", "pretrain_flops", "source_run_id"]
    )
    lines = [
        "## Pre-training budget",
        "",
        "Steps x batch of each row's pre-training, its training compute (model FLOPs of one "
        "forward + backward step, counted, times the samples seen) and wall time; *budget*: the "
        "compute it was given with `bench run --budget` (compute-matched rows), else the "
        "preset's steps.",
        "",
        "| run | steps x batch | training FLOPs | budget | training time |",
        "|---|---|---|---|---|",
    ]
    several = runs.groupby(["method", "encoder"])["source_run_id"].transform("nunique") > 1
    for row, name_run in zip(runs.itertuples(), several, strict=True):
        label = run_label(row.method, row.encoder, row.source_run_id, row.budget_flops, name_run)
        if row.kind != "ssl":
            lines.append(f"| {label} | no pre-training | | | |")
            continue
        steps = (
            "" if _missing(row.pretrain_steps)
            else f"{row.pretrain_steps:,.0f} x {row.pretrain_batch:,.0f}"
        )  # fmt: skip
        flops = "not recorded" if _missing(row.pretrain_flops) else f"{row.pretrain_flops:.3g}"
        budget = "preset" if _missing(row.budget_flops) else budget_text(row.budget_flops)
        seconds = "" if _missing(row.pretrain_seconds) else f"{row.pretrain_seconds:,.0f} s"
        lines.append(f"| {label} | {steps} | {flops} | {budget} | {seconds} |")
    lines.append("")
    return lines


def health_markdown(table: pd.DataFrame) -> list[str]:
    """The "Pre-training health" table: one line per run, only when some run has health."""
    if "health_recorded" not in table or not table["health_recorded"].any():
        return []
    lines = [
        "## Pre-training health",
        "",
        "Loss: the smoothed pre-training loss curve (minimum and its step; *still falling* = "
        "the run ended before the loss turned, the budget may be too small). Features: the "
        "frozen encoder's pooled features on one crop per training record, at the end of "
        "pre-training and at init: effective rank (of D dimensions) and relative spread "
        "(share of the feature norm that varies across samples). ⚠ marks a budget warning, "
        "a complete collapse (relative spread under 90 % of init) or a dimensional one "
        "(signal directions under 90 % of init). Definitions: `bench/health.py`.",
        "",
        "| run | loss | min (step) | effective rank: init → end (D) | relative spread: "
        "init → end | warnings |",
        "|---|---|---|---|---|---|",
    ]
    runs = table.drop_duplicates("source_run_id")
    runs = runs.assign(reference=runs["kind"] != "ssl").sort_values(
        ["reference", "method", "encoder", "source_run_id"]
    )  # SSL runs first, then the reference rows they are compared with
    several = runs.groupby(["method", "encoder"])["source_run_id"].transform("nunique") > 1
    for row, name_run in zip(runs.itertuples(), several, strict=True):
        label = run_label(row.method, row.encoder, row.source_run_id, row.budget_flops, name_run)
        if not row.health_recorded:
            lines.append(f"| {label} | not recorded | | | | |")
            continue
        loss = (
            row.loss_summary
            if isinstance(row.loss_summary, str)
            else "reference row: no pre-training"
        )
        minimum = "" if _missing(row.loss_min) else f"{row.loss_min:.3g} ({row.loss_min_step:.0f})"
        dim = "" if _missing(row.feature_dim) else f" ({row.feature_dim:.0f})"
        rank = _init_to_end(row.effective_rank_init, row.effective_rank, "{:.1f}") + dim
        spread = _init_to_end(row.relative_spread_init, row.relative_spread, "{:.3f}")
        warnings = row.health_warnings.replace(";", ", ")
        lines.append(
            f"| {label} | {loss} | {minimum} | {rank} | {spread} | "
            + (f"⚠ {warnings}" if warnings else "")
            + " |"
        )
    lines.append("")
    return lines


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _init_to_end(init, end, fmt: str) -> str:
    if _missing(end):
        return ""
    return fmt.format(end) if _missing(init) else f"{fmt.format(init)} → {fmt.format(end)}"


def ordered_tasks(tasks) -> list[str]:
    """The benchmark tasks first in :data:`TASK_ORDER`, any other task after them by name."""
    present = set(tasks)
    return [t for t in TASK_ORDER if t in present] + sorted(present - set(TASK_ORDER))


def measured_rows(part: pd.DataFrame):
    """``(label, rows)`` per measured row of one table: ``method (encoder)``, plus the run id
    when one method and size has several configurations, so rows stay distinct."""
    runs_per_row = part.groupby(["method", "encoder"])["run_id"].nunique()
    for (method, encoder, run_id), rows in part.groupby(["method", "encoder", "run_id"]):
        budget = rows["budget_flops"].iloc[0] if "budget_flops" in rows else np.nan
        several = runs_per_row[(method, encoder)] > 1
        yield run_label(method, encoder, run_id, budget, several), rows


def run_label(method: str, encoder: str, run_id: str, budget: float, several: bool) -> str:
    """``method (encoder)``; where one method and size has several runs, plus the budget of a
    budgeted run or else the run id, so rows stay distinct."""
    label = f"{method} ({encoder})"
    if not several:
        return label
    return label + (f" `{run_id}`" if _missing(budget) else f" @ {budget_text(budget)}")


def budget_text(flops: float) -> str:
    """``1e+15`` -> ``1e15 FLOPs``: how a budget is written in labels."""
    mantissa, exponent = f"{flops:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)} FLOPs"


def csv_frame(table: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The tidy csv: measured rows (``published`` False), then on real data the published
    context rows (``published`` True, no CI, seeds or config)."""
    # Wall time is a property of the machine and the attempt, not of the result: a resumed run
    # and an uninterrupted one give the same csv (leaderboard.md shows the time).
    measured = table.drop(columns=["pretrain_seconds"]).assign(published=False, source="measured")
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
