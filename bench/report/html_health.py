"""The pre-training health parts of the HTML leaderboard page (:mod:`bench.health`): the cell
that ends every measured row (loss status, effective rank / D, relative spread, a warning
marker, every number in its tooltip) and the "Pre-training health" section it links to."""

from __future__ import annotations

import pandas as pd

from bench.health import DEFINITIONS, assess, collapse_kind, rank_note
from bench.report.html_text import anchor as _anchor
from bench.report.html_text import badges as _badges
from bench.report.html_text import escape as _e

_NOT_RECORDED = (
    "not recorded: the records of this run were written before health signals existed; "
    "evaluating the run again (any new task, protocol or seed) records them"
)


def _collapsed(health: dict, key: str) -> bool:
    """Mark the number that shows the run's collapse: the relative spread for a complete one,
    the rank column (which carries the signal directions) for a dimensional one."""
    kind = collapse_kind(health)
    return kind == ("complete" if key == "relative_spread" else "dimensional")


def health_cell(health: dict | None, kind: str, run_id: str) -> str:
    """The compact health of a row's run: loss status, effective rank / D, relative spread, a
    warning marker, and every number in the tooltip; links to the run's health row."""
    if not health:
        return f'<td class="health none" data-value="" title="{_e(_NOT_RECORDED)}">–</td>'
    warnings = assess(health)
    loss, end = health.get("loss") or {}, health.get("features") or {}
    parts = []
    if loss:
        status = str(loss.get("status"))
        parts.append(
            f'<span class="loss-status status-{_e(status.replace(" ", "-"))}">{_e(status)}</span>'
        )
    elif kind != "ssl":
        parts.append('<span class="loss-status status-init">at init</span>')
    rank, relative = end.get("effective_rank"), end.get("relative_spread")
    down = '<span class="down" title="below init">↓</span>'
    if rank is not None:
        arrow = down if _collapsed(health, "effective_rank") else ""
        parts.append(f'<span class="metric rank">rank {rank:.1f}/{end.get("dim")}{arrow}</span>')
    if relative is not None:
        arrow = down if _collapsed(health, "relative_spread") else ""
        parts.append(f'<span class="metric spread">spread {relative:.2f}{arrow}</span>')
    marker = (
        '<span class="health-warning" role="img" aria-label="warning">⚠</span> ' if warnings else ""
    )
    return (
        f'<td class="health{" warn" if warnings else ""}" data-value="{len(warnings)}" '
        f'title="{_e(_health_tooltip(health, warnings, run_id))}">'
        f'<a href="#{_anchor("health", run_id)}">{marker}{" ".join(parts)}</a></td>'
    )


def _health_tooltip(health: dict, warnings: list, run_id: str) -> str:
    loss, end = health.get("loss") or {}, health.get("features") or {}
    init, sample = health.get("features_init") or {}, health.get("sample") or {}
    lines = [f"Pre-training health of {run_id}"]
    if loss and loss.get("min") is not None:
        lines.append(
            f"Loss: {loss['summary']}; minimum {loss['min']:.4g} at step {loss['min_step']} of "
            f"{loss['steps']} (first {loss['first']:.4g}, final {loss['final']:.4g}, smoothed "
            f"over {loss['window']} steps)"
        )
    elif loss:
        lines.append(f"Loss: {loss.get('summary')}")
    else:
        lines.append("Loss: none (reference row, no pre-training)")
    for key, name, fmt in (
        ("effective_rank", "Effective rank", "{:.1f}"),
        ("relative_spread", "Relative spread", "{:.3f}"),
        ("spread", "Spread (mean std over samples)", "{:.4g}"),
    ):
        if end.get(key) is not None:
            text = f"{name}: {fmt.format(end[key])}"
            if key == "effective_rank":
                text += f" of D = {end.get('dim')}"
            if init.get(key) is not None:
                text += f" (init {fmt.format(init[key])})"
            lines.append(text)
    if sample:
        lines.append(
            f"Features of {sample.get('records')} of {sample.get('of_records')} training "
            f"records, {sample.get('crops_per_record')} crop each"
        )
    lines += [f"⚠ {w.message}" for w in warnings]
    lines.append("Click for the definitions.")
    return "\n".join(lines)


