"""Benchmark metrics (bench/evaluate/metrics.py): agreement with scikit-learn, exclusion of
one-class labels, the every-label bootstrap and its relaxed fallback, window aggregation, the
leaderboard notation and label-stratified subsets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.errors import BenchError
from bench.evaluate.metrics import (
    AGGREGATIONS,
    _bootstrap_indices,
    _multiplicities,
    _weighted_auroc_ap,
    aggregate_windows,
    bootstrap_ci,
    ci_notation,
    evaluable_labels,
    label_metrics,
    stratified_fraction,
)


def make_data(n: int = 200, k: int = 6, seed: int = 0, signal: float = 1.0):
    """Random multi-hot labels ``(n, k)`` (every label with both classes) and noisy logits."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rng.uniform(0.1, 0.5, size=k)).astype(np.int64)
    y[0], y[1] = 1, 0  # guarantee both classes in every column
    scores = rng.normal(size=(n, k)) + signal * y
    return y, scores


def names(k: int) -> list[str]:
    return [f"L{j}" for j in range(k)]


# --------------------------------------------------------------------------- label_metrics
def test_label_metrics_matches_sklearn():
    y, s = make_data()
    out = label_metrics(y, s, names(6))
    auroc = [roc_auc_score(y[:, j], s[:, j]) for j in range(6)]
    ap = [average_precision_score(y[:, j], s[:, j]) for j in range(6)]
    assert out["macro_auroc"] == pytest.approx(np.mean(auroc), abs=1e-12)
    assert out["macro_ap"] == pytest.approx(np.mean(ap), abs=1e-12)
    assert out["per_label_auroc"] == pytest.approx(dict(zip(names(6), auroc, strict=True)))
    assert out["per_label_ap"] == pytest.approx(dict(zip(names(6), ap, strict=True)))
    assert out["excluded_labels"] == []
    assert (out["n_records"], out["n_labels"], out["n_labels_evaluated"]) == (200, 6, 6)
    assert 0.6 < out["macro_auroc"] < 1.0  # the signal is there


def test_one_class_labels_are_excluded_and_reported():
    y, s = make_data()
    y[:, 2] = 0  # no positive
    y[:, 4] = 1  # no negative
    out = label_metrics(y, s, names(6))
    kept = [0, 1, 3, 5]
    assert out["macro_auroc"] == pytest.approx(
        np.mean([roc_auc_score(y[:, j], s[:, j]) for j in kept])
    )
    assert out["macro_ap"] == pytest.approx(
        np.mean([average_precision_score(y[:, j], s[:, j]) for j in kept])
    )
    assert out["per_label_auroc"]["L2"] is None and out["per_label_ap"]["L4"] is None
    assert out["excluded_labels"] == [
        {"label": "L2", "reason": "no positive"},
        {"label": "L4", "reason": "no negative"},
    ]
    assert out["n_labels"] == 6 and out["n_labels_evaluated"] == 4
    assert np.isfinite(out["macro_auroc"]) and np.isfinite(out["macro_ap"])
    assert evaluable_labels(y).tolist() == [True, True, False, True, False, True]


def test_all_labels_excluded_raises():
    y = np.zeros((10, 3), dtype=int)
    y[:, 1] = 1
    with pytest.raises(BenchError, match="no label has both"):
        label_metrics(y, np.zeros((10, 3)), names(3))


def test_non_finite_scores_raise_with_count():
    y, s = make_data()
    s[3, 1] = np.nan
    s[7, 2] = np.inf
    with pytest.raises(BenchError, match="2 non-finite"):
        label_metrics(y, s, names(6))
    with pytest.raises(BenchError, match="2 non-finite"):
        bootstrap_ci(y, s, n_resamples=5)


@pytest.mark.parametrize(
    "y_shape, s_shape, k_names",
    [((20, 3), (20, 4), 3), ((20, 3), (19, 3), 3), ((20, 3), (20, 3), 4), ((20,), (20,), 1)],
)
def test_shape_mismatches_raise(y_shape, s_shape, k_names):
    rng = np.random.default_rng(0)
    y = (rng.random(y_shape) < 0.5).astype(int)
    with pytest.raises(BenchError):
        label_metrics(y, rng.normal(size=s_shape), names(k_names))


