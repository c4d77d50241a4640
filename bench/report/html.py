"""Self-contained HTML leaderboard page (figures embedded), (implementation in progress)."""

from __future__ import annotations

import pandas as pd

from bench.report.figures import Figure


def render_html(
    table: pd.DataFrame, records: list[dict], figures: list[Figure], published: pd.DataFrame
) -> str:
    """The page for ONE dataset: tables, figures, per-label drill-down and provenance."""
    raise NotImplementedError
