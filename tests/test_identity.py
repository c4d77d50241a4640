"""Data identity by content: the same bytes give the same fingerprint, caches and run ids.

Real files throughout (tiny datasets); hashing is counted by wrapping the real function.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data import identity
from bench.data.cache import (
    cache_state,
    digest_index_dir,
    legacy_source_fingerprint,
    open_cache,
    prepare_cache,
    source_fingerprint,
)
from bench.data.identity import CONTENT_KIND, DigestIndex, content_fingerprint
from bench.data.ptbxl import PTBXL
from bench.errors import DataError


def copy_with_new_mtimes(src: Path, dest: Path) -> Path:
    """A byte-identical copy whose files all have other mtimes (and inodes, ctimes)."""
    shutil.copytree(src, dest, copy_function=shutil.copyfile)
    stamp = 1_600_000_000
    for i, path in enumerate(sorted(dest.rglob("*"))):
        if path.is_file():
            os.utime(path, (stamp + i, stamp + i))
    return dest


def count_hashing(monkeypatch) -> list[Path]:
    """Record every file the real SHA-256 function reads."""
    real, seen = identity.sha256_file, []

    def counted(path):
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(identity, "sha256_file", counted)
    return seen


@pytest.fixture
def tiny(tmp_path) -> Path:
    from conftest import make_ptbxl

    return make_ptbxl(tmp_path / "tiny", n=20, rates=(100,))


def test_a_byte_identical_copy_with_new_mtimes_has_the_same_identity(tiny, tmp_path):
    from bench.train import EngineConfig, resolve_config, run_id

    copy = copy_with_new_mtimes(tiny, tmp_path / "elsewhere" / "copy")
    a, b = PTBXL(tiny), PTBXL(copy)
    root = tmp_path / "c"
    assert source_fingerprint(a, 100, root) == source_fingerprint(b, 100, root)
    # the stat fingerprint of before told them apart: the bug this identity fixes
    assert legacy_source_fingerprint(a, 100) != legacy_source_fingerprint(b, 100)

    ca = prepare_cache(a, 100, cache_root=root, workers=1, progress=False)
    cb = prepare_cache(b, 100, cache_root=root, workers=1, progress=False)
    assert ca.path != cb.path  # each location has its own cache ...
    assert ca.fingerprint == cb.fingerprint  # ... with one identity
    assert ca.fingerprint_kind == cb.fingerprint_kind == CONTENT_KIND
    cfg = resolve_config("simclr", "smoke")
    engine = EngineConfig(device="cpu", precision="fp32", workers=0, mlflow=False)
    assert run_id("simclr", cfg, engine, ca.fingerprint) == run_id(
        "simclr", cfg, engine, cb.fingerprint
    )


def test_one_changed_sample_byte_changes_the_fingerprint_and_stales_the_cache(tiny, tmp_path):
    ds, root = PTBXL(tiny), tmp_path / "c"
    cache = prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    legacy, row = legacy_source_fingerprint(ds, 100), np.array(cache.signals[6])
    dat = tiny / "records100/00000/00007_lr.dat"
    before = dat.stat()
    data = bytearray(dat.read_bytes())
    data[1000] ^= 0x01  # the low bit of one sample (little-endian int16): same size
    dat.write_bytes(bytes(data))
    os.utime(dat, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime back

    assert legacy_source_fingerprint(ds, 100) == legacy  # invisible to size and mtime
    assert source_fingerprint(ds, 100, root) != cache.fingerprint
    assert cache_state(ds, 100, root) == "stale"
    with pytest.raises(DataError, match="stale"):
        open_cache(ds, 100, root)
    rebuilt = prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    assert rebuilt.fingerprint != cache.fingerprint
    changed = np.abs(rebuilt.signals[6] - row)
    assert (changed > 0).sum() == 1 and changed.max() == pytest.approx(0.001, rel=1e-3)  # 1 uV


def test_the_synthetic_dataset_generated_twice_with_one_seed_has_one_identity(tmp_path):
    from bench.data.synthetic import generate_synthetic_ptbxl

    def generate(where: str, seed: int) -> PTBXL:
        path = tmp_path / where / "data"
        return PTBXL(generate_synthetic_ptbxl(path, n=40, seed=seed, rates=(100,), progress=False))

    one, two, other = generate("one", 7), generate("two", 7), generate("other", 8)
    root = tmp_path / "c"
    files = sorted(p.relative_to(one.root) for p in one.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two.root) for p in two.root.rglob("*") if p.is_file())
    for rel in files:  # every file, the marker and the tables included, byte for byte
        assert (one.root / rel).read_bytes() == (two.root / rel).read_bytes(), rel
    assert source_fingerprint(one, 100, root) == source_fingerprint(two, 100, root)
    assert source_fingerprint(other, 100, root) != source_fingerprint(one, 100, root)


def test_the_digest_index_hashes_each_file_once(tiny, tmp_path, monkeypatch):
    ds, root = PTBXL(tiny), tmp_path / "c"
    hashed = count_hashing(monkeypatch)
    first = source_fingerprint(ds, 100, root)
    assert len(hashed) == 2 + 2 * 20  # the two tables, then .hea and .dat of each record
    assert (digest_index_dir(ds, root) / "digests.json").is_file()

    hashed.clear()
    assert source_fingerprint(ds, 100, root) == first
    assert prepare_cache(ds, 100, cache_root=root, workers=1, progress=False).fingerprint == first
    assert cache_state(ds, 100, root) == "ready"
    assert hashed == []  # an unchanged dataset is checked by stat alone

    touched = tiny / "records100/00000/00003_lr.hea"
    os.utime(touched, (1_700_000_000, 1_700_000_000))
    assert source_fingerprint(ds, 100, root) == first  # same bytes, same identity
    assert hashed == [touched]  # re-hashed once ...
    assert source_fingerprint(ds, 100, root) == first
    assert hashed == [touched]  # ... and remembered


def test_index_writers_merge_and_a_corrupt_index_is_only_a_memo(tiny, tmp_path, monkeypatch):
    """Two processes filling one index keep each other's entries; a damaged index is rebuilt."""
    where = tmp_path / "index"
    files = sorted((tiny / "records100").rglob("*_lr.*"))
    first, second = DigestIndex(where, tiny), DigestIndex(where, tiny)  # loaded before any save
    a = first.digests(files[:10])
    b = second.digests(files[10:])
    saved = json.loads((where / "digests.json").read_text())["files"]
    assert set(saved) == set(a) | set(b)
    assert not [p for p in where.iterdir() if ".tmp-" in p.name]

    (where / "digests.json").write_text('{"format": 1, "files": [trunc')
    hashed = count_hashing(monkeypatch)
    again = DigestIndex(where, tiny).digests(files)
    assert again == {**a, **b} and len(hashed) == len(files)
    # an index written for another dataset's root is not trusted either
    assert DigestIndex(where, tmp_path).entries == {}