def test_non_binary_labels_raise():
    y, s = make_data()
    y = y.astype(float)
    y[0, 0] = 0.7
    with pytest.raises(BenchError, match="only 0 and 1"):
        label_metrics(y, s, names(6))


def test_macro_auroc_invariant_to_monotone_transform():
    y, logits = make_data(seed=3)
    a = label_metrics(y, logits, names(6))
    b = label_metrics(y, expit(logits), names(6))
    c = label_metrics(y, 5.0 * logits - 2.0, names(6))
    assert a["macro_auroc"] == pytest.approx(b["macro_auroc"], abs=1e-12)
    assert a["macro_auroc"] == pytest.approx(c["macro_auroc"], abs=1e-12)
    assert a["macro_ap"] == pytest.approx(b["macro_ap"], abs=1e-12)


# --------------------------------------------------------------------------- bootstrap
def test_weighted_metrics_equal_sklearn_on_resamples_with_ties():
    rng = np.random.default_rng(5)
    n, k = 40, 5
    y = (rng.random((n, k)) < 0.3).astype(np.int64)
    s = np.round(rng.normal(size=(n, k)), 1)  # coarse: many tied scores
    idx = rng.integers(0, n, size=(6, n))
    auroc, ap = _weighted_auroc_ap(y, s, _multiplicities(idx))
    for b, rows in enumerate(idx):
        for j in range(k):
            yb, sb = y[rows, j], s[rows, j]
            if 0 < yb.sum() < n:
                assert auroc[b, j] == pytest.approx(roc_auc_score(yb, sb), abs=1e-12)
                assert ap[b, j] == pytest.approx(average_precision_score(yb, sb), abs=1e-12)
            else:
                assert np.isnan(auroc[b, j]) and np.isnan(ap[b, j])


def test_bootstrap_deterministic_per_seed():
    y, s = make_data(n=120, seed=1)
    a = bootstrap_ci(y, s, n_resamples=30, seed=7)
    b = bootstrap_ci(y, s, n_resamples=30, seed=7)
    c = bootstrap_ci(y, s, n_resamples=30, seed=8)
    assert a == b
    assert a["macro_auroc"] != c["macro_auroc"]


def test_bootstrap_ci_contains_point_estimate():
    y, s = make_data(n=300, k=8, seed=2)
    point = label_metrics(y, s, names(8))
    ci = bootstrap_ci(y, s, n_resamples=100, seed=0)
    assert ci["mode"] == "every-label"
    assert ci["n_resamples"] == 100 and ci["percentiles"] == [5.0, 95.0]
    assert ci["draws"] >= 100
    for key in ("macro_auroc", "macro_ap"):
        lo, hi = ci[key]
        assert lo <= hi
        assert lo <= point[key] <= hi
        assert hi - lo < 0.2  # a real interval, not [0, 1]


def test_bootstrap_excludes_labels_without_both_classes_in_full_split():
    y, s = make_data(n=100, seed=4)
    y[:, 3] = 0  # never evaluable: must not block acceptance or leak NaN
    ci = bootstrap_ci(y, s, n_resamples=20)
    assert ci["mode"] == "every-label"
    assert all(np.isfinite(ci["macro_auroc"])) and all(np.isfinite(ci["macro_ap"]))


def test_accepted_resamples_have_both_classes_in_every_label():
    # One positive among 20 records: a resample contains it with p = 1 - 0.95**20 ~ 0.64.
    rng = np.random.default_rng(0)
    y = (rng.random((20, 3)) < 0.5).astype(np.int64)
    y[:, 0] = 0
    y[11, 0] = 1
    y[0, 1:], y[1, 1:] = 1, 0
    idx, mode, draws = _bootstrap_indices(y, n_resamples=200, seed=0, max_draws=10_000)
    assert mode == "every-label" and idx.shape == (200, 20)
    assert draws > 200  # some resamples were rejected
    counts = np.stack([y[rows].sum(axis=0) for rows in idx])
    assert ((counts > 0) & (counts < 20)).all()

    scores = rng.normal(size=y.shape)
    ci = bootstrap_ci(y, scores, n_resamples=50, seed=0)
    assert ci["mode"] == "every-label"
    assert 50 < ci["draws"] < 50 * 200


