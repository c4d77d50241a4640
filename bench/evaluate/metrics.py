"""Benchmark metrics (PROTOCOL.md 1.2), window aggregation and label-stratified subsets (1.3).

Everything here is pure numpy / scikit-learn and works on plain arrays:

- ``y_true`` is a multi-hot matrix of shape ``(n_records, n_labels)`` with 0/1 entries;
- ``scores`` has the same shape and holds any per-label monotone score (logits or
  probabilities); AUROC and AP only depend on the order of the scores within a label.

A label without a positive (or without a negative) among the evaluated records has no AUROC.
Such labels are reported and left out of the macro averages, never averaged in as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.errors import BenchError

__all__ = [
    "AGGREGATIONS",
    "aggregate_windows",
    "bootstrap_ci",
    "ci_notation",
    "evaluable_labels",
    "label_metrics",
    "macro_auroc",
    "paired_bootstrap",
    "stratified_fraction",
]

AGGREGATIONS = ("mean_logits", "max_prob")

# Upper bound on the elements of one (resamples, records, labels) block in the bootstrap, so the
# full test fold (~2,200 records x 71 labels) stays at a few hundred MB of temporaries.
_BLOCK_ELEMENTS = 2_000_000
# Resamples drawn per round while searching for acceptable ones; fixed so draws are reproducible.
_DRAW_CHUNK = 256


# --------------------------------------------------------------------------- validation
def _as_labels(y_true, name: str = "y_true") -> np.ndarray:
    """Check a multi-hot matrix and return it as int8, shape ``(n, k)``."""
    y = np.asarray(y_true)
    if y.ndim != 2:
        raise BenchError(
            f"{name} must be 2-D (records x labels), got shape {y.shape}",
            hint="pass a multi-hot matrix; for one label use y[:, None]",
        )
    if y.shape[0] == 0 or y.shape[1] == 0:
        raise BenchError(f"{name} is empty (shape {y.shape}); nothing to evaluate")
    if y.dtype == bool:
        return y.astype(np.int8)
    if not np.issubdtype(y.dtype, np.number):
        raise BenchError(f"{name} must be numeric 0/1, got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise BenchError(
            f"{name} must contain only 0 and 1; {int(bad.sum())} other values found "
            f"(e.g. {y[bad][0]!r})",
            hint="labels are multi-hot; threshold probabilities before passing them as labels",
        )
    return y.astype(np.int8)


def _as_scores(scores, shape: tuple[int, int]) -> np.ndarray:
    """Check a score matrix against the label matrix shape; return float64 ``(n, k)``."""
    s = np.asarray(scores)
    if s.ndim != 2:
        raise BenchError(f"scores must be 2-D (records x labels), got shape {s.shape}")
    if s.shape != shape:
        raise BenchError(
            f"scores shape {s.shape} does not match y_true shape {shape}",
            hint="scores and labels need one row per record and one column per label, "
            "in the same order",
        )
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise BenchError(f"scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        raise BenchError(
            f"scores contain {int(bad.sum())} non-finite value(s) (NaN or inf) out of {s.size}",
            hint="the model diverged or a record produced NaN features; check training logs",
        )
    return s


def _no_evaluable_error(y: np.ndarray) -> BenchError:
    pos = y.sum(axis=0)
    return BenchError(
        f"no label has both a positive and a negative among the {y.shape[0]} records "
        f"({int((pos == 0).sum())} without positive, {int((pos == y.shape[0]).sum())} without "
        f"negative, of {y.shape[1]} labels); AUROC is undefined",
        hint="evaluate on a larger split or a task whose labels vary across these records",
    )


# --------------------------------------------------------------------------- point metrics
def evaluable_labels(y_true) -> np.ndarray:
    """Which labels have at least one positive and one negative.

    Args:
        y_true: ``(n, k)`` 0/1 multi-hot labels.

    Returns:
        ``(k,)`` bool mask, True where the label's AUROC / AP are defined.
    """
    y = _as_labels(y_true)
    pos = y.sum(axis=0, dtype=np.int64)
    return (pos > 0) & (pos < y.shape[0])


def label_metrics(y_true, scores, classes: Sequence[str]) -> dict:
    """Per-label and macro AUROC and average precision, excluding one-class labels.

    Args:
        y_true: ``(n, k)`` 0/1 multi-hot labels.
        scores: ``(n, k)`` finite scores (logits or probabilities; any monotone score per label).
        classes: ``k`` label names, in column order.

    Returns:
        A JSON-ready dict: ``macro_auroc`` and ``macro_ap`` (means over evaluable labels only),
        ``per_label_auroc`` / ``per_label_ap`` (``{class: float | None}``, None for excluded
        labels), ``excluded_labels`` (``[{"label": name, "reason": "no positive" |
        "no negative"}]``), ``n_records``, ``n_labels``, ``n_labels_evaluated``.

    Raises:
        BenchError: on shape mismatches, non-finite scores, or when no label is evaluable.
    """
    y = _as_labels(y_true)
    s = _as_scores(scores, y.shape)
    classes = [str(c) for c in classes]
    if len(classes) != y.shape[1]:
        raise BenchError(
            f"{len(classes)} class names given for {y.shape[1]} label columns",
            hint="pass one class name per column of y_true, in column order",
        )
    if len(set(classes)) != len(classes):
        raise BenchError("class names must be unique; per-label results are keyed by name")
    n, k = y.shape
    pos = y.sum(axis=0, dtype=np.int64)
    per_auroc: dict[str, float | None] = {}
    per_ap: dict[str, float | None] = {}
    excluded: list[dict[str, str]] = []
    aurocs: list[float] = []
    aps: list[float] = []
    for j, name in enumerate(classes):
        if pos[j] == 0 or pos[j] == n:
            per_auroc[name] = per_ap[name] = None
            excluded.append(
                {"label": name, "reason": "no positive" if pos[j] == 0 else "no negative"}
            )
            continue
        auroc = float(roc_auc_score(y[:, j], s[:, j]))
        ap = float(average_precision_score(y[:, j], s[:, j]))
        per_auroc[name], per_ap[name] = auroc, ap
        aurocs.append(auroc)
        aps.append(ap)
    if not aurocs:
        raise _no_evaluable_error(y)
    return {
        "macro_auroc": float(np.mean(aurocs)),
        "macro_ap": float(np.mean(aps)),
        "per_label_auroc": per_auroc,
        "per_label_ap": per_ap,
        "excluded_labels": excluded,
        "n_records": int(n),
        "n_labels": int(k),
        "n_labels_evaluated": len(aurocs),
    }


def macro_auroc(y_true, scores) -> float:
    """Macro AUROC over the evaluable labels, equal to ``label_metrics(...)["macro_auroc"]``.

    For model selection, called once per epoch: one vectorised pass over all labels
    (:func:`_weighted_auroc_ap` with unit weights) instead of a scikit-learn call per label and
    metric (~1 ms each, mostly input checks; 70 % of a linear probe's time on 71 labels).
    """
    y = _as_labels(y_true)
    s = _as_scores(scores, y.shape)
    auroc, _ = _weighted_auroc_ap(y, s, np.ones((1, y.shape[0])))
    evaluable = ~np.isnan(auroc[0])
    if not evaluable.any():
        raise _no_evaluable_error(y)
    return float(auroc[0, evaluable].mean())


# --------------------------------------------------------------------------- bootstrap
def _multiplicities(idx: np.ndarray) -> np.ndarray:
    """How often each record occurs in each resample: ``idx`` ``(b, n)`` -> ``(b, n)`` int."""
    b, n = idx.shape
    offsets = (np.arange(b, dtype=np.int64) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=b * n).reshape(b, n)


def _positive_counts(idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Positives per label in each resample: ``idx`` ``(b, n)``, ``y`` ``(n, k)`` -> ``(b, k)``."""
    return _multiplicities(idx).astype(np.float64) @ y.astype(np.float64)


def _weighted_auroc_ap(y: np.ndarray, s: np.ndarray, weights: np.ndarray):
    """AUROC and AP of many resamples at once, equal to scikit-learn's on the resampled rows.

    Calling scikit-learn per label and resample costs ~1 ms each (input checks dominate) and the
    bootstrap needs ~14k calls on the full label set. A resample is a multiset of the records, so
    its sorted order is the full split's sorted order with multiplicities: one sort per label,
    then weighted cumulative sums. Ties are handled as scikit-learn does: AUROC gives tied
    positive-negative pairs half credit, AP evaluates precision once per distinct score.

    Args:
        y: ``(n, k)`` 0/1 labels of the full split.
        s: ``(n, k)`` scores of the full split.
        weights: ``(b, n)`` multiplicity of each record in each of ``b`` resamples.

    Returns:
        ``(auroc, ap)``, each ``(b, k)``; NaN where a resample lacks positives or negatives.
    """
    n, k = s.shape
    order = np.argsort(-s, axis=0, kind="stable").T  # (k, n), descending scores per label
    cols = np.arange(k)[:, None]
    ss = s[order, cols]
    ys = y[order, cols].astype(np.float64)
    # Tie groups of the sorted scores: first and last sorted position of each row's group.
    pos_idx = np.arange(n)
    differs = ss[:, 1:] != ss[:, :-1]
    edge = np.ones((k, 1), dtype=bool)
    start = np.maximum.accumulate(np.where(np.hstack([edge, differs]), pos_idx, 0), axis=1)
    end = np.where(np.hstack([differs, edge]), pos_idx, n - 1)
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]

    w = weights[:, order].astype(np.float64)  # (b, k, n): multiplicities in sorted order
    pos_w = w * ys
    tp = np.cumsum(pos_w, axis=2)
    seen = np.cumsum(w, axis=2)
    # Negatives ranked above (or at) each position; a leading 0 gives "before the group start".
    neg = np.concatenate([np.zeros(w.shape[:2] + (1,)), np.cumsum(w - pos_w, axis=2)], axis=2)
    n_pos = tp[..., -1]
    n_neg = neg[..., -1]
    neg_to_end = neg[:, cols, end + 1]
    tied_neg = neg_to_end - neg[:, cols, start]
    with np.errstate(invalid="ignore", divide="ignore"):
        # Each positive beats the negatives below its tie group and half of those tied with it.
        auroc = (pos_w * (n_neg[..., None] - neg_to_end + 0.5 * tied_neg)).sum(axis=2)
        auroc /= n_pos * n_neg
        # Each positive adds the precision at the end of its tie group (one threshold per score).
        precision = tp[:, cols, end] / np.maximum(seen[:, cols, end], 1.0)
        ap = (pos_w * precision).sum(axis=2) / n_pos
    undefined = (n_pos == 0) | (n_neg == 0)
    auroc[undefined] = np.nan
    ap[undefined] = np.nan
    return auroc, ap


