"""Leaderboard figures (seaborn), written as PNG files next to the tables.

:func:`make_figures` draws, for the records of one dataset, whatever they allow, in this order:

* ``heatmap-<protocol>``: method x task grid of the test macro AUROC, one per protocol;
* ``bars-<task>``: the AUROC per method with its bootstrap CI, protocols side by side;
* ``label-efficiency``: AUROC against the label fraction (when some row has several);
* ``auroc-vs-budget-<task>``: AUROC against training FLOPs of methods run at several budgets;
* ``pretrain-loss``: the pre-training loss curves of the SSL runs (``history.jsonl``);
* ``auroc-vs-compute``: AUROC against counted pre-training FLOPs and device hours.

Figures are drawn on Agg canvases through matplotlib's object API, never through pyplot: no
display is needed, no global state changes, and nothing stays open once a PNG is written. A
method keeps its colour in every figure; PNGs are about 900 px wide and written atomically.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from bench.report.tables import TASK_ORDER, budget_text

WIDTH = 8.2  # inches: ~900 px at DPI
DPI = 110
PROTOCOL_ORDER = ("linear", "attentive", "finetune")
SIZE_ORDER = ("tiny", "xs", "s", "b")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
CHANCE = 0.5
_STYLE = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85)}
_SYNTHETIC_NOTE = "Synthetic data: these numbers say nothing about real ECG. "


@dataclass(frozen=True)
class Figure:
    """One PNG written by :func:`make_figures`."""

    name: str  # file stem, unique per dataset, e.g. "heatmap-linear"
    title: str  # short heading shown above the image
    caption: str  # one or two sentences saying what is plotted and how to read it
    path: Path  # the PNG file


@dataclass(frozen=True)
class _Run:
    """One SSL pre-training run referenced by the records."""

    run_id: str
    method: str
    label: str
    pretrain: dict  # the record's ``pretrain`` block


class _Report:
    """What every figure shares: the table with a row label, colours, order, output place."""

    def __init__(self, table: pd.DataFrame, records: list[dict], directory: Path):
        self.table = table.assign(label=_row_labels(table))
        self.directory = directory
        self.synthetic = bool(table["synthetic"].any())
        keys = self.table.drop_duplicates("label").set_index("label")
        self.labels = sorted(keys.index, key=lambda label: _row_key(keys.loc[label]))
        palette = sns.color_palette(
            "colorblind" if len(self.labels) <= 10 else "husl", len(self.labels)
        )
        self.colours = dict(zip(self.labels, palette, strict=True))
        self.protocols = _ordered(self.table["protocol"], PROTOCOL_ORDER)
        self.protocol_colours = dict(
            zip(self.protocols, sns.color_palette("Set2", len(self.protocols)), strict=True)
        )
        self.linestyles = {p: LINESTYLES[i % len(LINESTYLES)] for i, p in enumerate(self.protocols)}
        self.tasks = _ordered(self.table["task"], TASK_ORDER)
        self.markers = {t: MARKERS[i % len(MARKERS)] for i, t in enumerate(self.tasks)}
        self.runs = self._ssl_runs(records)

    def _ssl_runs(self, records: list[dict]) -> list[_Run]:
        label_of = dict(zip(self.table["run_id"], self.table["label"], strict=True))
        runs: dict[str, _Run] = {}
        for record in records:
            block = record.get("pretrain")
            run_id = record.get("run_id")
            if record.get("kind") != "ssl" or not block or run_id not in label_of:
                continue
            runs.setdefault(run_id, _Run(run_id, record["method"], label_of[run_id], block))
        return sorted(runs.values(), key=lambda run: self.labels.index(run.label))

    def title(self, text: str) -> str:
        return text + (" (synthetic data)" if self.synthetic else "")

    def caption(self, text: str) -> str:
        return (_SYNTHETIC_NOTE if self.synthetic else "") + text

    def save(self, fig: MplFigure, name: str, title: str, caption: str) -> Figure:
        fig.suptitle(self.title(title))
        path = self.directory / f"{name}.png"
        # Not "*.png": the stale-figure sweep of a concurrent report must never match it.
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            fig.savefig(tmp, dpi=DPI, format="png")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written temporary
            raise
        return Figure(name, self.title(title), self.caption(caption), path)


def make_figures(
    table: pd.DataFrame, records: list[dict], out_dir: Path, pretrain_root: Path | None = None
) -> list[Figure]:
    """Draw every figure the records of ONE dataset allow; returns them in display order.

    Args:
        table: :func:`bench.report.tables.leaderboard_frame` of ``records``.
        records: the run record dicts of one dataset.
        out_dir: the PNGs go to ``out_dir / "figures"``.
        pretrain_root: ``results/pretrain``; without it (or without a run's directory there) the
            loss and compute figures leave that run out, and are not drawn if no run is left.
    """
    if table.empty:
        return []
    directory = Path(out_dir) / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    report = _Report(table, records, directory)
    figures: list[Figure] = []
    with matplotlib.rc_context(_STYLE):
        figures += _heatmaps(report)
        figures += _bars(report)
        figures += _label_efficiency(report)
        figures += _auroc_vs_budget(report)
        if pretrain_root is not None:
            figures += _pretrain_loss(report, Path(pretrain_root))
            figures += _auroc_vs_compute(report, Path(pretrain_root))
    return figures


# --------------------------------------------------------------------------- helpers
def _row_labels(table: pd.DataFrame) -> pd.Series:
    """``method (encoder)``, plus the run's hash where several runs share method and size."""
    base = table["method"] + " (" + table["encoder"] + ")"
    runs = table.groupby(base)["run_id"].transform("nunique")
    tag = " " + table["run_id"].str.rsplit("-", n=1).str[-1]
    if "budget_flops" in table:  # a budgeted run is named by its budget
        budgets = table["budget_flops"]
        tag = tag.where(
            budgets.isna(), budgets.map(lambda b: f" @ {budget_text(b)}", na_action="ignore")
        )
    return base.where(runs == 1, base + tag)


def _row_key(row: pd.Series) -> tuple:
    """SSL methods first, then the references; by name, then encoder size."""
    size = row["encoder"]
    rank = SIZE_ORDER.index(size) if size in SIZE_ORDER else len(SIZE_ORDER)
    return (row["kind"] != "ssl", row["method"], rank, size, row["run_id"])


def _ordered(values: pd.Series, order: tuple[str, ...]) -> list[str]:
    """Distinct ``values``: those in ``order`` first, in that order, then the rest sorted."""
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))


