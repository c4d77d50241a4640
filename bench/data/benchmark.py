"""Benchmark: reading the training split from the cache vs per-record wfdb reads.

Prints figures, asserts nothing: speed goals belong in benchmarks, not in timed tests.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np

from bench.data.cache import open_cache, prepare_cache
from bench.data.ptbxl import PTBXL, read_wfdb_record
from bench.task import TRAIN_FOLDS


def benchmark_training_read(
    dataset: PTBXL, rate: int = 100, limit: int | None = None
) -> Iterator[str]:
    """Yield report lines: records/s and MB/s of both paths over the training folds, and the ratio.

    The wfdb path is what research code typically does (``rdrecord`` per record, then stack);
    the cache path gathers the same rows from the memory map into one contiguous array.
    """
    if rate not in dataset.native_rates():
        raise ValueError(
            f"{rate} Hz has no native records to compare against; use one of {dataset.native_rates()}"
        )
    prepare_cache(dataset, rate, progress=False)
    cache = open_cache(dataset, rate)
    meta = dataset.metadata
    train_ids = meta.index[meta["strat_fold"].isin(TRAIN_FOLDS)].to_numpy()
    train_ids = train_ids[np.isin(train_ids, cache.ecg_ids)]
    wfdb_ids = train_ids if limit is None else train_ids[:limit]
    yield f"dataset: {dataset.name}; training folds 1-8: {len(train_ids)} records at {rate} Hz"

    started = time.perf_counter()
    stacked = np.stack(
        [read_wfdb_record(dataset.record_base(int(e), rate), rate, int(e)) for e in wfdb_ids]
    )
    wfdb_s = time.perf_counter() - started
    wfdb_rate = len(wfdb_ids) / wfdb_s

    rows = cache.rows(train_ids)
    timings = []
    for _ in range(3):  # best of 3: the first pass may fault pages in from disk
        started = time.perf_counter()
        batch = np.ascontiguousarray(cache.signals[np.sort(rows)])
        timings.append(time.perf_counter() - started)
    cache_s = min(timings)
    cache_rate = len(train_ids) / cache_s
    mb = batch.nbytes / len(train_ids) / 1e6
    same = np.array_equal(stacked, batch[: len(wfdb_ids)])

    yield f"wfdb per-record reads: {len(wfdb_ids)} records in {wfdb_s:.2f} s = {wfdb_rate:,.0f} records/s ({wfdb_rate * mb:,.1f} MB/s)"
    yield (
        f"memory-mapped cache:   {len(train_ids)} records in {cache_s * 1e3:.1f} ms = {cache_rate:,.0f} records/s "
        f"({cache_rate * mb:,.0f} MB/s; first pass {timings[0] * 1e3:.1f} ms)"
    )
    yield f"speed-up: {cache_rate / wfdb_rate:,.0f}x (target >= 100x); identical arrays: {same}"


# Record counts of the full PTB-XL v1.0.3 release (both rates hold every record).
FULL_RELEASE_RECORDS = 21_799


def benchmark_identity(dataset: PTBXL, workers: int | None = None) -> Iterator[str]:
    """Yield report lines: the cost of content identity on ``dataset`` and projected on the
    full release.

    Per native rate, over the record files present: first-time hashing with an empty digest
    index (SHA-256 of every byte; the first pass may read from disk, the second from the page
    cache), the warm check with the index filled (one ``stat`` per file) and the stat-only
    fingerprint of before, for comparison. Indexes go to a temporary directory.
    """
    import os
    import platform
    import tempfile
    from pathlib import Path

    from bench.data.cache import legacy_source_fingerprint, source_fingerprint
    from bench.data.identity import DigestIndex

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), cpu)
    evicted = " (files evicted from the page cache)" if hasattr(os, "posix_fadvise") else ""
    yield f"dataset: {dataset.name} at {dataset.root}"
    yield f"machine: {cpu}, {os.cpu_count()} cores; hashing threads: {workers or 'default'}"
    meta = dataset.metadata
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as tmp:
        for rate in dataset.native_rates():
            files = [f for f in dataset.record_files(meta.index, rate) if f.is_file()]
            records = len(files) // 2
            size = sum(f.stat().st_size for f in files)
            firsts = []
            for attempt in range(2):  # a fresh, empty index each time
                if attempt == 0:
                    _evict(files)  # the first pass reads from disk, as on a first run
                index = DigestIndex(Path(tmp) / f"{rate}-{attempt}", dataset.root)
                started = time.perf_counter()
                index.digests(files, workers=workers)
                firsts.append(time.perf_counter() - started)
            warm = []
            for _ in range(3):
                started = time.perf_counter()
                DigestIndex(Path(tmp) / f"{rate}-1", dataset.root).digests(files)
                warm.append(time.perf_counter() - started)
            mb = size / 1e6
            yield (
                f"{rate} Hz: {records} records, {len(files)} files, {mb:.1f} MB: first-time "
                f"hashing{evicted} {firsts[0]:.2f} s ({mb / firsts[0]:.0f} MB/s; page cache warm: "
                f"{firsts[1]:.2f} s, {mb / firsts[1]:.0f} MB/s); warm check (index hit) "
                f"{min(warm) * 1e3:.0f} ms"
            )
            scale = FULL_RELEASE_RECORDS / max(records, 1)
            yield (
                f"  projected on the full release ({FULL_RELEASE_RECORDS:,} records at {rate} Hz, "
                f"{mb * scale / 1e3:.2f} GB): first-time hashing {firsts[0] * scale:.0f} s "
                f"({firsts[1] * scale:.0f} s from the page cache), warm check "
                f"{min(warm) * scale:.2f} s"
            )
        if 100 in dataset.native_rates() and all(
            f.is_file() for f in dataset.record_files(meta.index, 100)
        ):
            root = Path(tmp) / "api"
            source_fingerprint(dataset, 100, root)  # fills the index
            timings = {"content (index hit)": [], "stat-only (before)": []}
            for _ in range(3):
                started = time.perf_counter()
                source_fingerprint(dataset, 100, root)
                timings["content (index hit)"].append(time.perf_counter() - started)
                started = time.perf_counter()
                legacy_source_fingerprint(dataset, 100)
                timings["stat-only (before)"].append(time.perf_counter() - started)
            yield "checking an unchanged dataset at 100 Hz (what every run and open does): " + (
                ", ".join(f"{k} {min(v) * 1e3:.0f} ms" for k, v in timings.items())
            )


def _evict(files) -> None:
    """Ask the kernel to drop ``files`` from the page cache (Linux; needs no privileges for
    clean pages), so that the next read comes from the disk. Best effort."""
    import os

    if not hasattr(os, "posix_fadvise"):
        return
    for f in files:
        with contextlib.suppress(OSError):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