def test_relaxed_mode_when_every_label_acceptance_is_hopeless():
    # 30 labels with one positive each among 60 records: P(accept) ~ 0.63**30 ~ 1e-6.
    rng = np.random.default_rng(1)
    y = np.zeros((60, 30), dtype=np.int64)
    y[np.arange(30) * 2, np.arange(30)] = 1
    scores = rng.normal(size=y.shape) + 2.0 * y
    ci = bootstrap_ci(y, scores, n_resamples=40, seed=0, max_draws=2_000)
    assert ci["mode"] == "relaxed"
    assert ci["draws"] >= 2_000 + 40
    assert ci["n_resamples"] == 40
    for key in ("macro_auroc", "macro_ap"):
        lo, hi = ci[key]
        assert np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo <= hi <= 1.0
    assert bootstrap_ci(y, scores, n_resamples=40, seed=0, max_draws=2_000) == ci
    # The relaxed resamples still each have both classes in at least one label.
    idx, mode, _ = _bootstrap_indices(y, n_resamples=40, seed=0, max_draws=0)
    assert mode == "relaxed"
    counts = np.stack([y[rows].sum(axis=0) for rows in idx])
    assert (counts > 0).any(axis=1).all()


def test_perfect_scores_give_degenerate_interval():
    y, _ = make_data(n=80, seed=6)
    ci = bootstrap_ci(y, y * 10.0 - 5.0, n_resamples=25)
    assert ci["macro_auroc"] == [1.0, 1.0]
    assert ci["macro_ap"] == [1.0, 1.0]


def test_bootstrap_bad_arguments_raise():
    y, s = make_data(n=50)
    with pytest.raises(BenchError):
        bootstrap_ci(y, s, n_resamples=0)
    with pytest.raises(BenchError):
        bootstrap_ci(y, s, percentiles=(95.0, 5.0))
    with pytest.raises(BenchError, match="no label has both"):
        bootstrap_ci(np.zeros((50, 6), dtype=int), s)


# --------------------------------------------------------------------------- windows
def test_aggregate_windows_hand_example():
    logits = np.array(
        [
            [[0.0, 2.0], [2.0, -4.0], [-2.0, 5.0]],  # record 0: 3 windows, 2 labels
            [[1.0, 1.0], [1.0, 1.0], [4.0, -1.0]],
        ]
    )
    mean = aggregate_windows(logits)
    assert mean.shape == (2, 2)
    np.testing.assert_allclose(mean, [[0.0, 1.0], [2.0, 1.0 / 3.0]])
    mx = aggregate_windows(logits, "max_prob")
    assert mx.shape == (2, 2)
    np.testing.assert_allclose(mx, expit(np.array([[2.0, 5.0], [4.0, 1.0]])))
    assert (mx > 0).all() and (mx < 1).all()
    assert AGGREGATIONS == ("mean_logits", "max_prob")


def test_aggregate_windows_single_window_and_errors():
    logits = np.random.default_rng(0).normal(size=(4, 1, 3)).astype(np.float32)
    np.testing.assert_allclose(aggregate_windows(logits), logits[:, 0], rtol=1e-6)
    with pytest.raises(BenchError, match="mean_logits, max_prob"):
        aggregate_windows(logits, "median")
    with pytest.raises(BenchError):
        aggregate_windows(logits[:, 0])  # 2-D


# --------------------------------------------------------------------------- notation
@pytest.mark.parametrize(
    "point, low, high, expected",
    [
        (0.925, 0.917, 0.930, "0.925(08)"),
        (0.925, 0.922, 0.937, "0.925(12)"),  # the upper bound deviates more
        (0.9, 0.8, 0.95, "0.900(100)"),
        (0.5, 0.377, 0.6, "0.500(123)"),
        (0.91234, 0.9, 0.92, "0.912(12)"),  # 0.01234 -> 12
        (0.9126, 0.9, 0.92, "0.913(13)"),  # point rounded up; 0.0126 -> 13
        (0.9, 0.8995, 0.9005, "0.900(01)"),  # 0.5 units rounds half up
        (0.9, 0.9, 0.9, "0.900(00)"),
        (0.8, 0.79, 0.81, "0.800(10)"),
    ],
)
def test_ci_notation(point, low, high, expected):
    assert ci_notation(point, low, high) == expected