def _bootstrap_indices(
    y: np.ndarray, n_resamples: int, seed: int, max_draws: int
) -> tuple[np.ndarray, str, int]:
    """Draw record resamples for the benchmark bootstrap.

    Args:
        y: ``(n, k)`` 0/1 labels restricted to the labels evaluable on the full split.
        n_resamples: resamples to return.
        seed: seed of the numpy Generator.
        max_draws: resamples to try in ``every-label`` mode before falling back to ``relaxed``.

    Returns:
        ``(idx, mode, draws)``: ``idx`` ``(n_resamples, n)`` record indices; ``mode`` is
        ``"every-label"`` when every resample has both classes in every label, else
        ``"relaxed"`` (each resample has both classes in at least one label); ``draws`` is the
        number of resamples drawn in total, rejected ones included.
    """
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    chunk = max(_DRAW_CHUNK, min(n_resamples, 4 * _DRAW_CHUNK))
    n_kept = 0
    draws = 0
    for mode in ("every-label", "relaxed"):
        kept: list[np.ndarray] = []
        n_kept = 0  # relaxed starts afresh: rejected draws would bias the kept ones
        # Relaxed mode rejects only degenerate resamples; the cap guards against a loop forever.
        limit = max_draws if mode == "every-label" else draws + 1000 * n_resamples
        while n_kept < n_resamples and draws < limit:
            idx = rng.integers(0, n, size=(min(chunk, limit - draws), n))
            pos = _positive_counts(idx, y)
            both = (pos > 0) & (pos < n)
            ok = both.all(axis=1) if mode == "every-label" else both.any(axis=1)
            hits = np.flatnonzero(ok)[: n_resamples - n_kept]
            if len(hits) == n_resamples - n_kept:
                draws += int(hits[-1]) + 1  # the rest of the chunk was never looked at
            else:
                draws += len(idx)
            kept.append(idx[hits])
            n_kept += len(hits)
        if n_kept == n_resamples:
            return np.concatenate(kept), mode, draws
    raise BenchError(
        f"bootstrap found only {n_kept} of {n_resamples} usable resamples in "
        f"{draws} draws: almost every resample lacks both classes in every label",
        hint="the split is too small to bootstrap; evaluate on more records",
    )


