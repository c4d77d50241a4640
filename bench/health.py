"""Health signals of a pre-training run, from data the harness already has.

A leaderboard row says how well a representation serves a probe; these signals say whether the
pre-training budget behind it was large enough for that to mean anything:

* :func:`loss_curve_health`: where the loss curve's minimum is and whether the run ended before
  the loss turned. JEPA-style objectives first fall by predicting the sample-independent part of
  the targets (positions: the *shortcut*), and on a GPU budget the loss later rises again while
  the probe improves; a run that stops while the loss is still falling has not left that phase.
* :func:`feature_health`: the across-sample spread, the effective rank and the signal
  directions of the benchmarked encoder's pooled features, at the end and at init.
* Two collapses are told apart (:func:`assess`). **Complete** collapse: every input is mapped
  closer to one point, so the *relative spread* falls below the init encoder's. **Dimensional**
  collapse: the input-dependent variation squeezes into fewer strong directions while the spread
  holds. A randomly initialised ViT maps every ECG to nearly the same vector plus small
  noise-like differences, so its effective rank is high and means little: a contrastive run whose
  spread grows twelvefold while its effective rank falls from 73 to 25 is learning, not
  collapsing. The dimensional judgment therefore counts *signal directions* (principal
  directions that each carry at least 1 % of the features' mean squared norm), which noise at
  init does not reach, and is made only where the init encoder has at least two of them.
* :func:`assess`: the warnings the report shows for one run's health block.

Everything here is a pure numpy function; the evaluator (:mod:`bench.evaluate.runner`) computes
the block once per subject and stores it in every run record under ``health``. The judgments
(:func:`assess`) are made when a report is drawn, from the stored numbers, so changing a
threshold never invalidates a record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HEALTH_VERSION = 2  # 2: signal_dims in the feature blocks

# ---------------------------------------------------------------------------- loss curve
MIN_LOSS_STEPS = 10  # fewer finite losses than this: "too short", no judgment
SMOOTH_FRACTION = 0.05  # smoothing window: 5 % of the steps ...
MIN_SMOOTH_WINDOW = 5  # ... but at least 5 steps (always odd)
TURN_FRACTION = 0.10  # turned: rose after the minimum by > 10 % of the initial fall ...
# ... and by > 6 standard errors of a smoothed point: the minimum of ~20 independent windows
# (5 % each) of pure noise lies ~2.5 of them below the mean, so 3 would call noise a turn.
NOISE_Z = 6.0
FLAT_FRACTION = 0.05  # flat: fell and rose by at most 5 % of the loss level
TAIL_FRACTION = 0.25  # still falling: the last quarter of the run ...
TAIL_FALL_FRACTION = 0.02  # ... fell by > 2 % of the initial fall and by > 3 standard
TAIL_NOISE_Z = 3.0  # errors of the difference of two smoothed points (sqrt(2) x noise)

# ---------------------------------------------------------------------------- features
COLLAPSE_RATIO = 0.9  # collapse: relative spread (or signal directions) < 90 % of init
SIGNAL_SHARE = 0.01  # a signal direction carries >= 1 % of the mean squared feature norm
MIN_SIGNAL_DIMS = 2  # fewer at init: the init reference is noise, no dimensional judgment

LOSS_STATUSES = ("too short", "flat", "rising", "turned", "still falling", "plateau")
LOSS_WARNINGS = {
    "too short": "fewer than 10 finite loss values: the curve cannot be judged",
    "flat": "the loss barely moved (fall and rise under 5 % of its level): little was learned "
    "at this budget",
    "rising": "the loss rose from the start without falling first",
    "still falling": "the run ended before the loss turned, while the representation was "
    "still changing: this budget may be too small to compare methods",
}

DEFINITIONS = {
    "loss": (
        "Pre-training loss per optimiser step, smoothed by a centred moving average over 5 % of "
        "the steps (at least 5). Minimum: the smoothed curve's lowest point and its step. "
        "Turned: after the minimum the smoothed loss rose to its final value by more than 10 % "
        "of the initial fall (first smoothed value - minimum) and by more than 6 standard errors "
        "of the smoothing. Still falling: not turned, and the smoothed loss fell over the last "
        "quarter of the steps by more than 2 % of the initial fall and 3 standard errors. Plateau: "
        "neither. Flat: it neither fell nor rose by more than 5 % of its level (or 6 standard "
        "errors)."
    ),
    "spread": (
        "Across-sample spread of the frozen encoder's pooled features on training-fold crops: "
        "the mean over feature dimensions of the standard deviation over samples. Relative "
        "spread: sqrt(total variance / mean squared feature norm), between 0 (every input gives "
        "the same vector) and 1 (no sample-independent offset), so it does not depend on the "
        "feature scale."
    ),
    "effective_rank": (
        "Effective rank (Roy & Vetterli 2007) of the centred feature matrix: exp of the entropy "
        "of its singular values normalised to sum to 1; between 1 (one direction) and the "
        "feature dimension D (all directions equally used)."
    ),
    "signal_dims": (
        "Signal directions: the principal directions of the centred features that each carry at "
        "least 1 % of the mean squared feature norm. Noise-like variation (a random encoder at "
        "init) has none or few; unlike the effective rank, it grows when an encoder learns to "
        "vary strongly with its input."
    ),
    "collapse": (
        "Complete collapse: the relative spread at the end of pre-training is below 90 % of the "
        "same encoder's at its initial weights (same crops): the features depend less on the "
        "input than an untrained encoder's. Dimensional collapse: the relative spread held but "
        "the signal directions fell below 90 % of init (judged only where the init encoder has "
        "at least 2). A falling effective rank alone is no collapse: from a random init's "
        "noise-like features, learning concentrates the variation."
    ),
}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of ``values`` ``(S,)`` over ``window`` steps (odd), truncated at
    the ends: point i averages ``values[max(0, i - h) : i + h + 1]`` with h = window // 2.
    Returns ``(S,)`` float64."""
    values = np.asarray(values, dtype=np.float64)
    half = window // 2
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(values))
    return (csum[hi] - csum[lo]) / (hi - lo)