def test_ci_notation_digits_and_missing():
    assert ci_notation(0.92512, 0.9243, 0.9262, digits=4) == "0.9251(11)"
    assert ci_notation(float("nan"), 0.1, 0.2) == "n/a"
    assert ci_notation(None, 0.1, 0.2) == "n/a"
    assert ci_notation(0.925, None, None) == "0.925"


# --------------------------------------------------------------------------- stratified_fraction
def multilabel(n: int = 1000, k: int = 12, seed: int = 0) -> np.ndarray:
    """Skewed multi-hot labels with a few singleton labels and some rows without labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < np.geomspace(0.4, 0.004, k)).astype(np.int64)
    y[rng.choice(n, 3, replace=False), k - 1] = 1
    y[:, 3] = 0
    y[17, 3] = 1  # a singleton label
    return y


def test_stratified_fraction_size_and_label_coverage():
    y = multilabel()
    for fraction in (0.01, 0.1, 0.5):
        keep = stratified_fraction(y, fraction, seed=0)
        assert keep.dtype == np.int64
        assert np.all(np.diff(keep) > 0)  # sorted, unique
        assert keep.min() >= 0 and keep.max() < len(y)
        n_groups = y.shape[1] + 1
        assert abs(len(keep) - fraction * len(y)) <= n_groups + 2
        has = y.sum(axis=0) > 0
        assert (y[keep][:, has].sum(axis=0) > 0).all()


def test_stratified_fraction_keeps_labels_never_the_rarest():
    # Label A (col 0) always co-occurs with a rarer label, so no row is grouped under A.
    y = np.zeros((7, 4), dtype=np.int64)
    y[[0, 1, 4], 1] = 1  # B: 3
    y[[2, 5], 2] = 1  # C: 2
    y[[3, 6], 3] = 1  # D: 2
    y[[0, 1, 2, 3], 0] = 1  # A: 4
    for seed in range(20):
        keep = stratified_fraction(y, 0.01, seed)
        assert (y[keep].sum(axis=0) > 0).all()


def test_stratified_fraction_deterministic_and_full():
    y = multilabel()
    a = stratified_fraction(y, 0.1, seed=3)
    assert np.array_equal(a, stratified_fraction(y, 0.1, seed=3))
    assert not np.array_equal(a, stratified_fraction(y, 0.1, seed=4))
    assert np.array_equal(stratified_fraction(y, 1.0, seed=3), np.arange(len(y)))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan"), True, "0.1"])
def test_stratified_fraction_invalid_fraction_raises(fraction):
    with pytest.raises(BenchError):
        stratified_fraction(multilabel(n=50), fraction, seed=0)


def test_macro_auroc_equals_label_metrics_with_ties_and_one_class_labels():
    """The vectorised model-selection AUROC is scikit-learn's macro AUROC, to rounding."""
    from bench.evaluate.metrics import macro_auroc

    rng = np.random.default_rng(7)
    for _ in range(30):
        n, k = int(rng.integers(4, 200)), int(rng.integers(1, 40))
        y = (rng.random((n, k)) < rng.random(k) * 0.4).astype(int)
        y[:, 0] = 0  # a label without positives: excluded from both
        scores = np.round(rng.normal(size=(n, k)), int(rng.integers(0, 3)))  # many ties
        if k == 1:
            with pytest.raises(BenchError):
                macro_auroc(y, scores)
            continue
        try:
            expected = label_metrics(y, scores, [str(j) for j in range(k)])["macro_auroc"]
        except BenchError:
            with pytest.raises(BenchError):
                macro_auroc(y, scores)
            continue
        assert macro_auroc(y, scores) == pytest.approx(expected, abs=1e-12)
