"""Leaderboard figures (seaborn), written as PNG files next to the tables.

(implementation in progress)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Figure:
    """One PNG written by :func:`make_figures`."""

    name: str  # file stem, unique per dataset, e.g. "heatmap-linear"
    title: str  # short heading shown above the image
    caption: str  # one or two sentences saying what is plotted and how to read it
    path: Path  # the PNG file


def make_figures(
    table: pd.DataFrame, records: list[dict], out_dir: Path, pretrain_root: Path | None = None
) -> list[Figure]:
    """Draw every figure the records of ONE dataset allow; returns them in display order."""
    raise NotImplementedError