def smoothing_window(n_steps: int) -> int:
    """Odd window of :func:`smooth`: 5 % of the steps, at least :data:`MIN_SMOOTH_WINDOW`."""
    window = max(MIN_SMOOTH_WINDOW, round(SMOOTH_FRACTION * n_steps))
    return window if window % 2 else window + 1


def loss_curve_health(losses: Sequence[float]) -> dict:
    """Where the loss curve's minimum is and whether the run ended before the loss turned.

    Args:
        losses: ``(S,)`` the loss of every optimiser step, step 1 first (``state["losses"]`` of a
            pre-training checkpoint). Non-finite values are left out of the curve and counted.

    Returns:
        A JSON-ready dict:

        * ``steps`` (S), ``nonfinite_steps``, ``window`` (the smoothing window in steps);
        * ``first``, ``min``, ``min_step``, ``final``: the smoothed curve at its first complete
          window (step ``window // 2 + 1``), its minimum (and the 1-based step of it) and at its
          last complete window (step S - ``window // 2``); the curve is judged only where the
          window is complete;
        * ``fall`` = first - min, ``rise`` = final - min, ``tail_fall`` = the smoothed value at
          the start of the last quarter - final;
        * ``noise``: standard error of a smoothed point (1.4826 x median absolute deviation of
          the residuals loss - smoothed, over sqrt(window));
        * ``turned``: rise > max(10 % of fall, 6 x noise), the curve having fallen first (fall
          above the flat level and 6 x noise);
        * ``ended_before_turn``: no turn seen (``not turned``; None when too short);
        * ``status``: ``"too short"`` (< 10 finite values), ``"flat"`` (no fall above 5 % of
          the loss level max(|first|, |min|, |final|) and 6 x noise, no rise above 5 % of the
          level or 6 x noise), ``"rising"`` (no such fall, but such a rise), ``"turned"``,
          ``"still falling"`` (tail_fall > max(2 % of fall, 3 x sqrt(2) x noise)) or
          ``"plateau"``;
        * ``summary``: e.g. ``"turned at step 412"``, ``"still falling at step 200"``.

        Floats are None where undefined (too short).
    """
    values = np.asarray(list(losses), dtype=np.float64).ravel()
    finite = np.isfinite(values)
    steps = np.flatnonzero(finite) + 1
    y = values[finite]
    out: dict = {
        "steps": len(values),
        "nonfinite_steps": int((~finite).sum()),
        "window": None,
        "first": None,
        "min": None,
        "min_step": None,
        "final": None,
        "fall": None,
        "rise": None,
        "tail_fall": None,
        "noise": None,
        "turned": None,
        "ended_before_turn": None,
        "status": "too short",
        "summary": f"too short ({len(y)} finite loss values)",
    }
    if len(y) < MIN_LOSS_STEPS:
        return out
    window = smoothing_window(len(y))
    smoothed = smooth(y, window)
    residual = y - smoothed
    mad = float(np.median(np.abs(residual - np.median(residual))))
    noise = 1.4826 * mad / math.sqrt(window)
    # Only where the window is complete: truncated windows at the ends are noisier.
    half = min(window // 2, (len(y) - 1) // 2)
    s, steps = smoothed[half : len(y) - half], steps[half : len(y) - half]
    i_min = int(np.argmin(s))
    first, low, final = float(s[0]), float(s[i_min]), float(s[-1])
    fall, rise = first - low, final - low
    tail_start = min(len(s) - 1, int(math.floor((1 - TAIL_FRACTION) * len(s))))
    tail_fall = float(s[tail_start]) - final
    flat_level = FLAT_FRACTION * max(abs(first), abs(low), abs(final), 1e-12)
    clear = max(flat_level, NOISE_Z * noise)  # a change that is neither noise nor negligible
    fell = fall > clear
    turned = fell and rise > max(TURN_FRACTION * fall, NOISE_Z * noise)
    if not fell and rise <= clear:
        status, summary = "flat", f"flat over {len(values)} steps"
    elif not fell:
        status, summary = "rising", f"rising from step {int(steps[i_min])}"
    elif turned:
        status, summary = "turned", f"turned at step {int(steps[i_min])}"
    elif tail_fall > max(TAIL_FALL_FRACTION * fall, TAIL_NOISE_Z * math.sqrt(2) * noise):
        status, summary = "still falling", f"still falling at step {len(values)}"
    else:
        status, summary = "plateau", f"plateau from step ~{int(steps[i_min])}, no turn"
    out.update(
        window=window,
        first=first,
        min=low,
        min_step=int(steps[i_min]),
        final=final,
        fall=fall,
        rise=rise,
        tail_fall=tail_fall,
        noise=noise,
        turned=bool(turned),
        ended_before_turn=not turned,
        status=status,
        summary=summary,
    )
    return out


def feature_health(features: np.ndarray) -> dict:
    """Across-sample spread and effective rank of pooled features.

    Args:
        features: ``(N, D)`` one pooled feature vector per sample (rows with a non-finite value
            are left out and counted).

    Returns:
        A JSON-ready dict (floats None where undefined, i.e. fewer than 2 samples):

        * ``n_samples`` (N used), ``nonfinite_samples``, ``dim`` (D);
        * ``spread``: mean over the D dimensions of the standard deviation over samples
          (population std, ddof 0);
        * ``relative_spread``: sqrt(sum_d var_d / mean_n ||x_n||^2), in [0, 1]: the share of the
          features' root-mean-square norm that varies across samples (0: every sample has the
          same vector; 1: zero mean). Scale-free; 0 for all-zero features;
        * ``mean_norm``: mean over samples of ||x_n||;
        * ``effective_rank``: Roy & Vetterli (2007), exp(-sum_i p_i log p_i) with
          p_i = sigma_i / sum_j sigma_j the singular values of the centred matrix X - mean(X);
          1 for rank-one variation, about D for isotropic features with N >> D, 0 when the
          samples do not vary at all;
        * ``signal_dims``: the number of eigenvalues of the features' covariance of at least
          :data:`SIGNAL_SHARE` x mean_n ||x_n||^2 (scale-free, like the relative spread).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    keep = np.isfinite(x).all(axis=1)
    x = x[keep]
    n, d = x.shape
    out: dict = {
        "n_samples": int(n),
        "nonfinite_samples": int((~keep).sum()),
        "dim": int(d),
        "spread": None,
        "relative_spread": None,
        "mean_norm": None,
        "effective_rank": None,
        "signal_dims": None,
    }
    if n < 2 or d == 0:
        return out
    centred = x - x.mean(axis=0)
    variance = (centred**2).mean(axis=0)  # (D,)
    mean_square_norm = float((x**2).sum(axis=1).mean())
    total = float(variance.sum())
    relative = math.sqrt(total / mean_square_norm) if mean_square_norm > 0 else 0.0
    sigma = singular_values(centred)
    eigen = sigma**2 / n  # the covariance's eigenvalues: the variance along each direction
    out.update(
        spread=float(np.sqrt(variance).mean()),
        relative_spread=min(relative, 1.0),  # rounding may put an exact 1 a hair above
        mean_norm=float(np.linalg.norm(x, axis=1).mean()),
        effective_rank=effective_rank(centred, sigma),
        signal_dims=int((eigen >= SIGNAL_SHARE * mean_square_norm).sum())
        if mean_square_norm > 0
        else 0,
    )
    return out


def singular_values(matrix: np.ndarray) -> np.ndarray:
    """Singular values of ``matrix`` ``(N, D)``: with N > D from the eigenvalues of the
    ``(D, D)`` Gram matrix (cheap for many samples), otherwise from an SVD."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[0] > m.shape[1]:
        return np.sqrt(np.clip(np.linalg.eigvalsh(m.T @ m), 0.0, None))
    return np.linalg.svd(m, compute_uv=False)


def effective_rank(matrix: np.ndarray, sigma: np.ndarray | None = None) -> float:
    """Roy & Vetterli (2007) effective rank of ``matrix`` ``(N, D)``: exp of the Shannon entropy
    of its singular values (``sigma`` if already known) normalised to sum 1 (0.0 for a zero
    matrix)."""
    sigma = singular_values(matrix) if sigma is None else sigma
    total = float(sigma.sum())
    if total <= 0 or not math.isfinite(total):
        return 0.0
    p = sigma[sigma > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


# ---------------------------------------------------------------------------- judgments
@dataclass(frozen=True)
class HealthWarning:
    """One thing the report flags about a run's health.

    Attributes:
        code: ``"budget"`` (loss still falling, flat, rising, too short), ``"nonfinite"``,
            ``"collapse"`` (complete) or ``"dimensional"`` (dimensional collapse).
        message: one sentence for a tooltip or a table.
    """

    code: str
    message: str


def assess(health: dict | None) -> list[HealthWarning]:
    """The warnings of one run's ``health`` block (as stored in its records).

    * budget: the loss status is ``still falling``, ``flat``, ``rising`` or ``too short``;
    * nonfinite: some pre-training losses were NaN or infinite;
    * collapse (complete): the relative spread of the final encoder's features is below
      :data:`COLLAPSE_RATIO` times that of the same encoder at its initial weights;
    * dimensional: the relative spread held, but the signal directions fell below
      :data:`COLLAPSE_RATIO` times init, where init had at least :data:`MIN_SIGNAL_DIMS`.

    A missing block (records written before health existed) or a reference row's (no loss, no
    init to compare with) gives no warning; records written before ``signal_dims`` existed get
    no dimensional judgment.
    """
    if not health:
        return []
    found: list[HealthWarning] = []
    loss = health.get("loss") or {}
    status = loss.get("status")
    if status in LOSS_WARNINGS:
        found.append(
            HealthWarning("budget", f"{loss.get('summary', status)}: {LOSS_WARNINGS[status]}")
        )
    if loss.get("nonfinite_steps"):
        found.append(
            HealthWarning(
                "nonfinite", f"{loss['nonfinite_steps']} of {loss['steps']} losses non-finite"
            )
        )
    kind = collapse_kind(health)
    end, init = health.get("features") or {}, health.get("features_init") or {}
    if kind == "complete":
        a, b = end["relative_spread"], init["relative_spread"]
        found.append(
            HealthWarning(
                "collapse",
                f"complete collapse: the relative spread fell from {_fmt(b)} at init to "
                f"{_fmt(a)} ({a / b - 1:+.0%}): the features depend less on the input than the "
                "untrained encoder's, every ECG maps closer to one point; a longer run may leave "
                "this phase (JEPA's position shortcut), otherwise lower the learning rate or slow "
                "the EMA target",
            )
        )
    elif kind == "dimensional":
        a, b = end["signal_dims"], init["signal_dims"]
        found.append(
            HealthWarning(
                "dimensional",
                f"dimensional collapse: the input-dependent variation uses fewer strong "
                f"directions than at init (signal directions {b} -> {a}) while the relative "
                "spread held: probes see few usable features; check the projector, the "
                "augmentations and the loss weights (variance/covariance terms)",
            )
        )
    return found


def collapse_kind(health: dict | None) -> str | None:
    """``"complete"``, ``"dimensional"`` or ``None`` (see :func:`assess`)."""
    if not health:
        return None
    end, init = health.get("features") or {}, health.get("features_init") or {}
    a, b = end.get("relative_spread"), init.get("relative_spread")
    if a is not None and b is not None and b > 0 and a < COLLAPSE_RATIO * b:
        return "complete"
    a, b = end.get("signal_dims"), init.get("signal_dims")
    if a is not None and b is not None and b >= MIN_SIGNAL_DIMS and a < COLLAPSE_RATIO * b:
        return "dimensional"
    return None


def rank_note(health: dict | None) -> str | None:
    """Words for a run whose effective rank fell while its features grew more input-dependent
    (no collapse: learning concentrates a random init's noise-like variation), else None."""
    if not health or collapse_kind(health):
        return None
    end, init = health.get("features") or {}, health.get("features_init") or {}
    rank, rank0 = end.get("effective_rank"), init.get("effective_rank")
    spread, spread0 = end.get("relative_spread"), init.get("relative_spread")
    if None in (rank, rank0, spread, spread0) or rank >= COLLAPSE_RATIO * rank0:
        return None
    return (
        f"effective rank fell ({rank0:.0f} -> {rank:.0f}) while the relative spread went "
        f"{spread0:.3f} -> {spread:.3f}: more input-dependent features in fewer directions, "
        "which is learning from a noise-like init, not collapse"
    )


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def health_line(health: dict | None) -> str:
    """One line for a terminal: the loss status, effective rank and relative spread (init ->
    end), and the warning codes, e.g. ``loss still falling at step 200 (min 0.144 at step
    198); effective rank 40.1 -> 12.3 of 192; relative spread 0.120 -> 0.050; WARNING: budget,
    collapse``."""
    if not health:
        return "health not recorded"
    parts = []
    loss = health.get("loss")
    if loss:
        text = f"loss {loss.get('summary')}"
        if loss.get("min") is not None:
            text += f" (min {_fmt(loss['min'])} at step {loss['min_step']})"
        parts.append(text)
    end, init = health.get("features") or {}, health.get("features_init") or {}
    for key, name, fmt in (
        ("effective_rank", "effective rank", "{:.1f}"),
        ("relative_spread", "relative spread", "{:.3f}"),
        ("signal_dims", "signal directions", "{:d}"),
    ):
        if end.get(key) is None:
            continue
        value = fmt.format(end[key])
        if init.get(key) is not None:
            value = f"{fmt.format(init[key])} at init -> {value}"
        parts.append(
            f"{name} {value}" + (f" of {end.get('dim')}" if key == "effective_rank" else "")
        )
    codes = list(dict.fromkeys(WARNING_NAMES.get(w.code, w.code) for w in assess(health)))
    if codes:
        parts.append("WARNING: " + ", ".join(codes))
    return "; ".join(parts)


WARNING_NAMES = {"collapse": "complete collapse", "dimensional": "dimensional collapse"}
