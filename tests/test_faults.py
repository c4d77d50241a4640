"""Faults, as a user meets them (real ``bench`` subprocesses): a SIGKILLed ``bench data prepare``,
a read-only or full results directory, and two processes sharing one results directory, MLflow
store and Optuna study.

Killed ``bench run`` / ``bench pretrain`` / ``bench tune`` are covered in test_run_cli.py and
test_train.py; this file fills the remaining gaps.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SMOKE = ["--preset", "smoke", "--no-progress"]
BOARD = "leaderboard/synthetic-n-240-seed-3-v1"


def bench(*args: str, results: Path, check: bool = True, prefix=(), preexec_fn=None,
          timeout: float = 300) -> subprocess.CompletedProcess:  # fmt: skip
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "bench", *args],
        capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn,
        env={**os.environ, "BENCH_RESULTS_DIR": str(results)},
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"bench {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        )
    return result


def plan(data: Path, tasks: str = "superdiagnostic", *extra: str) -> list[str]:
    return ["run", "--method", "jepa", "--task", tasks, "--protocol", "linear",
            "--data-dir", str(data), *SMOKE, *extra]  # fmt: skip


def digests(root: Path, *parts: str) -> dict[str, str]:
    """sha256 of every file under ``root/<part>`` (lock files aside)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for part in parts
        for p in sorted((root / part).rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name or p.name.startswith(".old-")]


def records(root: Path) -> list[Path]:
    return sorted((root / "records").rglob("*.json"))


@pytest.fixture(scope="module")
def finished_run(small_synthetic, tmp_path_factory) -> Path:
    """One complete ``bench run`` (JEPA pre-trained, linear probe on superdiagnostic, MLflow on)."""
    results = tmp_path_factory.mktemp("finished") / "results"
    bench(*plan(small_synthetic), results=results)
    return results


