"""A memory-mapped signal cache per dataset and sampling rate.

Reading PTB-XL through wfdb costs milliseconds per record; training reads every record many
times. ``prepare_cache`` converts the WFDB records once into one float32 array ``[N, 12, T]``
(a ``.npy`` opened as a memory map) plus the ``ecg_id`` of every row.

Guarantees:

* **Fingerprinted by content**: the manifest stores the source's content fingerprint
  (:mod:`bench.data.identity`: SHA-256 of the metadata tables and of every source record file,
  remembered in a digest index beside the cache); a changed byte makes the cache stale and
  ``prepare_cache`` rebuilds it. ``open_cache`` refuses a stale cache. A byte-identical copy of
  the dataset has the same fingerprint, hence the same run ids and records.
* **Upgraded in place**: a cache of the previous format (stat fingerprint) whose source is
  unchanged gets a content fingerprint in its manifest instead of being rebuilt.
* **Atomic**: the cache is built in a temporary sibling directory, its manifest written last,
  and renamed into place; an interrupted prepare never leaves a directory that looks complete.
  A file lock serialises concurrent prepares of the same cache.
* **Validated**: a bad record (missing, truncated, wrong leads/rate/length, NaN/inf) stops the
  prepare with the offending ``ecg_id``s named, or is skipped and counted with ``skip_bad``.

Layout: ``<cache_root>/<dataset-slug>/<rate>hz/{signals.npy, ecg_ids.npy, manifest.json}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from bench.atomic import remove_dead_temporaries
from bench.data.identity import (
    CONTENT_KIND,
    DigestIndex,
    content_fingerprint,
    fingerprint_kind,
    legacy_hash_file_stats,
)
from bench.data.ptbxl import (
    LEADS_12,
    PTBXL,
    RECORD_SECONDS,
    RecordError,
    format_bad_records,
)
from bench.data.transforms import resample
from bench.errors import DataError
from bench.paths import cache_dir

# 2: content fingerprints (format 1 fingerprinted record files by size and mtime).
CACHE_FORMAT = 2
_METADATA = ("ptbxl_database.csv", "scp_statements.csv")
_CHUNK = 64  # records per worker task: large enough to amortise IPC, small for a smooth bar


def source_rate_for(dataset: PTBXL, rate: int) -> int:
    """The native rate to build a ``rate`` cache from: the lowest native rate >= ``rate`` (so
    250 Hz comes from 500 Hz by anti-aliased decimation), else the highest available."""
    native = dataset.native_rates()
    if not native:
        raise DataError(
            f"{dataset.root} has no records100/ or records500/ folder",
            hint="re-download the dataset",
        )
    above = [r for r in native if r >= rate]
    return min(above) if above else max(native)


def dataset_slug(dataset: PTBXL) -> str:
    """A stable directory name for a dataset: its folder name plus a hash of its path."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.root.name)[:40] or "dataset"
    return f"{name}-{hashlib.sha256(str(dataset.root).encode()).hexdigest()[:8]}"


def source_fingerprint(
    dataset: PTBXL,
    source_rate: int,
    cache_root: Path | None = None,
    *,
    progress: bool = False,
) -> str:
    """Content fingerprint of the metadata tables and every record file at ``source_rate``.

    A function of ``(relative path, SHA-256)`` pairs only (:func:`content_fingerprint`): the
    same bytes give the same fingerprint on any machine and whatever the files' mtimes. Digests
    are remembered in the dataset's digest index beside its caches (under ``cache_root``), so
    only new or touched files are read.

    Raises:
        DataError: a file vanished or changed while it was hashed, or cannot be read.
    """
    files = [dataset.root / name for name in _METADATA]
    files += dataset.record_files(dataset.metadata.index, source_rate)
    index = DigestIndex(digest_index_dir(dataset, cache_root), dataset.root)
    return content_fingerprint(index.digests(files, progress=progress).items())


def digest_index_dir(dataset: PTBXL, cache_root: Path | None = None) -> Path:
    """Where the dataset's digest index lives: beside its caches, never inside the dataset."""
    return Path(cache_root or cache_dir()) / dataset_slug(dataset)


def legacy_source_fingerprint(dataset: PTBXL, source_rate: int) -> str:
    """The fingerprint of cache format 1 (metadata bytes, each record file's size and mtime).

    Only used to tell whether an old cache still matches its source, so it can be upgraded.
    """
    h = hashlib.sha256(f"format=1;source_rate={source_rate}".encode())
    for name in _METADATA:
        h.update((dataset.root / name).read_bytes())
    files = dataset.record_files(dataset.metadata.index, source_rate)
    legacy_hash_file_stats(h, files, dataset.root)
    return h.hexdigest()


