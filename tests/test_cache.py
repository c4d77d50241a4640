"""Signal cache: contents, idempotence, fingerprinting, bad records, atomicity."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bench.data import cache as cache_mod
from bench.data.cache import cache_path, cache_state, open_cache, prepare_cache
from bench.data.ptbxl import PTBXL
from bench.data.transforms import resample
from bench.errors import DataError


def test_prepare_caches_every_record_exactly(mini_ptbxl, tmp_path):
    ds = PTBXL(mini_ptbxl)
    cache = prepare_cache(ds, 100, cache_root=tmp_path / "c", workers=2, progress=False)
    assert cache.signals.shape == (30, 12, 1000) and cache.signals.dtype == np.float32
    assert list(cache.ecg_ids) == list(range(1, 31))
    for ecg_id in (1, 17, 30):
        row = cache.rows([ecg_id])[0]
        np.testing.assert_array_equal(cache.signals[row], ds.read_record(ecg_id, 100))
    assert cache.manifest["synthetic"] is False and cache.manifest["skipped"] == {}
    assert cache_state(ds, 100, tmp_path / "c") == "ready"


def test_prepare_is_idempotent_and_rebuilds_when_the_source_changes(mini_ptbxl, tmp_path):
    ds = PTBXL(mini_ptbxl)
    root = tmp_path / "c"
    first = prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    stamp = os.stat(first.path / "signals.npy").st_mtime_ns
    again = prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    assert os.stat(again.path / "signals.npy").st_mtime_ns == stamp  # not rebuilt

    # Change one record: the cache becomes stale, open_cache refuses it, prepare rebuilds it.
    from conftest import write_record

    new_signal = np.tile(np.linspace(-0.5, 0.5, 1000)[:, None], (1, 12))  # not flat: valid
    write_record(mini_ptbxl / "records100/00000/00005_lr", new_signal, 100)
    ds = PTBXL(mini_ptbxl)
    assert cache_state(ds, 100, root) == "stale"
    with pytest.raises(DataError, match="stale"):
        open_cache(ds, 100, root)
    rebuilt = prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    np.testing.assert_allclose(rebuilt.signals[rebuilt.rows([5])[0]], new_signal.T, atol=1e-3)
    assert rebuilt.fingerprint != first.fingerprint
    assert not list(root.rglob(".old-*")) and not list(root.rglob(".tmp-*"))


def test_open_missing_cache_says_how_to_prepare(mini_ptbxl, tmp_path):
    with pytest.raises(DataError) as err:
        open_cache(PTBXL(mini_ptbxl), 100, tmp_path / "c")
    assert "bench data prepare --rate 100" in err.value.hint


def test_non_native_rate_is_resampled_from_the_next_higher_native_rate(mini_ptbxl, tmp_path):
    ds = PTBXL(mini_ptbxl)
    cache = prepare_cache(ds, 250, cache_root=tmp_path / "c", workers=1, progress=False)
    assert cache.signals.shape == (30, 12, 2500)
    assert cache.manifest["source_rate"] == 500 and cache.manifest["resampled"] is True
    expected = resample(ds.read_record(2, 500), 500, 250)
    np.testing.assert_allclose(cache.signals[cache.rows([2])[0]], expected, atol=1e-6)


def _truncate(root, ecg_id):
    dat = root / f"records100/00000/{ecg_id:05d}_lr.dat"
    dat.write_bytes(dat.read_bytes()[:100])


def test_bad_records_stop_the_prepare_and_leave_no_cache(mini_ptbxl, tmp_path):
    _truncate(mini_ptbxl, 12)
    (mini_ptbxl / "records100/00000/00020_lr.hea").unlink()
    ds = PTBXL(mini_ptbxl)
    root = tmp_path / "c"
    with pytest.raises(DataError) as err:
        prepare_cache(ds, 100, cache_root=root, workers=2, progress=False)
    assert "2 of 30 records" in err.value.message
    assert (
        "ecg_id 12: truncated" in err.value.message
        and "ecg_id 20: missing file" in err.value.message
    )
    assert "--skip-bad" in err.value.hint
    assert cache_state(ds, 100, root) == "missing"
    assert not any(p.name.startswith(".tmp") for p in cache_path(ds, 100, root).parent.iterdir())


def test_skip_bad_leaves_them_out_with_a_count(mini_ptbxl, tmp_path):
    _truncate(mini_ptbxl, 12)
    ds = PTBXL(mini_ptbxl)
    cache = prepare_cache(
        ds, 100, cache_root=tmp_path / "c", workers=2, skip_bad=True, progress=False
    )
    assert cache.signals.shape[0] == 29 and 12 not in set(cache.ecg_ids)
    assert list(cache.manifest["skipped"]) == ["12"]
    np.testing.assert_array_equal(cache.signals[cache.rows([13])[0]], ds.read_record(13, 100))
    with pytest.raises(DataError, match="not in the cache"):
        cache.rows([12])


def test_interrupted_prepare_leaves_nothing_that_looks_complete(mini_ptbxl, tmp_path, monkeypatch):
    ds = PTBXL(mini_ptbxl)
    root = tmp_path / "c"
    calls = {"n": 0}
    real = cache_mod._convert_chunk

    def interrupted(job):
        calls["n"] += 1
        if calls["n"] == 1:
            return real(job)
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod, "_CHUNK", 8)
    monkeypatch.setattr(cache_mod, "_convert_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    assert cache_state(ds, 100, root) == "missing"
    # only the locks and the digest index (a memo of file hashes, valid on its own) remain
    left = cache_path(ds, 100, root).parent.iterdir()
    assert [p.name for p in left if not p.name.endswith(".lock")] == ["digests.json"]

    monkeypatch.setattr(cache_mod, "_convert_chunk", real)
    assert prepare_cache(ds, 100, cache_root=root, workers=1, progress=False).signals.shape[0] == 30


def test_leftovers_of_a_killed_prepare_are_ignored_then_removed(mini_ptbxl, tmp_path):
    """A SIGKILLed prepare leaves its temporary directory: it never counts as a cache."""
    ds = PTBXL(mini_ptbxl)
    root = tmp_path / "c"
    leftover = cache_path(ds, 100, root).parent / ".tmp-100hz-999999999"
    leftover.mkdir(parents=True)
    (leftover / "manifest.json").write_text(json.dumps({"format": 1, "fingerprint": "x"}))
    assert cache_state(ds, 100, root) == "missing"
    prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    assert not leftover.exists()
