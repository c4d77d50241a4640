"""``bench run`` / ``bench tune`` / ``bench ui`` end to end, as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import run_cli

SMOKE = ["--preset", "smoke", "--no-progress"]


def bench(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300):
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"bench {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        )
    return result


def record_files(results: Path) -> list[Path]:
    return sorted((results / "records").rglob("*.json"))


def test_smoke_run_end_to_end_with_mlflow(small_synthetic, tmp_path):
    """The acceptance smoke run: every benchmark task x both protocols, records, leaderboard,
    MLflow parent run with nested runs, summary table; under two minutes."""
    results = tmp_path / "results"
    started = time.perf_counter()
    out = bench(
        "run", "--method", "jepa", "--task", "all", "--data-dir", str(small_synthetic), *SMOKE,
        env={"BENCH_RESULTS_DIR": str(results)},
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert elapsed < 120, f"smoke bench run took {elapsed:.0f} s"
    assert "SYNTHETIC" in out.stdout
    for task in ("superdiagnostic", "form", "rhythm", "all_statements"):
        assert task in out.stdout
    files = record_files(results)
    assert len(files) == 8  # 4 tasks x (linear, finetune) x 1 seed
    records = [json.loads(f.read_text()) for f in files]
    assert {(r["task"], r["protocol"]) for r in records} == {
        (t, p)
        for t in ("superdiagnostic", "form", "rhythm", "all_statements")
        for p in ("linear", "finetune")
    }
    assert all(r["dataset"]["synthetic"] and r["pretrain"]["steps"] == 3 for r in records)
    # pre-training health: 3 steps are too short to judge, said in every record and once on
    # the terminal; the features at the end and at init come from the same training crops
    health = records[0]["health"]
    assert all(r["health"] == health for r in records)
    assert health["loss"]["status"] == "too short" and health["loss"]["steps"] == 3
    assert health["features"]["n_samples"] == health["features_init"]["n_samples"] > 0
    assert out.stderr.count("jepa pre-training health: loss too short") == 1
    # --precision auto: resolved once, printed once, stored in every record and MLflow run
    from bench.precision import resolve_precision

    chosen = resolve_precision("auto", "cpu")
    assert out.stderr.count("precision: ") == 1
    assert f"precision: {chosen.name} on cpu ({chosen.reason})" in out.stderr
    assert {(r["precision"], r["precision_reason"]) for r in records} == {
        (chosen.name, chosen.reason)
    }
    boards = list((results / "leaderboard").glob("*/leaderboard.csv"))
    assert len(boards) == 1 and boards[0].parent.name.startswith("synthetic")
    assert len(boards[0].read_text().strip().splitlines()) == 1 + 8
    board = boards[0].parent
    assert {"leaderboard.md", "leaderboard.html"} <= {p.name for p in board.iterdir()}
    figures = {p.stem for p in (board / "figures").glob("*.png")}
    assert {"heatmap-linear", "heatmap-finetune", "pretrain-loss", "auroc-vs-compute"} <= figures

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ecg-ssl-bench")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "bench-run"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    kinds = sorted(r.data.tags.get("kind") for r in children)
    assert kinds.count("evaluation") == 8 and kinds.count("pretrain") == 1
    evaluation = next(r for r in children if r.data.tags.get("kind") == "evaluation")
    assert "test_macro_auroc" in evaluation.data.metrics
    assert evaluation.data.params["precision"] == chosen.name
    assert parents[0].data.params["precision_reason"] == chosen.reason
    history = client.get_metric_history(evaluation.info.run_id, "val_macro_auroc")
    assert len(history) >= 1  # a curve, one point per epoch
    artifacts = [a.path for a in client.list_artifacts(evaluation.info.run_id, "record")]
    assert any(p.endswith(".json") for p in artifacts) and any(
        p.endswith(".npz") for p in artifacts
    )


def test_killed_run_continues_without_redoing_or_duplicating(small_synthetic, tmp_path):
    """SIGKILL a run after its first records, start it again: finished records stay untouched,
    none is duplicated, and the leaderboard equals an uninterrupted run's."""
    args = ["run", "--method", "jepa,random", "--task", "superdiagnostic,rhythm",
            "--protocol", "linear,attentive", "--data-dir", str(small_synthetic), "--no-mlflow", *SMOKE]  # fmt: skip
    killed = tmp_path / "killed"
    env = {**os.environ, "BENCH_RESULTS_DIR": str(killed)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", *args], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while len(record_files(killed)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in record_files(killed)}
    assert 2 <= len(first) < 8, "the run must be killed half-way"

    out = bench(*args, env={"BENCH_RESULTS_DIR": str(killed)})
    assert f"{len(first)} already done" in out.stderr
    after = record_files(killed)
    assert len(after) == 8  # 2 tasks x 2 protocols x (jepa, random)
    for f, (mtime, content) in first.items():
        assert f.stat().st_mtime_ns == mtime and f.read_bytes() == content
    assert not list(killed.rglob("*.tmp-*"))

    clean = tmp_path / "clean"
    bench(*args, env={"BENCH_RESULTS_DIR": str(clean)})
    board = "leaderboard/synthetic-n-240-seed-3-v1/leaderboard.csv"
    assert (killed / board).read_text() == (clean / board).read_text()


def test_tune_resumes_and_run_uses_the_best_parameters(small_synthetic, tmp_path, capsys):
    env = {"BENCH_RESULTS_DIR": str(tmp_path / "results")}
    common = ["--method", "random", "--task", "superdiagnostic", "--protocol", "linear",
              "--data-dir", str(small_synthetic), "--no-mlflow", *SMOKE]  # fmt: skip
    code, out = run_cli(capsys, "run", *common, "--tuned")  # the error path, in process
    assert code == 1 and "bench tune" in out

    first = bench("tune", *common, "--trials", "2", env=env)
    assert "trials: 2" in first.stdout
    second = bench("tune", *common, "--trials", "3", env=env)  # resumes: one more trial only
    assert "trials: 3" in second.stdout
    assert second.stderr.count("trial ") == 1

    bench("run", *common, "--tuned", env=env)
    records = [json.loads(f.read_text()) for f in record_files(tmp_path / "results")]
    assert len(records) == 1 and records[0]["tuned"]["trial"] in (0, 1, 2)
    assert records[0]["config"]["eval"]["linear"]["lr"] == pytest.approx(
        records[0]["tuned"]["params"]["linear.lr"]
    )


def test_bad_names_and_settings_are_clear_errors(small_synthetic, tmp_path, capsys):
    """In process (the console entry point's code, without a subprocess's imports per case)."""
    cases = [
        (["run", "--method", "nope"], "unknown method"),
        (["run", "--method", "jepa", "--task", "nope"], "unknown task"),
        (["run", "--method", "jepa", "--protocol", "nope"], "unknown protocol"),
        (["run", "--method", "jepa", "--eval-set", "linear.nope=1"], "unknown config key"),
        (["run", "--method", "jepa", "--eval-set", "finetune.epochs=0"], "at least 1"),
        (["run", "--method", "jepa", "--label-fractions", "2"], "not in (0, 1]"),
        (["pretrain", "--method", "random"], "reference row"),
        (["tune", "--method", "jepa", "--task", "form", "--protocol", "nope"], "unknown protocol"),
    ]
    for args, message in cases:
        code, out = run_cli(capsys, *args, "--data-dir", str(small_synthetic))
        assert code == 1, (args, out)
        assert message in out and "Traceback" not in out, (args, out)
    assert not (tmp_path / "results" / "records").exists()  # the autouse BENCH_RESULTS_DIR


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_store_on_localhost_only(tmp_path):
    env = {"BENCH_RESULTS_DIR": str(tmp_path / "results")}
    line = bench("ui", "--print-command", env=env).stdout
    assert "--host 127.0.0.1" in line and str(tmp_path / "results" / "mlflow.db") in line
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench", "ui", "--port", str(port)],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline, status = time.time() + 90, None
        while time.time() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    status = response.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_tune_pretraining_hyperparameters_with_the_downstream_objective(small_synthetic, tmp_path):
    """Each trial pre-trains with the method's search space, then scores the linear probe on
    the validation fold; the trials' pre-training runs are kept and distinct."""
    results = tmp_path / "results"
    out = bench(
        "tune", "--method", "jepa", "--task", "superdiagnostic", "--pretrain", "--trials", "2",
        "--data-dir", str(small_synthetic), "--no-mlflow", *SMOKE,
        env={"BENCH_RESULTS_DIR": str(results)},
    )  # fmt: skip
    assert "trials: 2" in out.stdout
    assert "--set optim.lr=" in out.stdout and "--set keep_ratio=" in out.stdout
    assert len(list((results / "pretrain").glob("jepa-tiny-*/final.pt"))) == 2
    assert not (results / "records").exists()  # tuning never writes test results


@pytest.mark.ptbxl
def test_smoke_run_on_the_real_subset(real_ptbxl, tmp_path):
    """The whole path on real PTB-XL records: cache, pre-training, linear probe, record."""
    results = tmp_path / "results"
    out = bench(
        "run", "--method", "jepa", "--task", "superdiagnostic", "--protocol", "linear",
        "--data-dir", str(real_ptbxl), "--no-mlflow", *SMOKE,
        env={"BENCH_RESULTS_DIR": str(results)},
    )  # fmt: skip
    assert "SYNTHETIC" not in out.stdout and "PTB-XL" in out.stdout
    (record,) = [json.loads(f.read_text()) for f in record_files(results)]
    assert record["dataset"]["synthetic"] is False
    assert record["classes"] == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert record["counts"]["test"] == 252  # the subset's superdiagnostic fold 10
    assert 0.5 < record["test_macro_auroc"] <= 1.0
