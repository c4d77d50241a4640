"""Extra unlabelled corpora for pre-training: any directory of WFDB records.

Pre-training uses PTB-XL folds 1-8 by default; users may add other corpora (e.g. Chapman,
Georgia, CODE-15, their own hospital data) as directories of WFDB records at any sampling rate
and length. ``prepare_corpus`` converts such a directory once into the same memory-mapped cache
format as PTB-XL (``[N, 12, T]`` float32 in mV, 10 s rows at the requested rate), so the engine
reads both the same way:

* every ``*.hea`` under the directory is a record; leads are matched by name (case-insensitive,
  ``aVR`` = ``AVR``); a record with I, II and V1-V6 but without III / aVR / aVL / aVF gets them
  derived exactly (Einthoven and Goldberger), any other lead set is skipped with a count;
* each record is resampled to the rate with the anti-aliased polyphase filter and cut into
  non-overlapping 10 s segments; records shorter than 10 s are skipped with a count;
* unreadable, non-finite or unit-less records are skipped with a count and named in the
  manifest: an unlabelled corpus is expected to be messy, and one bad file must not stop a run.

Corpus rows never carry labels or folds and are used for pre-training only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench.atomic import remove_dead_temporaries
from bench.data.cache import CACHE_FORMAT, SignalCache
from bench.data.identity import CONTENT_KIND, DigestIndex, content_fingerprint
from bench.data.ptbxl import LEADS_12, RECORD_SECONDS
from bench.data.transforms import resample
from bench.errors import DataError
from bench.paths import cache_dir

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "μv": 1e-3, "v": 1e3}


def derive_limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> dict[str, np.ndarray]:
    """III, aVR, aVL, aVF from I and II (Einthoven: III = II - I; Goldberger for the rest)."""
    return {
        "III": lead_ii - lead_i,
        "AVR": -(lead_i + lead_ii) / 2,
        "AVL": lead_i - lead_ii / 2,
        "AVF": lead_ii - lead_i / 2,
    }


def to_twelve_leads(signal: np.ndarray, names: list[str]) -> np.ndarray:
    """``(C, T)`` with lead ``names`` -> ``(12, T)`` in :data:`LEADS_12` order.

    Raises:
        ValueError: a lead of I, II, V1-V6 is missing (the others can be derived).
    """
    by_name = {n.upper(): signal[i] for i, n in enumerate(names)}
    missing = [
        lead for lead in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6") if lead not in by_name
    ]
    if missing:
        raise ValueError(f"leads {missing} missing (has {names})")
    derived = derive_limb_leads(by_name["I"], by_name["II"])
    return np.stack([by_name.get(lead, derived.get(lead)) for lead in LEADS_12]).astype(np.float32)


def read_corpus_record(base: Path, rate: int) -> np.ndarray:
    """One record as ``(S, 12, rate * 10)`` float32 segments in mV. Raises ValueError."""
    import wfdb

    try:
        record = wfdb.rdrecord(str(base), physical=True)
    except Exception as exc:
        raise ValueError(f"unreadable ({exc.__class__.__name__}: {exc})") from None
    if record.p_signal is None or not record.fs:
        raise ValueError("no physical signal or sampling rate")
    scale = np.array([_UNIT_TO_MV.get(str(u).strip().lower(), np.nan) for u in record.units])
    if np.isnan(scale).any():
        raise ValueError(f"units {record.units} are not voltages")
    signal = (record.p_signal * scale).T  # (C, T) in mV
    if not np.isfinite(signal).all():
        raise ValueError("NaN/inf samples")
    twelve = to_twelve_leads(signal, list(record.sig_name))
    fs = float(record.fs)
    if fs != int(fs):
        raise ValueError(f"non-integer sampling rate {fs}")
    twelve = resample(twelve, int(fs), rate)
    length = rate * RECORD_SECONDS
    n_segments = twelve.shape[1] // length
    if n_segments == 0:
        raise ValueError(f"shorter than {RECORD_SECONDS} s ({record.sig_len / fs:.1f} s)")
    return np.stack([twelve[:, k * length : (k + 1) * length] for k in range(n_segments)])


def _planned_segments(
    root: Path, headers: list[Path], rate: int, skipped: dict[str, str]
) -> dict[Path, int]:
    """10 s segments each record will give, from its header alone; unusable headers are skipped."""
    import wfdb

    planned: dict[Path, int] = {}
    for hea in headers:
        name = str(hea.relative_to(root).with_suffix(""))
        try:
            header = wfdb.rdheader(str(hea.with_suffix("")))
        except Exception as exc:
            skipped[name] = f"unreadable header ({exc.__class__.__name__}: {exc})"
            continue
        if not header.fs or not header.sig_len:
            skipped[name] = "header without sampling rate or length"
            continue
        n = int(header.sig_len * rate / header.fs) // (rate * RECORD_SECONDS)
        if n == 0:
            skipped[name] = f"shorter than {RECORD_SECONDS} s ({header.sig_len / header.fs:.1f} s)"
            continue
        planned[hea] = n
    return planned


def corpus_fingerprint(
    root: Path, headers: list[Path], index_dir: Path | None = None, progress: bool = False
) -> str:
    """Content fingerprint of the corpus's headers and ``.dat`` files
    (:func:`bench.data.identity.content_fingerprint`); digests are remembered in ``index_dir``."""
    files = [f for hea in headers for f in (hea, hea.with_suffix(".dat"))]
    return content_fingerprint(
        DigestIndex(index_dir, root).digests(files, progress=progress).items()
    )


def corpus_cache_path(root: Path, rate: int, cache_root: Path | None = None) -> Path:
    root = Path(root).resolve()
    slug = f"corpus-{root.name[:40]}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
    return Path(cache_root or cache_dir()) / slug / f"{rate}hz"


def prepare_corpus(
    root: Path, rate: int, *, cache_root: Path | None = None, progress: bool = True
) -> SignalCache:
    """Cache a WFDB directory as 10 s, 12-lead rows at ``rate`` (idempotent, atomic).

    Raises:
        DataError: the directory does not exist, holds no ``.hea`` file, or no usable record.
    """
    from filelock import FileLock

    from bench.progress import progress_bar

    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(
            f"extra corpus {root} does not exist",
            hint="pass a directory of WFDB records (.hea + .dat)",
        )
    headers = sorted(root.rglob("*.hea"))
    if not headers:
        raise DataError(
            f"extra corpus {root} holds no WFDB header (*.hea)",
            hint="pass a directory of WFDB records",
        )
    final = corpus_cache_path(root, rate, cache_root)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{rate}hz.lock")):
        fingerprint = corpus_fingerprint(root, headers, final.parent, progress)
        manifest_path = final / "manifest.json"
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("fingerprint") == fingerprint:
                return SignalCache(final, manifest)
        remove_dead_temporaries(final.parent, ".tmp-*")
        tmp = final.parent / f".tmp-{rate}hz-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            skipped: dict[str, str] = {}
            planned = _planned_segments(
                root, headers, rate, skipped
            )  # from headers only: no signal read
            length = rate * RECORD_SECONDS
            total = sum(planned.values())
            if total == 0:
                shown = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5])
                raise DataError(f"extra corpus {root}: no usable record ({shown})")
            # Written row by row into a memory map: a large corpus never has to fit in memory.
            out = np.lib.format.open_memmap(
                tmp / "signals.npy", mode="w+", dtype=np.float32, shape=(total, 12, length)
            )
            sources: list[str] = []
            for hea, n_planned in progress_bar(
                list(planned.items()),
                desc=f"corpus {root.name} {rate} Hz",
                unit="rec",
                disable=not progress,
            ):
                name = str(hea.relative_to(root).with_suffix(""))
                try:
                    segs = read_corpus_record(hea.with_suffix(""), rate)[:n_planned]
                except ValueError as exc:
                    skipped[name] = str(exc)
                    continue
                out[len(sources) : len(sources) + len(segs)] = segs
                sources += [f"{name}#{k}" for k in range(len(segs))]
            out.flush()
            del out
            if not sources:
                shown = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5])
                raise DataError(f"extra corpus {root}: no usable record ({shown})")
            if len(sources) < total:  # records that failed on read: keep the filled rows only
                full = np.load(tmp / "signals.npy", mmap_mode="r")
                kept = np.lib.format.open_memmap(
                    tmp / "kept.npy", mode="w+", dtype=np.float32, shape=(len(sources), 12, length)
                )
                for start in range(0, len(sources), 256):
                    kept[start : start + 256] = full[start : min(start + 256, len(sources))]
                kept.flush()
                del kept, full
                os.replace(tmp / "kept.npy", tmp / "signals.npy")
            shape = [len(sources), 12, length]
            np.save(tmp / "ecg_ids.npy", np.arange(len(sources), dtype=np.int64))
            (tmp / "sources.json").write_text(json.dumps(sources))
            manifest = {
                "format": CACHE_FORMAT,
                "dataset_root": str(root),
                "dataset": f"corpus {root.name}",
                "synthetic": False,
                "rate": rate,
                "source_rate": None,
                "resampled": True,
                "leads": list(LEADS_12),
                "shape": shape,
                "dtype": "float32",
                "units": "mV",
                "fingerprint": fingerprint,
                "fingerprint_kind": CONTENT_KIND,
                "records": len(headers) - len(skipped),
                "skipped": skipped,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / "manifest.json").write_text(
                json.dumps(manifest, indent=1)
            )  # last: marks complete
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return SignalCache(final, manifest)
