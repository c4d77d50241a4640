"""Health signals of a pre-training run: the loss curve's shape and the feature spread / rank."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.health import (
    assess,
    effective_rank,
    feature_health,
    health_line,
    loss_curve_health,
    rank_note,
    smooth,
    smoothing_window,
)

STEPS = np.arange(1, 201)


def noisy(curve: np.ndarray, scale: float = 0.01, seed: int = 0) -> np.ndarray:
    return curve + scale * np.random.default_rng(seed).normal(size=len(curve))


# --------------------------------------------------------------------------- loss curve
def test_smoothing_is_a_centred_mean_truncated_at_the_ends():
    values = np.array([0.0, 1, 2, 3, 10])
    np.testing.assert_allclose(smooth(values, 3), [0.5, 1, 2, 5, 6.5])
    assert smoothing_window(20) == 5 and smoothing_window(200) == 11  # 5 %, odd, at least 5
    assert smoothing_window(3000) == 151


def test_a_dip_then_a_rise_turned_at_its_minimum():
    """JEPA on a GPU budget: the shortcut dip to ~0.09 by step ~400, then a rise."""
    steps = np.arange(1, 3001)
    curve = (
        0.09 + 0.6 * np.exp(-steps / 80) + 0.24 * (1 - np.exp(-np.maximum(steps - 400, 0) / 800))
    )
    h = loss_curve_health(noisy(curve, 0.02))
    assert h["status"] == "turned" and h["turned"] and not h["ended_before_turn"]
    assert 300 < h["min_step"] < 500
    assert h["min"] == pytest.approx(0.09, abs=0.02)
    assert h["final"] == pytest.approx(curve[-1], abs=0.02)
    assert h["summary"] == f"turned at step {h['min_step']}"
    assert not assess({"loss": h})


def test_the_same_run_stopped_inside_the_dip_ended_before_the_turn():
    curve = (0.09 + 0.6 * np.exp(-np.arange(1, 3001) / 80))[:200]
    h = loss_curve_health(noisy(curve, 0.02))
    assert h["status"] == "still falling" and h["ended_before_turn"] and not h["turned"]
    assert h["min_step"] > 180 and h["summary"] == "still falling at step 200"
    (warning,) = assess({"loss": h})
    assert warning.code == "budget" and "still falling" in warning.message


def test_a_converged_curve_is_a_plateau_without_warning():
    long = np.arange(1, 1001)
    for seed in range(20):  # noise on the plateau is not a turn
        curve = noisy(0.3 + 0.6 * np.exp(-long / 50), 0.1, seed)
        assert loss_curve_health(curve)["status"] == "plateau"
    h = loss_curve_health(noisy(0.1 + 0.6 * np.exp(-STEPS / 15)))
    assert h["status"] == "plateau" and h["ended_before_turn"]
    assert h["min"] == pytest.approx(0.1, abs=0.01) and h["min_step"] > 60
    assert not assess({"loss": h})


def test_a_small_rise_within_ten_percent_of_the_fall_is_no_turn():
    curve = 0.1 + 0.6 * np.exp(-STEPS / 15) + 0.04 * np.clip((STEPS - 100) / 100, 0, 1)
    assert loss_curve_health(curve)["status"] != "turned"  # rise 0.04 < 10 % of the 0.55 fall
    steeper = curve + 0.08 * np.clip((STEPS - 100) / 100, 0, 1)
    assert loss_curve_health(steeper)["status"] == "turned"  # 0.12 > 0.055


def test_flat_and_rising_curves():
    flat = loss_curve_health(noisy(0.99 - 0.026 * STEPS / 200))  # MAE on the cpu preset
    assert flat["status"] == "flat" and flat["ended_before_turn"]
    assert assess({"loss": flat})[0].code == "budget"
    for seed in range(20):  # noise is neither a fall nor a rise, nor a turn
        assert loss_curve_health(noisy(np.ones(200), 0.3, seed=seed))["status"] == "flat"
    rising = loss_curve_health(noisy(0.5 + 0.3 * STEPS / 200))
    assert rising["status"] == "rising" and rising["min_step"] < 10


@pytest.mark.parametrize("losses", [[], [0.5], list(range(9)), [math.nan] * 50])
def test_too_short_curves_and_all_nan_do_not_crash(losses):
    h = loss_curve_health(losses)
    assert h["status"] == "too short" and h["min"] is None and h["turned"] is None
    assert h["steps"] == len(losses)
    assert assess({"loss": h})[0].code == "budget"


def test_nan_losses_are_left_out_and_counted():
    curve = 0.1 + 0.6 * np.exp(-STEPS / 120)
    with_nan = curve.copy()
    with_nan[[5, 50, 150]] = [math.nan, math.inf, math.nan]
    h = loss_curve_health(with_nan)
    assert h["nonfinite_steps"] == 3 and h["steps"] == 200
    assert h["status"] == loss_curve_health(curve)["status"] == "still falling"
    assert np.isfinite([h["min"], h["final"], h["fall"]]).all()
    assert {w.code for w in assess({"loss": h})} == {"budget", "nonfinite"}


# --------------------------------------------------------------------------- features
def test_rank_one_features_have_effective_rank_one():
    rng = np.random.default_rng(0)
    x = np.outer(rng.normal(size=500), rng.normal(size=32)) + 5.0  # offset: removed by centring
    h = feature_health(x)
    assert h["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert h["dim"] == 32 and h["n_samples"] == 500


def test_isotropic_gaussian_has_effective_rank_near_d():
    x = np.random.default_rng(0).normal(size=(20000, 16))
    h = feature_health(x)
    assert 15.5 < h["effective_rank"] <= 16
    assert h["spread"] == pytest.approx(1.0, abs=0.02)
    assert h["relative_spread"] == pytest.approx(1.0, abs=0.01)  # zero mean: all of it varies


def test_effective_rank_by_hand():
    # singular values (3, 1): p = (0.75, 0.25), H = -(0.75 ln 0.75 + 0.25 ln 0.25)
    m = np.array([[3.0, 0.0], [0.0, 1.0]])
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(m) == pytest.approx(expected)
    tall = np.vstack([m, np.zeros((5, 2))])  # N > D: the Gram-matrix path
    assert effective_rank(tall) == pytest.approx(expected)
    assert effective_rank(np.zeros((4, 3))) == 0.0


def test_identical_rows_have_no_spread():
    h = feature_health(np.tile([1.0, -2.0, 3.0], (10, 1)))
    assert h["spread"] == 0.0 and h["relative_spread"] == 0.0 and h["effective_rank"] == 0.0
    assert h["mean_norm"] == pytest.approx(math.sqrt(14))


def test_relative_spread_is_scale_free_and_sees_a_shared_offset():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 8))
    a, b = feature_health(x), feature_health(100 * x)
    assert a["relative_spread"] == pytest.approx(b["relative_spread"])
    assert b["spread"] == pytest.approx(100 * a["spread"])
    # a shared offset of norm 3 x the per-sample part: sqrt(8 / (8 + 9 * 8)) = 0.316
    shifted = feature_health(x + 3.0)
    assert shifted["relative_spread"] == pytest.approx(math.sqrt(1 / 10), rel=0.02)
    assert shifted["effective_rank"] == pytest.approx(a["effective_rank"])


def test_feature_health_edge_cases():
    x = np.random.default_rng(0).normal(size=(50, 4))
    x[3, 1] = np.nan
    h = feature_health(x)
    assert h["nonfinite_samples"] == 1 and h["n_samples"] == 49
    one = feature_health(np.ones((1, 4)))
    assert one["effective_rank"] is None and one["spread"] is None
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        feature_health(np.ones((2, 3, 4)))


# --------------------------------------------------------------------------- judgments
def _features(rng, strong: int, strong_sd: float, noise_sd: float, n=2000, d=64) -> np.ndarray:
    """``n`` pooled features: a fixed offset (a random ViT's sample-independent vector, the
    same in every call), plus ``strong`` directions of input-dependent variation with sd
    ``strong_sd``, plus isotropic noise-like differences with sd ``noise_sd``."""
    offset = np.random.default_rng(99).normal(size=d)
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0][:, :strong]
    signal = rng.normal(size=(n, strong)) * strong_sd @ basis.T if strong else 0.0
    return offset + signal + rng.normal(size=(n, d)) * noise_sd


def _judge(end: np.ndarray, init: np.ndarray) -> list[str]:
    return [w.code for w in assess({"features": feature_health(end),
                                    "features_init": feature_health(init)})]  # fmt: skip


def test_a_learning_encoder_is_not_called_collapsed():
    """The SimCLR case: a random init's noise-like features (high effective rank, tiny spread)
    against features twelve times more input-dependent in a few directions: the effective rank
    falls by two thirds, yet nothing is flagged, and the report says why."""
    rng = np.random.default_rng(0)
    init = _features(rng, 0, 0.0, 0.03)  # relative spread ~0.03, as measured at init
    end = _features(rng, 6, 1.4, 0.03)  # ~0.39
    h_init, h_end = feature_health(init), feature_health(end)
    assert h_end["effective_rank"] < 0.5 * h_init["effective_rank"]  # the old judgment's trap
    assert h_end["relative_spread"] > 5 * h_init["relative_spread"]
    assert h_init["signal_dims"] == 0 and h_end["signal_dims"] >= 4
    assert _judge(end, init) == []
    note = rank_note({"features": h_end, "features_init": h_init})
    assert note and "not collapse" in note


def test_complete_collapse_is_a_falling_relative_spread():
    """The JEPA case: the features depend less on the input than at init (0.119 -> 0.066)."""
    rng = np.random.default_rng(1)
    init = _features(rng, 4, 0.06, 0.01)
    end = _features(rng, 4, 0.03, 0.005)
    warnings = assess({"features": feature_health(end), "features_init": feature_health(init)})
    assert [w.code for w in warnings] == ["collapse"]
    assert warnings[0].message.startswith("complete collapse: the relative spread fell from")
    assert "one point" in warnings[0].message


def test_dimensional_collapse_is_fewer_signal_directions_at_the_same_spread():
    """Input-dependent variation in 16 strong directions at init squeezed into 3 of the same
    total variance: the spread holds, the signal directions fall."""
    rng = np.random.default_rng(2)
    init = _features(rng, 16, 1.5, 0.01)
    end = _features(rng, 3, 1.5 * np.sqrt(16 / 3), 0.01)
    h_init, h_end = feature_health(init), feature_health(end)
    assert abs(h_end["relative_spread"] / h_init["relative_spread"] - 1) < 0.1
    warnings = assess({"features": h_end, "features_init": h_init})
    assert [w.code for w in warnings] == ["dimensional"]
    assert f"signal directions {h_init['signal_dims']} -> {h_end['signal_dims']}" in (
        warnings[0].message
    )


def test_thresholds_and_what_cannot_be_judged():
    init = {"effective_rank": 40.0, "relative_spread": 0.10, "signal_dims": 10}
    healthy = {"effective_rank": 20.0, "relative_spread": 0.095, "signal_dims": 9}  # within 10 %
    assert not assess({"features": healthy, "features_init": init})
    assert [w.code for w in assess({"features": {**healthy, "relative_spread": 0.089},
                                    "features_init": init})] == ["collapse"]  # fmt: skip
    assert [w.code for w in assess({"features": {**healthy, "signal_dims": 8},
                                    "features_init": init})] == ["dimensional"]  # fmt: skip
    # a noise-only init (fewer than 2 signal directions) is no reference for the dimensions
    noise_init = {**init, "signal_dims": 1}
    assert not assess({"features": {**healthy, "signal_dims": 0}, "features_init": noise_init})
    # records from before signal_dims: no dimensional judgment; the spread is still judged
    old = {"effective_rank": 12.0, "relative_spread": 0.04}
    assert [w.code for w in assess({"features": old, "features_init": {"effective_rank": 40.0,
            "relative_spread": 0.10}})] == ["collapse"]  # fmt: skip
    # a reference row (no init block) and a record without health: nothing to flag
    assert not assess({"features": old, "features_init": None, "loss": None})
    assert not assess(None) and not assess({})


def test_one_line_for_the_terminal():
    curve = (0.09 + 0.6 * np.exp(-np.arange(1, 3001) / 80))[:200]
    health = {
        "loss": loss_curve_health(curve),
        "features": {"effective_rank": 12.34, "relative_spread": 0.05, "dim": 192},
        "features_init": {"effective_rank": 40.1, "relative_spread": 0.12, "dim": 192},
    }
    line = health_line(health)
    assert line.startswith("loss still falling at step 200 (min 0.142 at step 195); ")
    assert "effective rank 40.1 at init -> 12.3 of 192" in line
    assert "relative spread 0.120 at init -> 0.050" in line
    assert line.endswith("WARNING: budget, complete collapse")
    reference = {"loss": None, "features": health["features"], "features_init": None}
    assert health_line(reference) == "effective rank 12.3 of 192; relative spread 0.050"
    assert health_line(None) == "health not recorded"