def _compute_protocol(part: pd.DataFrame) -> str:
    """The protocol compute figures plot: linear if it was run, else the first one run."""
    return (
        "linear"
        if "linear" in set(part["protocol"])
        else _ordered(part["protocol"], PROTOCOL_ORDER)[0]
    )


def _full_fraction(part: pd.DataFrame) -> float:
    """Label fraction 1 when present, else the largest one."""
    fractions = part["label_fraction"].to_numpy(dtype=float)
    return 1.0 if np.isclose(fractions, 1.0).any() else float(fractions.max())


def _at_fraction(part: pd.DataFrame, fraction: float) -> pd.DataFrame:
    return part[np.isclose(part["label_fraction"].to_numpy(dtype=float), fraction)]


def _new_figure(height: float) -> MplFigure:
    fig = MplFigure(figsize=(WIDTH, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _fraction_note(fraction: float) -> str:
    return "" if math.isclose(fraction, 1.0) else f", label fraction {fraction:g}"


# --------------------------------------------------------------------------- figures
def _heatmaps(r: _Report) -> list[Figure]:
    """One method x task AUROC grid per protocol, on a colour scale shared by all protocols."""
    grids = {}
    for protocol in r.protocols:
        part = r.table[r.table["protocol"] == protocol]
        fraction = _full_fraction(part)
        grid = _at_fraction(part, fraction).pivot(
            index="label", columns="task", values="test_macro_auroc"
        )
        rows = [label for label in r.labels if label in grid.index]
        grids[protocol] = (
            fraction,
            grid.reindex(index=rows, columns=_ordered(grid.columns, TASK_ORDER)),
        )
    values = np.concatenate([g.to_numpy(dtype=float).ravel() for _, g in grids.values()])
    if not np.isfinite(values).any():
        return []
    vmin, vmax = float(np.nanmin(values)), float(np.nanmax(values))
    if vmax - vmin < 0.02:  # one value, or nearly: keep the colours apart from the scale's ends
        vmin, vmax = vmin - 0.01, vmax + 0.01
    figures = []
    for protocol, (fraction, grid) in grids.items():
        fig = _new_figure(1.5 + 0.42 * len(grid))
        ax = fig.add_subplot()
        sns.heatmap(
            grid, annot=True, fmt=".3f", cmap="viridis", vmin=vmin, vmax=vmax, linewidths=0.5,
            cbar_kws={"label": "test macro AUROC"}, ax=ax,
        )  # fmt: skip
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=0)
        figures.append(
            r.save(
                fig,
                f"heatmap-{protocol}",
                f"Test macro AUROC, {protocol} protocol{_fraction_note(fraction)}",
                f"Test macro AUROC on fold 10 for each method (rows) and task (columns) under the "
                f"{protocol} protocol at label fraction {fraction:g}, averaged over seeds. The "
                "colour scale is shared by the heatmaps of every protocol; empty cells were not run.",
            )
        )
    return figures


def _bars(r: _Report) -> list[Figure]:
    """Per task: horizontal AUROC bars per method, one bar per protocol, CI as error bars."""
    figures = []
    for task in r.tasks:
        part = r.table[r.table["task"] == task]
        fraction = _full_fraction(part)
        part = _at_fraction(part, fraction)
        labels = [label for label in r.labels if label in set(part["label"])]
        protocols = [p for p in r.protocols if p in set(part["protocol"])]
        height = 0.8 / len(protocols)
        fig = _new_figure(1.6 + 0.2 * len(labels) * (len(protocols) + 1))
        ax = fig.add_subplot()
        for j, protocol in enumerate(protocols):
            rows = part[part["protocol"] == protocol].set_index("label").reindex(labels)
            auroc = rows["test_macro_auroc"].to_numpy(dtype=float)
            shown = np.isfinite(auroc)
            errors = np.vstack([auroc - rows["ci_low"], rows["ci_high"] - auroc])
            errors = np.clip(np.nan_to_num(errors), 0, None)  # no CI: no error bar
            y = np.arange(len(labels)) + (j - (len(protocols) - 1) / 2) * height
            # bars start at chance, so their length is the gain over a random classifier
            ax.barh(
                y[shown], auroc[shown] - CHANCE, left=CHANCE, height=height, label=protocol,
                color=r.protocol_colours[protocol], xerr=errors[:, shown],
                error_kw={"ecolor": "0.25", "capsize": 2, "elinewidth": 1},
            )  # fmt: skip
        ax.axvline(CHANCE, color="0.3", lw=0.8)
        ax.set_yticks(np.arange(len(labels)), labels)
        ax.invert_yaxis()  # first method on top, as in the tables
        low = np.nanmin(np.append(part["ci_low"].to_numpy(dtype=float), CHANCE))
        high = np.nanmax(np.append(part["ci_high"].to_numpy(dtype=float), part["test_macro_auroc"]))
        ax.set_xlim(low - 0.02, min(high + 0.03, 1.01))
        ax.set_xlabel("test macro AUROC")
        ax.grid(axis="y", visible=False)
        fig.legend(title="protocol", loc="outside right upper", fontsize="small")
        figures.append(
            r.save(
                fig,
                f"bars-{task}",
                f"{task}: test macro AUROC by method and protocol{_fraction_note(fraction)}",
                f"Test macro AUROC on the {task} task (label fraction {fraction:g}), one bar per "
                "protocol; bars start at chance level (0.5) and the error bars are the bootstrap "
                "5-95 % interval of the test set, averaged over seeds.",
            )
        )
    return figures


def _label_efficiency(r: _Report) -> list[Figure]:
    """AUROC vs label fraction, one line per method and protocol with several fractions."""
    counts = r.table.groupby(["label", "protocol", "task"])["label_fraction"].nunique()
    multi = set(counts[counts >= 2].index)
    if not multi:
        return []
    tasks = [t for t in r.tasks if any(key[2] == t for key in multi)]
    ncols = 1 if len(tasks) == 1 else 2
    nrows = math.ceil(len(tasks) / ncols)
    fig = _new_figure(1.4 + 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    used_labels, used_protocols, fractions = [], [], set()
    for ax, task in zip(axes, tasks, strict=False):
        for label in r.labels:
            for protocol in r.protocols:
                if (label, protocol, task) not in multi:
                    continue
                rows = r.table[
                    (r.table["label"] == label)
                    & (r.table["protocol"] == protocol)
                    & (r.table["task"] == task)
                ].sort_values("label_fraction")
                x = rows["label_fraction"].to_numpy(dtype=float)
                colour = r.colours[label]
                ax.plot(x, rows["test_macro_auroc"], color=colour, ls=r.linestyles[protocol],
                        marker="o", ms=3.5)  # fmt: skip
                ax.fill_between(x, rows["ci_low"], rows["ci_high"], color=colour, alpha=0.12, lw=0)
                fractions.update(x)
                used_labels += [label] if label not in used_labels else []
                used_protocols += [protocol] if protocol not in used_protocols else []
        ax.set_xscale("log")
        ax.set_title(task)
        ax.set_xlabel("label fraction")
        ax.set_ylabel("test macro AUROC")
    for ax in axes:
        ax.set_xticks(sorted(fractions))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    for ax in axes[len(tasks) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=r.colours[label], lw=2, label=label) for label in used_labels]
    handles += [Line2D([], [], color="0.2", ls=r.linestyles[p], label=p) for p in used_protocols]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)),
               fontsize="small")  # fmt: skip
    return [
        r.save(
            fig,
            "label-efficiency",
            "Label efficiency: test macro AUROC vs labelled fraction",
            "Test macro AUROC (averaged over seeds) against the fraction of training labels used, "
            "on a log axis, one panel per task; colour is the method, line style the protocol, "
            "and the band the bootstrap 5-95 % interval. Flatter lines need fewer labels.",
        )
    ]