def bootstrap_ci(
    y_true,
    scores,
    n_resamples: int = 100,
    seed: int = 0,
    percentiles: tuple[float, float] = (5.0, 95.0),
    max_draws: int | None = None,
) -> dict:
    """Percentile bootstrap CI of macro AUROC and macro AP over records (PTB-XL benchmark).

    Records are drawn with replacement. A resample is accepted only when every label that is
    evaluable on the full split has a positive and a negative in it, and the macro metrics are
    averaged over those labels (mode ``"every-label"``, the benchmark's rule). With many rare
    labels (one positive among the test records) acceptance can become practically impossible:
    after ``max_draws`` draws the function falls back to mode ``"relaxed"``, a fresh set of
    ``n_resamples`` resamples each averaged over the labels that have both classes in it.

    Args:
        y_true: ``(n, k)`` 0/1 multi-hot labels.
        scores: ``(n, k)`` finite scores (any monotone score per label).
        n_resamples: accepted resamples to compute (benchmark: 100).
        seed: seed of the numpy Generator; the result is deterministic per seed.
        percentiles: lower and upper percentile of the interval (benchmark: 5th-95th).
        max_draws: draws allowed in every-label mode; default ``200 * n_resamples``.

    Returns:
        ``{"macro_auroc": [lo, hi], "macro_ap": [lo, hi], "n_resamples": int,
        "mode": "every-label" | "relaxed", "draws": int, "percentiles": [lo_pct, hi_pct]}``.

    Raises:
        BenchError: on invalid inputs or arguments, or when no label is evaluable.
    """
    y = _as_labels(y_true)
    s = _as_scores(scores, y.shape)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise BenchError(f"n_resamples must be an integer, got {n_resamples!r}")
    if n_resamples < 1:
        raise BenchError(f"n_resamples must be at least 1, got {n_resamples}")
    max_draws = 200 * int(n_resamples) if max_draws is None else max_draws
    if isinstance(max_draws, bool) or not isinstance(max_draws, (int, np.integer)):
        raise BenchError(f"max_draws must be an integer or None, got {max_draws!r}")
    if max_draws < 0:
        raise BenchError(f"max_draws must be >= 0, got {max_draws}")
    lo_pct, hi_pct = (float(p) for p in percentiles)
    if not 0.0 <= lo_pct <= hi_pct <= 100.0:
        raise BenchError(
            f"percentiles must satisfy 0 <= low <= high <= 100, got {tuple(percentiles)}"
        )
    labels = evaluable_labels(y)
    if not labels.any():
        raise _no_evaluable_error(y)
    y, s = y[:, labels], s[:, labels]
    n, k = y.shape

    idx, mode, draws = _bootstrap_indices(y, int(n_resamples), int(seed), int(max_draws))
    macro_auroc = np.empty(len(idx))
    macro_ap = np.empty(len(idx))
    step = max(1, _BLOCK_ELEMENTS // (n * k))
    for i in range(0, len(idx), step):
        block = idx[i : i + step]
        auroc, ap = _weighted_auroc_ap(y, s, _multiplicities(block))
        # Every-label resamples have no NaN; relaxed ones average over the labels present.
        macro_auroc[i : i + step] = np.nanmean(auroc, axis=1)
        macro_ap[i : i + step] = np.nanmean(ap, axis=1)
    q = [lo_pct, hi_pct]
    return {
        "macro_auroc": [float(v) for v in np.percentile(macro_auroc, q)],
        "macro_ap": [float(v) for v in np.percentile(macro_ap, q)],
        "n_resamples": int(n_resamples),
        "mode": mode,
        "draws": int(draws),
        "percentiles": q,
    }


def paired_bootstrap(
    y_true,
    scores_a,
    scores_b,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Paired bootstrap of the macro AUROC difference A - B on the same test records.

    Both subjects are scored on the same resamples (the same record multisets), so the interval
    reflects the test-set sampling they share, not two independent intervals. Resamples follow the
    benchmark rule of :func:`bootstrap_ci` (every evaluable label has both classes; ``relaxed``
    fallback). With several seeds, the difference of each resample is the mean over seeds of the
    per-seed differences (seed ``i`` of A paired with seed ``i`` of B).

    The two-sided p-value is the bootstrap percentile test of "no difference":
    ``2 * min(P*(d <= 0), P*(d >= 0))`` with the ``(1 + count) / (1 + B)`` correction, capped at
    1; identical scores give exactly 1.

    Args:
        y_true: ``(n, k)`` 0/1 labels of the test records.
        scores_a: ``(n, k)`` or ``(s, n, k)`` scores of A (``s`` seeds).
        scores_b: the same shape as ``scores_a``, rows in the same record order.
        n_resamples: accepted resamples.
        seed: seed of the resampling.
        confidence: two-sided level of the interval of the difference.

    Returns:
        ``{"auroc_a", "auroc_b", "difference", "ci": [lo, hi], "p_value", "p_a_better",
        "confidence", "n_resamples", "mode", "n_records", "n_labels", "n_seeds"}``;
        ``p_a_better`` is the share of resamples where A's macro AUROC exceeds B's.
    """
    y = _as_labels(y_true)
    a, b = np.asarray(scores_a), np.asarray(scores_b)
    a, b = (x[None] if x.ndim == 2 else x for x in (a, b))  # one seed: (1, n, k)
    if a.shape != b.shape or a.ndim != 3:
        raise BenchError(
            f"paired scores must have the same shape (n, k) or (seeds, n, k), "
            f"got {np.shape(scores_a)} and {np.shape(scores_b)}"
        )
    a = np.stack([_as_scores(x, y.shape) for x in a])
    b = np.stack([_as_scores(x, y.shape) for x in b])
    if not 0.0 < confidence < 1.0:
        raise BenchError(f"confidence must lie in (0, 1), got {confidence}")
    labels = evaluable_labels(y)
    if not labels.any():
        raise _no_evaluable_error(y)
    y, a, b = y[:, labels], a[..., labels], b[..., labels]
    n, k = y.shape

    def macro(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.nanmean(_weighted_auroc_ap(y, scores, weights)[0], axis=1)

    ones = np.ones((1, n), dtype=np.int64)
    auroc_a = float(np.mean([macro(s, ones)[0] for s in a]))
    auroc_b = float(np.mean([macro(s, ones)[0] for s in b]))
    idx, mode, _ = _bootstrap_indices(y, int(n_resamples), int(seed), 200 * int(n_resamples))
    diffs = np.empty(len(idx))
    step = max(1, _BLOCK_ELEMENTS // (n * k))
    for i in range(0, len(idx), step):
        weights = _multiplicities(idx[i : i + step])
        per_seed = [macro(sa, weights) - macro(sb, weights) for sa, sb in zip(a, b, strict=True)]
        diffs[i : i + step] = np.mean(per_seed, axis=0)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    below, above = np.sum(diffs <= 0), np.sum(diffs >= 0)
    p_value = min(1.0, 2 * min(1 + below, 1 + above) / (1 + len(diffs)))
    return {
        "auroc_a": auroc_a,
        "auroc_b": auroc_b,
        "difference": auroc_a - auroc_b,
        "ci": [float(low), float(high)],
        "p_value": float(p_value),
        "p_a_better": float(np.mean(diffs > 0)),
        "confidence": confidence,
        "n_resamples": int(n_resamples),
        "mode": mode,
        "n_records": int(n),
        "n_labels": int(k),
        "n_seeds": int(len(a)),
    }


# --------------------------------------------------------------------------- windows
def aggregate_windows(window_scores, how: str = "mean_logits") -> np.ndarray:
    """Aggregate per-window logits to one score per record and label.

    Args:
        window_scores: ``(n_records, n_windows, k)`` logits of the sliding evaluation windows.
        how: ``"mean_logits"`` (mean of logits over windows; Weimann & Conrad, the default) or
            ``"max_prob"`` (max over windows of sigmoid(logits); the Strodthoff benchmark).

    Returns:
        ``(n_records, k)`` float64 scores: logits for ``mean_logits``, probabilities for
        ``max_prob``.
    """
    if how not in AGGREGATIONS:
        raise BenchError(
            f"unknown window aggregation {how!r}",
            hint=f"choose one of: {', '.join(AGGREGATIONS)}",
        )
    w = np.asarray(window_scores, dtype=np.float64)
    if w.ndim != 3:
        raise BenchError(
            f"window scores must be 3-D (records x windows x labels), got shape {w.shape}"
        )
    if w.shape[1] == 0:
        raise BenchError("window scores have no windows (shape {w.shape}); nothing to aggregate")
    if how == "mean_logits":
        return w.mean(axis=1)
    return expit(w).max(axis=1)  # expit: no overflow warning for very negative logits


# --------------------------------------------------------------------------- notation
def ci_notation(point, low, high, digits: int = 3) -> str:
    """Leaderboard notation ``0.925(08)``: point estimate and the larger CI deviation.

    Args:
        point: point estimate; None or NaN gives ``"n/a"``.
        low: lower CI bound (None / NaN: the point alone is returned).
        high: upper CI bound (None / NaN: the point alone is returned).
        digits: decimals of the point estimate.

    Returns:
        The point rounded to ``digits`` decimals followed by the larger of ``|point - low|`` and
        ``|high - point|`` in units of the last digit, rounded half up and zero-padded to at least
        two digits: 0.008 -> ``(08)``, 0.0123 -> ``(12)``, 0.123 -> ``(123)``.
    """

    def missing(v) -> bool:
        return v is None or not math.isfinite(float(v))

    if missing(point):
        return "n/a"
    text = f"{float(point):.{digits}f}"
    if missing(low) or missing(high):
        return text
    deviation = max(abs(float(point) - float(low)), abs(float(high) - float(point)))
    # Round away binary noise first (0.925 - 0.917 = 0.00800000000000000711), then half up.
    units = int(math.floor(round(deviation * 10**digits, 6) + 0.5))
    return f"{text}({units:02d})"


# --------------------------------------------------------------------------- label efficiency
def stratified_fraction(y, fraction: float, seed: int) -> np.ndarray:
    """Label-stratified subset of the training rows for label-efficiency runs (1 %, 10 %, ...).

    Each row joins the group of its rarest positive label (frequency in ``y``; ties go to the
    first column); rows without a positive form one more group. From every group
    ``round(fraction * size)`` rows are taken, at least one, by a seeded permutation. A label
    can still lose all its positives when each of its rows was grouped under a rarer label; for
    each such label (rarest first) one of its rows is added at random, so every label with a
    positive in ``y`` keeps at least one.

    Args:
        y: ``(n, k)`` 0/1 multi-hot labels of the training rows.
        fraction: share of rows to keep, in (0, 1]; 1.0 keeps every row.
        seed: seed of the numpy Generator; the subset is deterministic per seed.

    Returns:
        Sorted int64 row indices into ``y``, shape ``(m,)``.
    """
    labels = _as_labels(y, "y")
    if isinstance(fraction, bool) or not isinstance(
        fraction, (int, float, np.integer, np.floating)
    ):
        raise BenchError(f"fraction must be a number in (0, 1], got {fraction!r}")
    fraction = float(fraction)
    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise BenchError(
            f"fraction must be in (0, 1], got {fraction}",
            hint="use e.g. 0.01 for 1 %, 0.1 for 10 %, 1.0 for every training record",
        )
    n, k = labels.shape
    if fraction == 1.0:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    freq = labels.sum(axis=0, dtype=np.int64)
    # Rarest positive label per row: absent labels get a frequency above every real one.
    masked = np.where(labels == 1, freq[None, :], n + 1)
    group = np.where(labels.any(axis=1), masked.argmin(axis=1), k)  # k = "no positive label"
    chosen: list[np.ndarray] = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        take = max(1, int(math.floor(fraction * len(members) + 0.5)))
        chosen.append(rng.permutation(members)[:take])
    keep = np.zeros(n, dtype=bool)
    keep[np.concatenate(chosen)] = True
    for j in np.argsort(freq, kind="stable"):
        if freq[j] > 0 and not labels[keep, j].any():
            keep[rng.choice(np.flatnonzero(labels[:, j] == 1))] = True
    return np.flatnonzero(keep).astype(np.int64)