def test_the_fingerprint_is_a_function_of_paths_and_digests_only():
    pairs = [("records100/00000/00001_lr.dat", "ab" * 32), ("ptbxl_database.csv", "cd" * 32)]
    assert content_fingerprint(pairs) == content_fingerprint(list(reversed(pairs)))
    assert content_fingerprint(pairs) != content_fingerprint([pairs[0], (pairs[1][0], "ef" * 32)])
    assert content_fingerprint(pairs) != content_fingerprint([pairs[0], ("other.csv", "cd" * 32)])
    assert content_fingerprint(pairs) != content_fingerprint([pairs[0], (pairs[1][0], None)])


def test_a_file_that_vanishes_while_hashing_is_a_clear_error(tiny, tmp_path, monkeypatch):
    real = identity.sha256_file
    victim = tiny / "records100/00000/00004_lr.dat"

    def vanishing(path):
        if Path(path) == victim:
            victim.unlink()  # deleted between the listing and the read
        return real(path)

    monkeypatch.setattr(identity, "sha256_file", vanishing)
    with pytest.raises(DataError, match="00004_lr.dat vanished while the dataset was being hashed"):
        source_fingerprint(PTBXL(tiny), 100, tmp_path / "c")
    assert not [p for p in (tmp_path / "c").rglob("*") if ".tmp-" in p.name]


def test_a_missing_record_file_is_part_of_the_identity(tiny, tmp_path):
    ds, root = PTBXL(tiny), tmp_path / "c"
    before = source_fingerprint(ds, 100, root)
    (tiny / "records100/00000/00009_lr.dat").unlink()
    assert source_fingerprint(ds, 100, root) != before
    cache = prepare_cache(ds, 100, cache_root=root, workers=1, skip_bad=True, progress=False)
    assert 9 not in set(cache.ecg_ids) and cache_state(ds, 100, root) == "ready"


def test_an_old_format_cache_is_upgraded_in_place_unless_its_source_changed(tiny, tmp_path):
    ds, root = PTBXL(tiny), tmp_path / "c"
    cache = prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    content = cache.fingerprint

    def make_old() -> int:
        """Turn the cache into what format 1 wrote; returns its signals' mtime."""
        manifest = {
            **cache.manifest,
            "format": 1,
            "fingerprint": legacy_source_fingerprint(ds, 100),
        }
        del manifest["fingerprint_kind"]
        (cache.path / "manifest.json").write_text(json.dumps(manifest))
        return (cache.path / "signals.npy").stat().st_mtime_ns

    stamp = make_old()
    assert cache_state(ds, 100, root) == "outdated"
    with pytest.raises(DataError, match="older format"):
        open_cache(ds, 100, root)
    upgraded = prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    assert (upgraded.path / "signals.npy").stat().st_mtime_ns == stamp  # not rebuilt
    assert upgraded.fingerprint == content and upgraded.fingerprint_kind == CONTENT_KIND
    assert upgraded.manifest["upgraded_from"]["format"] == 1
    assert cache_state(ds, 100, root) == "ready"

    make_old()
    os.utime(tiny / "records100/00000/00002_lr.dat", (1_700_000_000, 1_700_000_000))
    rebuilt = prepare_cache(ds, 100, cache_root=root, workers=1, progress=False)
    assert "upgraded_from" not in rebuilt.manifest  # the old fingerprint no longer matched
    assert rebuilt.fingerprint == content  # the bytes did not change