def _auroc_vs_budget(r: _Report) -> list[Figure]:
    """Per task with a budget sweep: AUROC against counted training FLOPs, one line per method
    and encoder over its runs (bootstrap CIs as error bars); reference rows, which have no
    pre-training, as horizontal lines with their CI band."""
    t = r.table
    ssl = t[(t["kind"] == "ssl") & t["pretrain_flops"].notna()]
    if ssl.empty:
        return []
    protocol = _compute_protocol(ssl)
    ssl = ssl[ssl["protocol"] == protocol]
    ssl = _at_fraction(ssl, _full_fraction(ssl))
    points = ssl.groupby(["task", "method", "encoder"])["pretrain_flops"].nunique()
    swept = points[points >= 2]
    figures = []
    for task in r.tasks:
        if task not in swept.index.get_level_values(0):
            continue
        fig = _new_figure(4.2)
        ax = fig.subplots()
        handles = []
        lines = list(swept.loc[task].index)
        refs = t[(t["kind"] != "ssl") & (t["task"] == task) & (t["protocol"] == protocol)]
        if not refs.empty:
            refs = _at_fraction(refs, _full_fraction(refs))
        # a run's own label colour would differ per budget: one colour per line here
        palette = iter(sns.color_palette("colorblind", len(lines) + len(refs)))
        for method, encoder in lines:
            rows = ssl[
                (ssl["task"] == task) & (ssl["method"] == method) & (ssl["encoder"] == encoder)
            ]
            rows = rows.sort_values("pretrain_flops")
            colour = next(palette)
            y = rows["test_macro_auroc"].to_numpy(dtype=float)
            low, high = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
            ax.errorbar(rows["pretrain_flops"], y, yerr=[y - low, high - y], color=colour,
                        marker="o", ms=4, capsize=3, lw=1.5)  # fmt: skip
            handles.append(Line2D([], [], color=colour, marker="o", label=f"{method} ({encoder})"))
        for _, ref in refs.iterrows():
            colour = next(palette)
            ax.axhline(ref["test_macro_auroc"], color=colour, ls="--", lw=1.2)
            ax.axhspan(ref["ci_low"], ref["ci_high"], color=colour, alpha=0.12, lw=0)
            handles.append(
                Line2D([], [], color=colour, ls="--", label=f"{ref['label']} (no pre-training)")
            )
        ax.set_xscale("log")
        ax.set_xlabel("pre-training compute: counted training FLOPs")
        ax.set_ylabel(f"test macro AUROC ({protocol})")
        fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)),
                   fontsize="small")  # fmt: skip
        figures.append(
            r.save(
                fig,
                f"auroc-vs-budget-{task}",
                f"{task}: test macro AUROC vs pre-training compute",
                f"Test macro AUROC on fold 10 ({protocol} protocol, averaged over seeds) of each "
                "method pre-trained at several budgets (bench run --budget-sweep), against the "
                "training FLOPs each run used (counted; at most its budget); bars: bootstrap "
                "5-95 % intervals. Dashed: reference rows without pre-training, with their band. "
                "A line that rises with compute is still learning; compare methods at equal x.",
            )
        )
    return figures