@dataclass(frozen=True)
class SignalCache:
    """A prepared cache: ``signals`` ``[N, 12, T]`` float32 memory map, ``ecg_ids`` ``[N]``."""

    path: Path
    manifest: dict

    @property
    def rate(self) -> int:
        return int(self.manifest["rate"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def fingerprint_kind(self) -> str:
        """``content-sha256`` (or ``stat-mtime`` for a manifest written before it)."""
        return fingerprint_kind(self.manifest)

    @cached_property
    def signals(self) -> np.ndarray:
        return np.load(self.path / "signals.npy", mmap_mode="r")

    @cached_property
    def ecg_ids(self) -> np.ndarray:
        return np.load(self.path / "ecg_ids.npy")

    @cached_property
    def _row_of(self) -> dict[int, int]:
        return {int(e): i for i, e in enumerate(self.ecg_ids)}

    def rows(self, ecg_ids) -> np.ndarray:
        """Row positions of ``ecg_ids``; ids not in the cache (skipped as bad) are an error."""
        missing = [int(e) for e in ecg_ids if int(e) not in self._row_of]
        if missing:
            raise DataError(
                f"{len(missing)} records are not in the cache {self.path} (skipped as bad?): "
                f"ecg_id {missing[:10]}",
                hint="drop them from the selection or fix the records and run `bench data prepare` again",
            )
        return np.fromiter((self._row_of[int(e)] for e in ecg_ids), dtype=np.int64)


def cache_path(dataset: PTBXL, rate: int, cache_root: Path | None = None) -> Path:
    return Path(cache_root or cache_dir()) / dataset_slug(dataset) / f"{rate}hz"


def cache_state(
    dataset: PTBXL, rate: int, cache_root: Path | None = None, *, progress: bool = False
) -> str:
    """``"ready"``, ``"stale"`` (source changed since the prepare), ``"outdated"`` (an older
    cache format: ``prepare_cache`` upgrades or rebuilds it) or ``"missing"``."""
    path = cache_path(dataset, rate, cache_root)
    manifest = _read_manifest(path)
    if manifest is None:
        return "outdated" if _read_manifest(path, any_format=True) else "missing"
    current = source_fingerprint(
        dataset, int(manifest["source_rate"]), cache_root, progress=progress
    )
    return "ready" if manifest["fingerprint"] == current else "stale"


def open_cache(
    dataset: PTBXL, rate: int, cache_root: Path | None = None, verify: bool = True
) -> SignalCache:
    """Open a prepared cache; a missing or (with ``verify``) stale one is a DataError."""
    path = cache_path(dataset, rate, cache_root)
    manifest = _read_manifest(path)
    hint = f"run `bench data prepare --rate {rate}` (with the same --data-dir)"
    if manifest is None:
        if _read_manifest(path, any_format=True):
            raise DataError(f"the {rate} Hz cache at {path} has an older format", hint=hint)
        raise DataError(f"no {rate} Hz cache for {dataset.root} (looked in {path})", hint=hint)
    if verify and manifest["fingerprint"] != source_fingerprint(
        dataset, int(manifest["source_rate"]), cache_root
    ):
        raise DataError(
            f"the {rate} Hz cache at {path} is stale: the dataset changed since it was built",
            hint=hint,
        )
    return SignalCache(path, manifest)


def prepare_cache(
    dataset: PTBXL,
    rate: int,
    *,
    cache_root: Path | None = None,
    workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    force: bool = False,
) -> SignalCache:
    """Convert every record of ``dataset`` at ``rate`` into a cache (idempotent).

    Returns the existing cache when its fingerprint matches (unless ``force``). Otherwise reads
    the records of the native source rate in ``workers`` processes, resamples when ``rate`` is
    not native, validates, and publishes the cache atomically.

    Raises:
        DataError: bad records without ``skip_bad`` (naming their ``ecg_id``s); no records left.
    """
    from filelock import FileLock

    final = cache_path(dataset, rate, cache_root)
    final.parent.mkdir(parents=True, exist_ok=True)
    source_rate = source_rate_for(dataset, rate)
    with FileLock(str(final.parent / f".{rate}hz.lock")):
        fingerprint = source_fingerprint(dataset, source_rate, cache_root, progress=progress)
        existing = _read_manifest(final)
        if existing and existing["fingerprint"] == fingerprint and not force:
            return SignalCache(final, existing)
        if existing is None and not force:
            upgraded = _upgrade(dataset, final, source_rate, fingerprint)
            if upgraded is not None:
                return SignalCache(final, upgraded)
        remove_dead_temporaries(final.parent, ".tmp-*")
        remove_dead_temporaries(final.parent, ".old-*")
        tmp = final.parent / f".tmp-{rate}hz-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            manifest = _build(
                dataset, rate, source_rate, fingerprint, tmp, workers, skip_bad, progress
            )
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return SignalCache(final, manifest)


def _build(dataset, rate, source_rate, fingerprint, tmp: Path, workers, skip_bad, progress) -> dict:
    from bench.progress import progress_bar

    started = time.time()
    ecg_ids = np.asarray(dataset.metadata.index, dtype=np.int64)
    if len(ecg_ids) == 0:
        raise DataError(f"{dataset.root}: no records to cache")
    length = rate * RECORD_SECONDS
    out = np.lib.format.open_memmap(
        tmp / "signals.npy", mode="w+", dtype=np.float32, shape=(len(ecg_ids), 12, length)
    )
    del out  # workers reopen it; the header is on disk now
    bases = [str(dataset.record_base(int(e), source_rate)) for e in ecg_ids]
    chunks = [range(i, min(i + _CHUNK, len(ecg_ids))) for i in range(0, len(ecg_ids), _CHUNK)]
    jobs = [
        (
            str(tmp / "signals.npy"),
            [bases[i] for i in c],
            ecg_ids[c].tolist(),
            c.start,
            source_rate,
            rate,
        )
        for c in chunks
    ]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    problems: dict[int, str] = {}
    bar = progress_bar(
        total=len(ecg_ids), desc=f"prepare {rate} Hz", unit="rec", disable=not progress
    )
    try:
        if workers == 1:
            for job in jobs:
                problems.update(_convert_chunk(job))
                bar.update(len(job[1]))
        else:
            with ProcessPoolExecutor(workers) as pool:
                futures = {pool.submit(_convert_chunk, job): len(job[1]) for job in jobs}
                for fut in as_completed(futures):
                    problems.update(fut.result())
                    bar.update(futures[fut])
    finally:
        bar.close()

    if problems and not skip_bad:
        raise DataError(
            f"{len(problems)} of {len(ecg_ids)} records at {source_rate} Hz failed validation: "
            f"{format_bad_records(problems)}",
            hint="fix or re-download those records, or pass --skip-bad to leave them out of the cache",
        )
    keep = np.array([int(e) not in problems for e in ecg_ids])
    if not keep.any():
        raise DataError(
            f"every record at {source_rate} Hz failed validation: {format_bad_records(problems)}"
        )
    if problems:  # compact: copy the good rows into a fresh array
        full = np.load(tmp / "signals.npy", mmap_mode="r")
        good = np.lib.format.open_memmap(
            tmp / "good.npy", mode="w+", dtype=np.float32, shape=(int(keep.sum()), 12, length)
        )
        for dst, src in enumerate(np.flatnonzero(keep)):
            good[dst] = full[src]
        good.flush()
        del good, full
        os.replace(tmp / "good.npy", tmp / "signals.npy")
    np.save(tmp / "ecg_ids.npy", ecg_ids[keep])
    manifest = {
        "format": CACHE_FORMAT,
        "dataset_root": str(dataset.root),
        "dataset": dataset.name,
        "synthetic": dataset.is_synthetic,
        "rate": rate,
        "source_rate": source_rate,
        "resampled": source_rate != rate,
        "leads": list(LEADS_12),
        "shape": [int(keep.sum()), 12, length],
        "dtype": "float32",
        "units": "mV",
        "fingerprint": fingerprint,
        "fingerprint_kind": CONTENT_KIND,
        "skipped": {str(k): v for k, v in sorted(problems.items())},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(time.time() - started, 2),
    }
    # The manifest is written last: its presence marks a complete cache.
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _convert_chunk(job) -> dict[int, str]:
    """Worker: read, validate and (re)sample one chunk of records into the shared memmap."""
    from bench.data.ptbxl import read_wfdb_record

    path, bases, ids, start, source_rate, rate = job
    out = np.load(path, mmap_mode="r+")
    problems: dict[int, str] = {}
    for k, (base, ecg_id) in enumerate(zip(bases, ids, strict=True)):
        try:
            x = read_wfdb_record(Path(base), source_rate, ecg_id)
        except RecordError as err:
            problems[ecg_id] = err.reason
            continue
        out[start + k] = resample(x, source_rate, rate) if source_rate != rate else x
    out.flush()
    return problems


def _publish(tmp: Path, final: Path) -> None:
    """Swap ``tmp`` into ``final``; a stale ``final`` is moved aside first, then deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _upgrade(dataset: PTBXL, final: Path, source_rate: int, fingerprint: str) -> dict | None:
    """Give a format-1 cache whose source is unchanged (same stat fingerprint) the content
    ``fingerprint`` instead of rebuilding it: its arrays are what format 2 would build. Returns
    the new manifest, or None when there is nothing to upgrade (call under the cache's lock)."""
    old = _read_manifest(final, any_format=True)
    if not old or old.get("format") != 1 or old.get("source_rate") != source_rate:
        return None
    if old.get("fingerprint") != legacy_source_fingerprint(dataset, source_rate):
        return None  # the source changed since: rebuild
    manifest = {
        **old,
        "format": CACHE_FORMAT,
        "fingerprint": fingerprint,
        "fingerprint_kind": CONTENT_KIND,
        "upgraded_from": {"format": 1, "fingerprint": old["fingerprint"]},
    }
    tmp = final / f".manifest.json.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, final / "manifest.json")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def _read_manifest(path: Path, any_format: bool = False) -> dict | None:
    """The cache's manifest if it is complete and (unless ``any_format``) of this format."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict):
        return None
    return manifest if any_format or manifest.get("format") == CACHE_FORMAT else None
