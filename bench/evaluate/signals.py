"""Downstream inputs: normalised records from the signal cache, windows and crops.

A :class:`SignalSource` can read only the records it was built for. The runner builds the
training and validation sources before fitting and the test source only afterwards, so nothing
that fits, early-stops or selects a model can reach fold 10 (PROTOCOL.md 1.1).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.data.cache import SignalCache
from bench.errors import BenchError


def window_length(seconds: float, rate: int, patch_size: int) -> int:
    """Samples in a ``seconds`` window rounded down to whole patches (at least one patch).

    2.5 s at 100 Hz with 5-sample patches -> 250; with 20-sample (0.2 s) patches -> 240 (2.4 s).
    """
    patches = int(round(seconds * rate, 6) // patch_size)
    if patches < 1:
        raise BenchError(f"a {seconds} s window is shorter than one {patch_size}-sample patch")
    return patches * patch_size


def window_offsets(length: int, window: int, stride: int) -> np.ndarray:
    """Start samples of the evaluation windows: every ``stride`` while the window fits.

    10 s at 100 Hz, 2.5 s windows, 1.25 s stride -> 0, 125, ..., 750 (7 windows).
    """
    if window > length:
        raise BenchError(f"evaluation window of {window} samples exceeds the records ({length})")
    return np.arange(0, length - window + 1, max(1, stride), dtype=np.int64)


def crop(x: np.ndarray, offsets: np.ndarray, window: int) -> np.ndarray:
    """Per-row crops: ``x`` ``(B, C, T)``, ``offsets`` ``(B,)`` -> ``(B, C, window)``."""
    index = offsets[:, None] + np.arange(window)[None, :]  # (B, window)
    return np.take_along_axis(x, index[:, None, :], axis=2)


class SignalSource:
    """The normalised, clipped records ``ecg_ids`` of a cache, read in batches.

    Args:
        cache: the prepared cache at the encoder's rate.
        ecg_ids: ``(n,)`` the records this source may read (one split of one task).
        leads: lead indices into the cache's 12 leads.
        mean, std: ``(len(leads),)`` per-lead statistics of the pre-training folds.
        clip: clip to ``[-clip, clip]`` after normalising (0: no clip).
    """

    def __init__(self, cache: SignalCache, ecg_ids, leads, mean, std, clip: float):
        self.cache = cache
        self.ecg_ids = np.asarray(ecg_ids, dtype=np.int64)
        self.rows = cache.rows(self.ecg_ids)
        self.leads = list(leads)
        self.mean = np.asarray(mean, dtype=np.float32)[:, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None]
        self.clip = clip

    def __len__(self) -> int:
        return len(self.ecg_ids)

    @property
    def length(self) -> int:
        """Samples per record."""
        return int(self.cache.signals.shape[-1])

    def read(self, index) -> np.ndarray:
        """Records at positions ``index`` of this source: ``(b, C, T)`` float32, normalised."""
        index = np.asarray(index, dtype=np.int64)
        rows = self.rows[index]
        order = np.argsort(rows, kind="stable")  # sorted reads are sequential on the memmap
        x = np.empty((len(rows), len(self.leads), self.length), dtype=np.float32)
        x[order] = self.cache.signals[rows[order]][:, self.leads]
        x -= self.mean
        x /= self.std
        if self.clip > 0:
            np.clip(x, -self.clip, self.clip, out=x)
        if not np.isfinite(x).all():
            bad = self.ecg_ids[index][~np.isfinite(x).all(axis=(1, 2))]
            raise BenchError(
                f"non-finite samples in records {bad[:10].tolist()}",
                hint="rebuild the cache with `bench data prepare --force --skip-bad`",
            )
        return x

    def batches(self, batch_size: int):
        """``(positions, x)`` over every record in order, ``batch_size`` records at a time."""
        for start in range(0, len(self), batch_size):
            index = np.arange(start, min(start + batch_size, len(self)))
            yield index, self.read(index)


def to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    return tensor.to(device, non_blocking=True) if device.type != "cpu" else tensor
