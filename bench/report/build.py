"""Write the whole leaderboard report of every dataset in a set of run records.

``results/leaderboard/<dataset slug>/``: ``leaderboard.csv``, ``leaderboard.md``,
``leaderboard.html`` and ``figures/*.png``. Synthetic and real datasets get separate directories,
so their rows never share a table. Every file is written to a temporary name and renamed into
place, so an interrupted report leaves the previous complete files, never half-written ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench.paths import results_dir
from bench.report.figures import make_figures
from bench.report.html import render_html
from bench.report.published import published_frame
from bench.report.tables import csv_frame, leaderboard_frame, markdown, slug


def write_report(
    records: list[dict],
    root: Path | None = None,
    pretrain_root: Path | None = None,
    figures: bool = True,
    echo: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write every dataset's report; returns the directories written (sorted by dataset).

    Args:
        records: complete run records (``RecordStore.records()``), any mix of datasets.
        root: the leaderboard directory (default ``results/leaderboard``).
        pretrain_root: pre-training runs, for loss curves and compute (default
            ``results/pretrain``).
        figures: draw the figures (the html then embeds them); tables are always written.
    """
    table = leaderboard_frame(records)
    if table.empty:
        return []
    root = root or results_dir() / "leaderboard"
    pretrain_root = pretrain_root or results_dir() / "pretrain"
    published = published_frame()
    written = []
    for dataset, part in table.groupby("dataset", sort=True):
        part = part.reset_index(drop=True)
        own = [r for r in records if r["dataset"]["name"] == dataset]
        directory = root / slug(str(dataset))
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(
            directory / "leaderboard.csv",
            csv_frame(part, published).to_csv(index=False, float_format="%.6f"),
        )
        atomic_write(directory / "leaderboard.md", markdown(part, published))
        drawn = make_figures(part, own, directory, pretrain_root) if figures else []
        if figures:
            keep = {f.path.resolve() for f in drawn}
            for stale in (directory / "figures").glob("*.png"):
                # A figure the records no longer support; never another writer's temporary
                # (two runs may share a results directory and report at the same time).
                if not stale.name.startswith(".") and stale.resolve() not in keep:
                    stale.unlink(missing_ok=True)
        atomic_write(directory / "leaderboard.html", render_html(part, own, drawn, published))
        if echo:
            echo(f"{dataset}: {len(part)} rows, {len(drawn)} figures -> {directory}")
        written.append(directory)
    return written


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written temporary
        raise