def _read_history(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(steps, losses)`` from a ``history.jsonl``, or None when absent, empty or unreadable."""
    try:
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        steps = np.array([e["step"] for e in entries], dtype=float)
        losses = np.array([e["loss"] for e in entries], dtype=float)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (steps, losses) if len(steps) else None


def _pretrain_loss(r: _Report, pretrain_root: Path) -> list[Figure]:
    """Loss per step of each SSL run; one panel per method since objectives differ in scale."""
    histories = {
        run.run_id: _read_history(pretrain_root / run.run_id / "history.jsonl") for run in r.runs
    }
    runs = [run for run in r.runs if histories[run.run_id] is not None]
    if not runs:
        return []
    methods = list(dict.fromkeys(run.method for run in runs))
    ncols = 1 if len(methods) == 1 else 2
    nrows = math.ceil(len(methods) / ncols)
    fig = _new_figure(1.0 + 2.7 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=False).ravel()
    for ax, method in zip(axes, methods, strict=False):
        for run in (run for run in runs if run.method == method):
            steps, losses = histories[run.run_id]
            window = max(1, len(losses) // 50)
            colour = r.colours[run.label]
            if window > 1:
                ax.plot(steps, losses, color=colour, alpha=0.25, lw=0.8)
            smooth = pd.Series(losses).rolling(window, min_periods=1, center=True).mean()
            ax.plot(steps, smooth, color=colour, lw=1.6, label=run.label)
        ax.set_title(method)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize="small")
    for ax in axes[len(methods) :]:
        ax.set_visible(False)
    missing = [run.label for run in r.runs if histories[run.run_id] is None]
    note = f" No loss history for: {', '.join(missing)}." if missing else ""
    return [
        r.save(
            fig,
            "pretrain-loss",
            "Pre-training loss",
            "Pre-training loss per optimiser step of each SSL run, one panel per method with its "
            "own y axis (objectives differ in scale, so compare curves within a panel only); "
            "solid: rolling mean over 2 % of the steps, faint: per-step values." + note,
        )
    ]


def _auroc_vs_compute(r: _Report, pretrain_root: Path) -> list[Figure]:
    """AUROC (linear protocol if run, label fraction 1) vs counted FLOPs and device hours."""
    from bench.flops import pretrain_total_flops, run_flops_per_sample

    ssl = r.table[r.table["run_id"].isin({run.run_id for run in r.runs})]
    if ssl.empty:
        return []
    protocol = _compute_protocol(ssl)
    points, no_directory, failed = [], [], []
    for run in r.runs:
        rows = ssl[(ssl["run_id"] == run.run_id) & (ssl["protocol"] == protocol)]
        if rows.empty:
            continue
        if not (pretrain_root / run.run_id / "config.json").is_file():
            no_directory.append(run.label)
            continue
        try:
            per_sample = run_flops_per_sample(pretrain_root / run.run_id)
            flops = pretrain_total_flops(
                per_sample, run.pretrain["batch_size"], run.pretrain["steps"]
            )
        except Exception:  # a method that cannot be rebuilt must not stop the report
            failed.append(run.label)
            continue
        seconds = float(run.pretrain.get("train_seconds") or 0.0)
        hours = seconds / 3600 if seconds > 0 else np.nan  # unknown time: not on the log axis
        for _, row in _at_fraction(rows, _full_fraction(rows)).iterrows():
            points.append((run.label, row["task"], flops, hours, row["test_macro_auroc"]))
    if not points:
        return []
    fig = _new_figure(4.4)
    axes = fig.subplots(1, 2, sharey=True)
    for label, task, flops, hours, auroc in points:
        style = {
            "color": r.colours[label],
            "marker": r.markers[task],
            "s": 45,
            "edgecolor": "white",
        }
        axes[0].scatter(flops, auroc, **style)
        if np.isfinite(hours):
            axes[1].scatter(hours, auroc, **style)
    for ax, xlabel in zip(
        axes, ("total pre-training FLOPs", "pre-training device hours"), strict=True
    ):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(f"test macro AUROC ({protocol})")
    labels = list(dict.fromkeys(p[0] for p in points))
    tasks = [t for t in r.tasks if t in {p[1] for p in points}]
    handles = [
        Line2D([], [], color=r.colours[label], marker="o", ls="", label=label) for label in labels
    ]
    handles += [Line2D([], [], color="0.35", marker=r.markers[t], ls="", label=t) for t in tasks]
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize="small"
    )
    notes = ""
    if no_directory:
        notes += f" Not shown, no pre-training run directory: {', '.join(no_directory)}."
    if failed:
        notes += f" Not shown, FLOPs could not be counted: {', '.join(failed)}."
    return [
        r.save(
            fig,
            "auroc-vs-compute",
            "Test macro AUROC vs pre-training compute",
            f"Test macro AUROC ({protocol} protocol, label fraction 1 or the largest run) of each "
            "SSL run against its pre-training compute: left, model FLOPs counted for one "
            "forward and backward step times samples seen; right, wall-clock training hours "
            "(train_seconds / 3600). Colour is the method, marker the task; up and left is "
            "better." + notes,
        )
    ]
