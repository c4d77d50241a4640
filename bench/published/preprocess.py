"""Each reference's input preprocessing (issue 21, item 2), as functions of a record array.

Inputs are ``(C, T)`` float arrays in millivolts with leads in :data:`LEADS_12` order at
``rate`` Hz (PTB-XL as our cache holds it). Facts and sources: FACTS.md.

- ``kim-ecg-jepa``: leads I, II, V1-V6; resampled to 250 Hz with an FFT resampler (the authors'
  ``scipy.signal.resample``); raw millivolts.
- ``st-mem``: resampled to 250 Hz; 0.67 Hz high-pass then 40 Hz low-pass, Butterworth order 5,
  zero-phase second-order sections; z-score over the whole record (all leads and samples
  together); a constant record becomes zeros. The authors crop 2250 samples (9 s; three crops
  at evaluation) *before* filtering and z-scoring; here the whole record is filtered and scored
  and the crop is left to the caller: a deviation a record must state in a ``Note:``.

JEPA's per-lead z-score with training-fold statistics and clip is our own pipeline's and is not
repeated here.
"""

from __future__ import annotations

import numpy as np

from bench.data.ptbxl import LEADS_12

KIM_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
REFERENCE_RATE = 250


def _check(x: np.ndarray, rate: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(LEADS_12):
        raise ValueError(f"expected (12, T) in LEADS_12 order, got {x.shape}")
    if rate < 1:
        raise ValueError(f"rate must be positive, got {rate}")
    return x


def _to_250(x: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample

    if rate == REFERENCE_RATE:
        return x
    return resample(x, round(x.shape[1] * REFERENCE_RATE / rate), axis=1)


def kim_ecg_jepa_input(x: np.ndarray, rate: int) -> np.ndarray:
    """``(12, T)`` mV at ``rate`` -> ``(8, T * 250 / rate)`` mV at 250 Hz (leads I, II, V1-V6)."""
    x = _check(x, rate)
    rows = [LEADS_12.index(lead) for lead in KIM_LEADS]
    return _to_250(x[rows], rate).astype(np.float32)


def st_mem_input(x: np.ndarray, rate: int) -> np.ndarray:
    """``(12, T)`` mV at ``rate`` -> ``(12, T * 250 / rate)`` band-passed, z-scored, 250 Hz."""
    from scipy.signal import butter, sosfiltfilt

    x = _to_250(_check(x, rate), rate)
    for cutoff, kind in ((0.67, "highpass"), (40.0, "lowpass")):
        x = sosfiltfilt(butter(5, cutoff, btype=kind, fs=REFERENCE_RATE, output="sos"), x)
    scale = x.std()
    out = (x - x.mean()) / scale if scale > 0 else np.zeros_like(x)
    return out.astype(np.float32)
