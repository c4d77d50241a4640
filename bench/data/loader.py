"""The pre-training data: the training rows of a cache, per-lead statistics and the loader of
normalised random crops the engine (:mod:`bench.train`) and ``bench perf`` read.

Every random draw is a function of ``(seed, epoch)`` (batch order, :class:`EpochBatchSampler`)
or ``(seed, epoch, record)`` (crop offsets, :class:`CropDataset`), whichever worker loads it, so
a run resumed at any batch reads exactly what it would have read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.data.cache import SignalCache
from bench.errors import BenchError
from bench.task import TRAIN_FOLDS

if TYPE_CHECKING:
    from bench.method import MethodConfig


def training_rows(cache: SignalCache, dataset, folds=TRAIN_FOLDS) -> np.ndarray:
    """Cache rows of the records in ``folds`` (pre-training never sees folds 9 and 10)."""
    meta = dataset.metadata
    ids = meta.index[meta["strat_fold"].isin(folds)].to_numpy()
    ids = ids[np.isin(ids, cache.ecg_ids)]
    if len(ids) == 0:
        raise BenchError(f"no cached records in folds {list(folds)} of {dataset.name}")
    return np.sort(cache.rows(ids))


def lead_statistics(
    signals: np.ndarray, rows: np.ndarray, leads: list[int], chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Per-lead mean and std over ``rows`` of a ``[N, C, T]`` array, accumulated in float64.

    Returns:
        ``(mean, std)``, each ``(len(leads),)`` float32; std floored at 1e-6.
    """
    total = np.zeros(len(leads))
    total_sq = np.zeros(len(leads))
    count = 0
    for start in range(0, len(rows), chunk):
        block = np.asarray(signals[rows[start : start + chunk]][:, leads], dtype=np.float64)
        total += block.sum(axis=(0, 2))
        total_sq += (block**2).sum(axis=(0, 2))
        count += block.shape[0] * block.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


class CropDataset(Dataset):
    """Random crops of cached records, normalised per lead and clipped.

    Index ``k`` encodes ``(epoch, i) = divmod(k, n)`` so the crop offset is a pure function of
    ``(seed, epoch, i)``, whichever worker loads it. Items are ``(C, crop)`` float32 tensors.
    ``extra`` appends ``(cache path, rows)`` of other corpora after the main rows.
    """

    def __init__(
        self,
        cache_path: Path,
        rows: np.ndarray,
        leads: list[int],
        crop: int,
        mean,
        std,
        clip: float,
        seed: int,
        extra: Sequence[tuple[Path, np.ndarray]] = (),
    ):
        self.sources = [(Path(cache_path), np.asarray(rows))]
        self.sources += [(Path(path), np.asarray(r)) for path, r in extra]
        self.bounds = np.cumsum([0] + [len(r) for _, r in self.sources])
        self.leads = leads
        self.crop = crop
        self.mean = np.asarray(mean, dtype=np.float32)[:, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None]
        self.clip = clip
        self.seed = seed
        self._signals: list[np.ndarray | None] = [None] * len(
            self.sources
        )  # memmaps, opened per worker

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def __getitem__(self, k: int) -> torch.Tensor:
        epoch, i = divmod(int(k), len(self))
        source = int(np.searchsorted(self.bounds, i, side="right")) - 1
        if self._signals[source] is None:
            self._signals[source] = np.load(self.sources[source][0] / "signals.npy", mmap_mode="r")
        signals, row = self._signals[source], self.sources[source][1][i - self.bounds[source]]
        length = signals.shape[-1]
        if self.crop > length:
            raise BenchError(f"crop of {self.crop} samples is longer than the records ({length})")
        offset = int(
            np.random.default_rng([self.seed, epoch, i]).integers(0, length - self.crop + 1)
        )
        x = np.asarray(signals[row, self.leads, offset : offset + self.crop], dtype=np.float32)
        x = (x - self.mean) / self.std
        if self.clip > 0:
            np.clip(x, -self.clip, self.clip, out=x)
        return torch.from_numpy(x)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of ``epoch * n + i`` indices: a fresh permutation per epoch from ``(seed, epoch)``,
    sharded over ranks, ``drop_last``. Starts at ``start_batch`` without replaying the past."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
    ):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start_batch = rank, world, start_batch
        self.per_epoch = (n // world) // batch_size
        if self.per_epoch < 1:
            raise BenchError(
                f"batch size {batch_size} x {world} ranks exceeds the {n} training records",
                hint="lower optim.batch_size with --set optim.batch_size=N",
            )

    def __iter__(self) -> Iterator[list[int]]:
        batch = self.start_batch
        while True:
            epoch, b = divmod(batch, self.per_epoch)
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            shard = perm[self.rank :: self.world][: self.per_epoch * self.batch_size]
            for j in range(b, self.per_epoch):
                yield (
                    epoch * self.n + shard[j * self.batch_size : (j + 1) * self.batch_size]
                ).tolist()
                batch += 1


def crop_loader(
    cache: SignalCache,
    rows: np.ndarray,
    leads: list[int],
    mean: np.ndarray,
    std: np.ndarray,
    cfg: MethodConfig,
    micro_batch: int,
    workers: int,
    device: torch.device,
    *,
    rank: int = 0,
    world: int = 1,
    start_batch: int = 0,
    extra: Sequence[SignalCache] = (),
) -> DataLoader:
    """The engine's loader of normalised random crops: ``(micro_batch, C, crop)`` float32
    batches forever, ``workers`` processes with 4 batches prefetched each, pinned memory when
    feeding a GPU."""
    data = CropDataset(
        cache.path, rows, leads, cfg.data.crop_samples, mean, std, cfg.data.clip, cfg.seed,
        extra=[(other.path, np.arange(other.signals.shape[0])) for other in extra],
    )  # fmt: skip
    sampler = EpochBatchSampler(len(data), micro_batch, cfg.seed, rank, world, start_batch)
    return DataLoader(
        data,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