def copy_of(finished: Path, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    return results


# --------------------------------------------------------------------------- killed prepare
def test_a_killed_prepare_is_rebuilt_identical_to_an_uninterrupted_one(small_synthetic, tmp_path):
    """SIGKILL ``bench data prepare`` while it fills its temporary cache directory: the leftover
    never counts as a cache, and the rerun builds exactly the cache of an uninterrupted prepare."""
    killed = tmp_path / "killed"
    args = [
        "data",
        "prepare",
        "--data-dir",
        str(small_synthetic),
        "--workers",
        "1",
        "--no-progress",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", *args], start_new_session=True,
        env={**os.environ, "BENCH_RESULTS_DIR": str(killed)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if any((killed / "cache").glob("*/.tmp-100hz-*/signals.npy")):
            break
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "prepare finished before it could be killed"
    (slug,) = list((killed / "cache").iterdir())
    assert list(slug.glob(".tmp-100hz-*")), "the kill must leave the temporary directory"
    assert not (slug / "100hz" / "manifest.json").exists()

    info = bench("data", "info", "--data-dir", str(small_synthetic), results=killed).stdout
    assert "cache 100 Hz: missing" in info
    again = bench(*args, results=killed).stdout
    assert "100 Hz cache built: 240 records" in again
    assert not temporaries(killed)

    clean = tmp_path / "clean"
    bench(*args, results=clean)
    a, b = slug / "100hz", clean / "cache" / slug.name / "100hz"
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["fingerprint"] == mb["fingerprint"] and ma["shape"] == mb["shape"] == [240, 12, 1000]
    for name in ("signals.npy", "ecg_ids.npy"):
        np.testing.assert_array_equal(np.load(a / name), np.load(b / name))


# --------------------------------------------------------------------------- read-only, disk full
def _read_only(results: Path) -> tuple[list[str], str]:
    """A command prefix under which ``results`` is read-only, and the error it gives.

    Root ignores permission bits, so as root the directory is bind-mounted read-only in a private
    mount namespace (``unshare -m``): the kernel answers EROFS, as on a read-only file system.
    Anyone else gets ``chmod a-w`` on every directory: EACCES.
    """
    if os.geteuid() != 0:
        for d in [results, *(p for p in results.rglob("*") if p.is_dir())]:
            d.chmod(0o555)
        return [], "Permission denied (EACCES)"
    prefix = ["unshare", "-m", "sh", "-c",
              'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"', str(results)]  # fmt: skip
    if shutil.which("unshare") is None:
        pytest.skip("cannot make a directory read-only for root here: no unshare")
    probe = subprocess.run([*prefix, "sh", "-c", f"touch {results}/.probe"], capture_output=True)
    if probe.returncode == 0 or b"Read-only file system" not in probe.stderr:
        pytest.skip(f"read-only bind mount unavailable: {probe.stderr.decode()[-200:]}")
    return prefix, "Read-only file system (EROFS)"


@pytest.mark.parametrize("mlflow", [False, True], ids=["records", "mlflow"])
def test_a_read_only_results_directory_is_a_clear_error(finished_run, small_synthetic, tmp_path,
                                                        mlflow):  # fmt: skip
    results = copy_of(finished_run, tmp_path)
    before = digests(results, "records", "leaderboard", "pretrain", "cache")
    prefix, reason = _read_only(results)
    extra = () if mlflow else ("--no-mlflow",)
    out = bench(*plan(small_synthetic, "superdiagnostic,rhythm", *extra), results=results,
                prefix=prefix, check=False)  # fmt: skip
    if os.geteuid() != 0:
        for d in [results, *(p for p in results.rglob("*") if p.is_dir())]:
            d.chmod(0o755)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"error: cannot write {results}" in out.stderr and reason in out.stderr
    assert "BENCH_RESULTS_DIR" in out.stderr  # the hint names the way out
    assert digests(results, "records", "leaderboard", "pretrain", "cache") == before


def _file_size_limit(limit: int):
    """``preexec_fn``: files may grow to ``limit`` bytes, then writes fail with EFBIG (what a full
    disk looks like to the writer, minus the errno: ENOSPC and EFBIG take the same paths)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    "limit, fails_at",
    [(4096, "the record"), (40_000, "the leaderboard html")],
    ids=["at-record", "at-leaderboard"],
)
def test_a_full_disk_is_a_clear_error_and_keeps_earlier_results(finished_run, small_synthetic,
                                                                tmp_path, limit, fails_at):  # fmt: skip
    results = copy_of(finished_run, tmp_path)
    old_records = digests(results, "records", "pretrain")
    old_html = (results / BOARD / "leaderboard.html").read_bytes()
    args = plan(small_synthetic, "superdiagnostic,rhythm", "--no-mlflow")
    out = bench(*args, results=results, preexec_fn=_file_size_limit(limit), check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "error: cannot write" in out.stderr and "File too large (EFBIG)" in out.stderr
    assert "free disk space" in out.stderr
    now = digests(results, "records", "pretrain")
    assert {k: now[k] for k in old_records} == old_records  # nothing earlier touched
    assert not temporaries(results)  # no half-written file left behind
    assert (results / BOARD / "leaderboard.html").read_bytes() == old_html
    if fails_at == "the record":
        assert len(records(results)) == 1
        return
    # the new record was complete before the report failed: it is kept and counts
    assert len(records(results)) == 2

    again = bench(*args, results=results)  # space freed: the same command finishes the job
    assert "already done" in again.stderr
    assert len(records(results)) == 2 and not temporaries(results)
    assert (results / BOARD / "leaderboard.html").read_bytes() != old_html


def test_a_full_disk_while_the_mlflow_store_is_created_leaves_no_broken_store(
    small_synthetic, tmp_path
):
    """MLflow builds a new SQLite store in ~40 migration steps. A full disk between two of them
    printed a SQLAlchemy traceback and left a store every later run refused ("table ...
    already exists"); now: one error line, no store, and the same command works once there is
    space. (--workers 0: RLIMIT_FSIZE also caps the loader's shared-memory files.)"""
    results = tmp_path / "results"
    bench("data", "prepare", "--data-dir", str(small_synthetic), "--no-progress", results=results)
    args = ["pretrain", "--method", "jepa", "--data-dir", str(small_synthetic), *SMOKE,
            "--workers", "0"]  # fmt: skip
    out = bench(*args, results=results, preexec_fn=_file_size_limit(200_000), check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "error: cannot write a SQLite store (MLflow or Optuna): disk I/O error" in out.stderr
    assert "free disk space" in out.stderr
    assert not (results / "mlflow.db").exists() and not temporaries(results)
    bench(*args, results=results)  # space freed: the same command creates the store and trains
    assert (results / "mlflow.db").stat().st_size > 200_000
    assert list((results / "pretrain").glob("*/final.pt"))


def test_a_new_sqlite_store_is_created_whole_or_not_at_all(tmp_path):
    from bench.atomic import create_sqlite_store

    path = tmp_path / "store.db"
    dead = tmp_path / ".store.db.tmp-999999999"  # a killed creator's leftover
    dead.write_bytes(b"half")

    def fails(url: str) -> None:
        sqlite3.connect(url[len("sqlite:///") :]).execute("create table a (x)").connection.close()
        raise OSError(27, "File too large")

    with pytest.raises(OSError):
        create_sqlite_store(path, fails)
    assert sorted(tmp_path.iterdir()) == []  # neither the half-built store nor the leftover

    def builds(url: str) -> None:
        with sqlite3.connect(url[len("sqlite:///") :]) as db:
            db.execute("create table done (x)")

    create_sqlite_store(path, builds)
    assert sqlite3.connect(path).execute("select name from sqlite_master").fetchall() == [("done",)]
    create_sqlite_store(path, fails)  # an existing store is left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


# --------------------------------------------------------------------------- concurrency
def _start(*args: str, results: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args], text=True,
        env={**os.environ, "BENCH_RESULTS_DIR": str(results)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def test_two_runs_share_one_results_directory(finished_run, small_synthetic, tmp_path):
    """Two ``bench run`` at once on one results directory, MLflow store and pre-training run:
    both succeed, every record exists once and loads, the store holds both parent runs, and
    the leaderboard equals a single process's."""
    results = tmp_path / "results"
    args = plan(small_synthetic)
    both = [_start(*args, results=results) for _ in range(2)]
    outcomes = [_finish(p) for p in both]
    for code, _, err in outcomes:
        assert code == 0 and "Traceback" not in err, err
    # the same work, once: one pre-training run (the other waited and reused it), one record
    assert sum("pre-trained 3 steps" in err for _, _, err in outcomes) == 1
    assert sum("reusing the finished pre-training run" in err for _, _, err in outcomes) == 1
    from bench.results import RecordStore

    store = RecordStore(results / "records")
    assert len(store.records()) == 1 and store.last_skipped == []
    assert len(records(results)) == 1 and not temporaries(results)
    assert len(list((results / "pretrain").glob("jepa-*/final.pt"))) == 1

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "ecg-ssl-bench"]
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "bench-run"]
    assert len(parents) == 2 and {r.info.status for r in parents} == {"FINISHED"}

    board = f"{BOARD}/leaderboard.csv"
    assert (results / board).read_text() == (finished_run / board).read_text()


def test_two_tuning_processes_share_one_study(small_synthetic, tmp_path):
    """Two ``bench tune --trials 3`` at once on one study (a new SQLite store): between them
    exactly 3 trials complete, none lost, broken or left running."""
    results = tmp_path / "results"
    common = ["tune", "--method", "random", "--task", "superdiagnostic", "--protocol", "linear",
              "--data-dir", str(small_synthetic), "--no-mlflow", *SMOKE]  # fmt: skip
    both = [_start(*common, "--trials", "3", results=results) for _ in range(2)]
    for code, out, err in (_finish(p) for p in both):
        assert code == 0 and "Traceback" not in err, err
        assert "trials: " in out

    import optuna

    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{results / 'optuna.db'}")
    study = optuna.load_study(study_name=summary.study_name,
                              storage=f"sqlite:///{results / 'optuna.db'}")  # fmt: skip
    # Together they run exactly 3 trials: a trial started at the same moment as the last one is
    # marked failed as surplus without running. Nothing is lost, broken or left running.
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    others = [t for t in study.trials if t.state != optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    assert all(t.state == optuna.trial.TrialState.FAIL and t.user_attrs["surplus"] for t in others)