def health_section(table: pd.DataFrame, health: dict[str, dict]) -> str:
    """One row per run of the page with every health number, then the definitions."""
    source = table["source_run_id"] if "source_run_id" in table else table["run_id"]
    runs = (
        table.assign(source=source, reference=table["kind"] != "ssl")
        .drop_duplicates("source")
        .sort_values(["reference", "method", "encoder", "source"])
    )
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in (
            "run", "loss curve", "effective rank (D)<br>init → end",
            "relative spread<br>init → end", "spread<br>init → end", "warnings",
        )
    )  # fmt: skip
    rows = []
    for row in runs.itertuples():
        h = health.get(row.source)
        run = (
            f"{_e(row.method)} ({_e(row.encoder)}){_badges(str(row.kind))}"
            f"<br><code>{_e(row.source)}</code>"
        )
        anchor = _anchor("health", row.source)
        if not h:
            rows.append(
                f'<tr id="{anchor}" data-run-id="{_e(row.source)}" class="none"><td>{run}</td>'
                f'<td colspan="5" class="muted wraps">{_e(_NOT_RECORDED)}</td></tr>'
            )
            continue
        warnings = assess(h)
        loss, end = h.get("loss") or {}, h.get("features") or {}
        init, sample = h.get("features_init") or {}, h.get("sample") or {}
        if loss and loss.get("min") is not None:
            curve = (
                f"<strong>{_e(loss['summary'])}</strong><br>"
                f'<span class="muted">minimum {loss["min"]:.4g} at step {loss["min_step"]} of '
                f"{loss['steps']}; smoothed {loss['first']:.4g} → {loss['final']:.4g}</span>"
            )
        elif loss:
            curve = f"<strong>{_e(loss.get('summary'))}</strong>"
        else:
            curve = '<span class="muted">reference row: encoder at init, no pre-training</span>'
        crops = (
            f"{sample.get('records')} of {sample.get('of_records')} training records, "
            f"{sample.get('crops_per_record')} crop each"
            if sample
            else ""
        )
        rank = _change(
            init.get("effective_rank"), end.get("effective_rank"), "{:.1f}",
            _collapsed(h, "effective_rank"),
        ) + (f" ({end['dim']})" if end else "")  # fmt: skip
        if end.get("signal_dims") is not None:
            rank += "; signal directions " + _change(
                init.get("signal_dims"), end["signal_dims"], "{:d}", False
            )
        cells = [
            run,
            curve,
            f'<span title="{_e(crops)}">{rank}</span>',
            _change(init.get("relative_spread"), end.get("relative_spread"), "{:.3f}",
                    _collapsed(h, "relative_spread")),
            _change(init.get("spread"), end.get("spread"), "{:.3g}", False),
            "<ul>" + "".join(
                f'<li class="{_e(w.code)}"><span class="health-warning">⚠</span> {_e(w.message)}</li>'
                for w in warnings
            ) + "</ul>" if warnings else f'<span class="muted">{_e(rank_note(h) or "none")}</span>',
        ]  # fmt: skip
        css = ' class="warn"' if warnings else ""
        rows.append(
            f'<tr id="{anchor}" data-run-id="{_e(row.source)}"{css}>'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    definitions = "".join(
        f"<dt>{_e(name)}</dt><dd>{_e(DEFINITIONS[key])}</dd>"
        for key, name in (
            ("loss", "Loss curve"),
            ("spread", "Spread and relative spread"),
            ("effective_rank", "Effective rank"),
            ("signal_dims", "Signal directions"),
            ("collapse", "Collapse: complete or dimensional"),
        )
    )
    return (
        '<section id="health" class="card">\n<h2>Pre-training health</h2>\n'
        '<p class="legend">Whether the budget behind a row was large enough to mean something: '
        "the shape of the pre-training loss curve (JEPA-style losses first fall by predicting "
        "the sample-independent part of their targets, then turn; a run that ends still "
        "falling stopped inside that phase), and the spread and effective rank of the frozen "
        "encoder's pooled features at the end of pre-training against the same encoder at its "
        "initial weights, on the same training-fold crops (a complete collapse shows as a "
        "falling relative spread, a dimensional one as fewer signal directions). "
        "Reference rows show their encoder at init, the floor to compare with.</p>\n"
        f'<div class="scroll"><table class="health-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>\n"
        f'<dl class="definitions">{definitions}</dl>\n</section>'
    )


def _change(init, end, fmt: str, collapsed: bool) -> str:
    if end is None:
        return ""
    text = fmt.format(end) if init is None else f"{fmt.format(init)} → {fmt.format(end)}"
    return f'<span class="collapsed">{_e(text)} ↓</span>' if collapsed else _e(text)
