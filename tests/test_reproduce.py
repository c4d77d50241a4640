"""``bench reproduce RECORD``: a record's exact evaluation re-run and compared.

Re-running with ``--pretrain`` repeats the whole chain (pre-training, features, probe, test)
in a fresh results directory on the CPU with the record's seed and compares every metric and
score with the original run's: two independent runs give bit-identical results.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.reproduce import Row, compare, format_report, reproduce

SMOKE = ["--preset", "smoke", "--no-progress"]


def bench(*args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def original(small_synthetic, tmp_path_factory):
    """A smoke ``bench run`` of JEPA and the random reference row (linear probe, one task)."""
    results = tmp_path_factory.mktemp("original") / "results"
    out = bench(
        "run", "--method", "jepa,random", "--task", "superdiagnostic", "--protocol", "linear",
        "--data-dir", str(small_synthetic), "--no-mlflow", *SMOKE,
        env={"BENCH_RESULTS_DIR": str(results)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    records = {p.parts[-4].split("-")[0]: p for p in (results / "records").rglob("*.json")}
    assert set(records) == {"jepa", "random"}
    return results, records


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (lock files included), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def copy_results(results: Path, dest: Path) -> Path:
    shutil.copytree(results, dest, ignore=shutil.ignore_patterns("cache", "features"))
    return dest


def bench_here(capsys, *args: str) -> tuple[int, str, str]:
    """``bench ARGS`` in this process (no interpreter start-up): exit code, stdout, stderr."""
    from bench.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def moved(record: Path, results: Path, copy: Path) -> Path:
    return copy / record.relative_to(results)


def edit_json(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record, indent=2))


# --------------------------------------------------------------------------- end to end
def test_reproduce_reports_identical_and_touches_nothing(original, small_synthetic):
    results, records = original
    before = tree_digest(results)
    out = bench(
        "reproduce", str(records["jepa"]), "--data-dir", str(small_synthetic), "--no-progress",
        env={"BENCH_RESULTS_DIR": str(results)},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "result: identical" in out.stdout
    assert "reused checkpoint" in out.stdout and "jepa-tiny-" in out.stdout
    for quantity in ("test macro AUROC", "test macro AP", "test AUROC NORM", "val macro AUROC",
                     "best epoch", "max |test score difference|: 0"):  # fmt: skip
        assert quantity in out.stdout, quantity
    # the original records, predictions, features, checkpoints and caches are byte-identical,
    # and nothing new appeared beside them
    assert tree_digest(results) == before


def test_pretrain_rerun_reproduces_the_whole_chain(original, small_synthetic, monkeypatch):
    """Pre-training, features, probe and test re-run from the record's config alone, in a
    fresh results directory: same weights, same metrics, same scores."""
    results, records = original
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(results))
    from bench.data.ptbxl import PTBXL

    before = tree_digest(results / "records")
    rep = reproduce(records["jepa"], PTBXL(small_synthetic), pretrain=True, workers=0)
    assert rep.identical and not rep.differences, format_report(rep)
    assert "re-run into" in rep.pretrain and "identical" in rep.pretrain
    assert rep.new["test_macro_auroc"] == rep.original["test_macro_auroc"]
    assert (
        rep.new["metrics"]["test"]["per_label_auroc"]
        == rep.original["metrics"]["test"]["per_label_auroc"]
    )
    assert rep.max_score_diff == 0.0
    assert rep.workdir is None  # the temporary results directory is gone
    assert tree_digest(results / "records") == before
    assert os.environ["BENCH_RESULTS_DIR"] == str(results)  # restored


def test_reference_row_rebuilds_its_encoder_from_config_and_seed(original, small_synthetic,
                                                                 monkeypatch):  # fmt: skip
    results, records = original
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(results))
    from bench.data.ptbxl import PTBXL

    rep = reproduce(records["random"], PTBXL(small_synthetic), keep=True)
    try:
        assert rep.identical, format_report(rep)
        assert rep.pretrain.startswith("none")
        assert rep.workdir is not None and list((rep.workdir / "records").rglob("*.json"))
    finally:
        shutil.rmtree(rep.workdir)


def test_tampered_record_is_reported_difference_by_difference(original, small_synthetic, tmp_path,
                                                             monkeypatch, capsys):  # fmt: skip
    results, records = original
    copy = copy_results(results, tmp_path / "copy")
    record = moved(records["jepa"], results, copy)
    recorded = json.loads(record.read_text())
    tampered_auroc = recorded["test_macro_auroc"] - 0.01
    npz = record.with_suffix(".npz")
    with np.load(npz, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["test_scores"][0, 0] += 0.25
    np.savez(npz, **arrays)

    def change(r):
        r["metrics"]["test"]["macro_auroc"] = tampered_auroc
        r["test_macro_auroc"] = tampered_auroc
        r["selection"]["best_epoch"] = r["selection"]["best_epoch"] - 1
        r["npz_bytes"] = npz.stat().st_size  # still a complete record

    edit_json(record, change)
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(copy))
    before = tree_digest(copy)
    code, stdout, stderr = bench_here(
        capsys, "reproduce", str(record), "--data-dir", str(small_synthetic), "--no-progress"
    )
    assert code == 1, stdout + stderr
    assert "result: DIFFERENT, 3 difference(s)" in stdout
    assert f"test macro AUROC: recorded {tampered_auroc:.6f}" in stdout
    assert "best epoch: recorded" in stdout
    assert "test scores:" in stdout and "|diff| 0.25" in stdout
    assert {k: v for k, v in tree_digest(copy).items() if not k.startswith("cache")} == {
        k: v for k, v in before.items() if not k.startswith("cache")
    }


def test_other_data_is_refused_before_any_work(original, tmp_path, capsys):
    """A record is reproduced only on the data it was computed on (same fingerprint)."""
    from conftest import make_ptbxl

    results, records = original
    other = make_ptbxl(tmp_path / "other", n=30, rates=(100,))
    code, _, stderr = bench_here(
        capsys, "reproduce", str(records["jepa"]), "--data-dir", str(other), "--no-progress"
    )
    assert code == 1
    assert "is not the data the record used" in stderr and "hint: pass --data-dir" in stderr
    # refused before building a cache (only the digest index of the data it checked is kept)
    assert not list((tmp_path / "results" / "cache").rglob("*.npy"))


def test_record_with_another_fingerprint_is_refused(original, small_synthetic, tmp_path):
    from bench.data.ptbxl import PTBXL

    results, records = original
    copy = copy_results(results, tmp_path / "copy")
    record = moved(records["random"], results, copy)
    edit_json(record, lambda r: r["dataset"].update(fingerprint="0" * 64))
    with pytest.raises(BenchError, match="not the data the record used") as info:
        reproduce(record, PTBXL(small_synthetic))
    assert "000000000000" in info.value.message and "--data-dir" in info.value.hint


def test_missing_checkpoint_asks_for_pretrain(original, small_synthetic, tmp_path, monkeypatch):
    from bench.data.ptbxl import PTBXL

    results, records = original
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(results))  # its cache
    copy = copy_results(results, tmp_path / "copy")
    record = moved(records["jepa"], results, copy)
    gone = copy / "pretrain" / record.parts[-4] / "final.pt"
    edit_json(record, lambda r: r["pretrain"].update(checkpoint=str(gone)))
    shutil.rmtree(copy / "pretrain")
    with pytest.raises(BenchError, match="checkpoint of jepa-tiny-.* is gone") as info:
        reproduce(record, PTBXL(small_synthetic))
    assert "--pretrain" in info.value.hint


# --------------------------------------------------------------------------- data identity
def copy_data(src: Path, dest: Path) -> Path:
    """A byte-identical copy of a dataset whose files all have new mtimes (and inodes)."""
    shutil.copytree(src, dest, copy_function=shutil.copyfile)
    for i, path in enumerate(sorted(dest.rglob("*"))):
        if path.is_file():
            os.utime(path, (1_600_000_000 + i, 1_600_000_000 + i))
    return dest


def test_a_byte_identical_copy_of_the_data_reproduces(original, small_synthetic, tmp_path, capsys):
    """The reference row's run id is recomputed from the data fingerprint: the same bytes in
    another place, with other mtimes, give the same run id and an identical reproduction."""
    results, records = original
    copy = copy_data(small_synthetic, tmp_path / "elsewhere" / "data")
    code, stdout, stderr = bench_here(
        capsys, "reproduce", str(records["random"]), "--data-dir", str(copy), "--no-progress"
    )
    assert code == 0, stdout + stderr
    assert "matches (content SHA-256)" in stdout and "result: identical" in stdout
    assert "run id" not in stdout  # the same run id (a new one would be listed)


def as_old_record(record: Path, fingerprint: str) -> None:
    """Make ``record`` look written before content identity: an mtime fingerprint, no kind."""

    def change(r):
        r["dataset"].pop("fingerprint_kind")
        r["dataset"]["fingerprint"] = fingerprint

    edit_json(record, change)


def test_a_record_from_before_content_identity(original, small_synthetic, tmp_path, capsys):
    """An old record still reproduces on the untouched files its mtime fingerprint matches; on
    a copy it is refused with a hint naming --unchecked-data, which runs it and reports."""
    from bench.data.cache import legacy_source_fingerprint
    from bench.data.ptbxl import PTBXL

    results, records = original
    store = copy_results(results, tmp_path / "store")
    record = moved(records["random"], results, store)
    as_old_record(record, legacy_source_fingerprint(PTBXL(small_synthetic), 100))

    code, stdout, stderr = bench_here(
        capsys, "reproduce", str(record), "--data-dir", str(small_synthetic), "--no-progress"
    )
    assert code == 0, stdout + stderr
    assert "(file mtimes: the record predates content identity) matches" in stdout
    assert "result: identical" in stdout

    copy = copy_data(small_synthetic, tmp_path / "copy")
    code, stdout, stderr = bench_here(
        capsys, "reproduce", str(record), "--data-dir", str(copy), "--no-progress"
    )
    assert code == 1 and "Traceback" not in stderr
    assert "the record predates content identity" in stderr
    assert "hint: pass --unchecked-data" in stderr and "result:" not in stdout

    code, stdout, stderr = bench_here(
        capsys, "reproduce", str(record), "--data-dir", str(copy), "--unchecked-data",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, stdout + stderr
    assert "NOT CHECKED (--unchecked-data)" in stdout and "result: identical" in stdout


def test_unchecked_data_reports_every_difference(original, tmp_path, capsys):
    """Run anyway on other data: the evaluation runs, and each difference is listed (exit 1)."""
    from conftest import make_ptbxl

    results, records = original
    store = copy_results(results, tmp_path / "store")
    record = moved(records["random"], results, store)
    as_old_record(record, "0" * 64)
    other = make_ptbxl(tmp_path / "other", n=60, rates=(100,))
    code, stdout, stderr = bench_here(
        capsys, "reproduce", str(record), "--data-dir", str(other), "--unchecked-data",
        "--no-progress",
    )  # fmt: skip
    assert code == 1, stdout + stderr
    assert "NOT CHECKED" in stdout and "result: DIFFERENT" in stdout
    assert "counts: recorded" in stdout and "npz test_ecg_ids" in stdout
    assert "predates content identity" in stdout and "run id: recorded" in stdout  # notes


def test_records_from_before_content_identity_still_report_and_compare(original, tmp_path,
                                                                      capsys):  # fmt: skip
    results, records = original
    store = copy_results(results, tmp_path / "store")
    for record in records.values():
        as_old_record(moved(record, results, store), "9" * 64)
    code, stdout, stderr = bench_here(capsys, "report", "--results", str(store), "--no-figures")
    assert code == 0, stdout + stderr
    assert "2 records -> 1 leaderboard(s)" in stdout
    from bench.results import RecordStore

    kinds = {r["dataset"].get("fingerprint_kind") for r in RecordStore(store / "records").records()}
    assert kinds == {None}
    os.environ["BENCH_RESULTS_DIR"] = str(store)  # restored by the autouse fixture
    code, stdout, stderr = bench_here(
        capsys, "compare", "jepa", "random", "--task", "superdiagnostic", "--resamples", "100"
    )
    assert code == 0, stdout + stderr


@pytest.mark.parametrize("where", ["loose copy", "not json", "no such file"])
def test_only_complete_records_in_place_are_accepted(original, small_synthetic, tmp_path, where):
    from bench.data.ptbxl import PTBXL

    results, records = original
    path = tmp_path / "frac1-seed0.json"
    if where == "loose copy":
        shutil.copy(records["random"], path)
        shutil.copy(records["random"].with_suffix(".npz"), path.with_suffix(".npz"))
    elif where == "not json":
        path.write_text("{nope")
    with pytest.raises(
        BenchError, match="not where its key puts it|not a run record|no run record"
    ):
        reproduce(path, PTBXL(small_synthetic))


# --------------------------------------------------------------------------- comparison
def _record(auroc=0.8, best=2, per_label=None):
    return {
        "metrics": {
            "test": {
                "macro_auroc": auroc,
                "macro_ap": 0.5,
                "ci": {"macro_auroc": [0.7, 0.9]},
                "per_label_auroc": per_label or {"A": 0.8, "B": None},
            }
        },
        "selection": {"val_macro_auroc": 0.75, "best_epoch": best, "epochs_run": 4},
        "classes": ["A", "B"],
        "counts": {"test": 3},
    }


def _arrays(shift=0.0):
    return {
        "val_ecg_ids": np.arange(3), "val_y": np.eye(3, 2, dtype=np.uint8),
        "test_ecg_ids": np.arange(3), "test_y": np.eye(3, 2, dtype=np.uint8),
        "test_scores": np.full((3, 2), 0.5, np.float32) + np.float32(shift),
        "val_scores": np.zeros((3, 2), np.float32),
        "test_window_logits": np.zeros((3, 7, 2), np.float32),
    }  # fmt: skip


def _failing(rows: list[Row]) -> list[str]:
    return [r.what for r in rows if not r.ok]


def test_compare_identical_tolerance_and_exact_fields():
    assert _failing(compare(_record(), _arrays(), _record(), _arrays())) == []
    rows = compare(_record(), _arrays(), _record(auroc=0.8 + 1e-9), _arrays(shift=1e-7))
    assert _failing(rows) == ["test macro AUROC", "test scores"]
    assert (
        _failing(compare(_record(), _arrays(), _record(auroc=0.8 + 1e-9), _arrays(1e-7), 1e-6))
        == []
    )
    # the best epoch is never subject to the tolerance
    assert _failing(compare(_record(), _arrays(), _record(best=3), _arrays(), 10.0)) == [
        "best epoch"
    ]
    # an excluded label (None) on one side only, a label missing, NaN against NaN
    rows = compare(_record(per_label={"A": 0.8, "B": None}), _arrays(),
                   _record(per_label={"A": 0.8, "B": 0.6}), _arrays())  # fmt: skip
    assert _failing(rows) == ["test AUROC B"]
    rows = compare(_record(per_label={"A": float("nan")}), _arrays(),
                   _record(per_label={"A": float("nan")}), _arrays())  # fmt: skip
    assert _failing(rows) == []
    other_ids = {**_arrays(), "test_ecg_ids": np.arange(1, 4)}
    assert _failing(compare(_record(), _arrays(), _record(), other_ids)) == ["npz test_ecg_ids"]
    missing = {k: v for k, v in _arrays().items() if k != "test_window_logits"}
    assert _failing(compare(_record(), _arrays(), _record(), missing)) == [
        "test window logits (npz)"
    ]
