"""``bench run --tracking-uri http://...`` against a real ``mlflow server`` on 127.0.0.1 (SQLite
backend, local artifact root): everything is on the server; a server that is unreachable or
dies mid-run costs tracking only, never records or the leaderboard, and is reported once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from servers import free_port, mlflow_server

SMOKE = ["--preset", "smoke", "--no-progress"]
BOARD = "leaderboard/synthetic-n-240-seed-3-v1/leaderboard.csv"


def _run(args: list[str], results: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "run", *args],
        env={**os.environ, "BENCH_RESULTS_DIR": str(results)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _records(results: Path) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted((results / "records").rglob("*.json"))]


def test_a_run_is_tracked_on_the_server(small_synthetic, tmp_path):
    import mlflow

    with mlflow_server(tmp_path / "server") as server:
        url = server.url
        args = ["--method", "simclr,random", "--task", "superdiagnostic", "--protocol", "linear",
                "--data-dir", str(small_synthetic), "--tracking-uri", url, *SMOKE]  # fmt: skip
        job = _run(args, tmp_path / "results")
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err
        assert "not (completely) tracked" not in err
        assert not (tmp_path / "results" / "mlflow.db").exists()  # nothing went to a local store

        client = mlflow.MlflowClient(tracking_uri=url)
        (experiment,) = [e for e in client.search_experiments() if e.name == "ecg-ssl-bench"]
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("kind") == "bench-run"]
        assert parent.info.status == "FINISHED" and "plan.methods" in parent.data.params
        assert parent.data.metrics["records"] == 2.0
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        evaluations = [r for r in children if r.data.tags.get("kind") == "evaluation"]
        assert len(evaluations) == 2 and all(r.info.status == "FINISHED" for r in evaluations)
        for run in evaluations:
            assert "test_macro_auroc" in run.data.metrics
            history = client.get_metric_history(run.info.run_id, "val_macro_auroc")
            assert len(history) >= 1  # the validation curve, epoch by epoch
            names = [a.path for a in client.list_artifacts(run.info.run_id, "record")]
            assert any(n.endswith(".json") for n in names) and any(
                n.endswith(".npz") for n in names
            )
        (pretraining,) = [r for r in children if r.data.tags.get("kind") == "pretrain"]
        assert pretraining.data.tags["method"] == "simclr" and "loss" in pretraining.data.metrics
        boards = client.list_artifacts(parent.info.run_id, "leaderboard")
        assert boards  # the leaderboard files are artifacts of the parent run
        # and the artifacts really are in the server's artifact root
        assert list((tmp_path / "server" / "artifacts").rglob("*.npz"))


def test_an_unreachable_server_loses_tracking_only(small_synthetic, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["--method", "random", "--task", "superdiagnostic,rhythm", "--protocol", "linear",
            "--data-dir", str(small_synthetic), "--tracking-uri", url, *SMOKE]  # fmt: skip
    started = time.time()
    job = _run(args, tmp_path / "results")
    _, err = job.communicate(timeout=600)
    assert job.returncode == 0, err
    assert err.count("warning: the MLflow tracking server was lost") == 1
    assert "3 runs were not (completely) tracked" in err  # the parent and two evaluations
    assert len(_records(tmp_path / "results")) == 2
    assert (tmp_path / "results" / BOARD).is_file()
    assert time.time() - started < 300  # no minutes of retries per call


def test_a_server_that_dies_mid_run_loses_nothing_but_tracking(small_synthetic, tmp_path):
    """The server is killed while the benchmark runs: the benchmark finishes, writes every record
    and the leaderboard (equal to a run without tracking), and names the runs not tracked."""
    args = ["--method", "random", "--task", "superdiagnostic,rhythm,form",
            "--protocol", "linear,attentive", "--data-dir", str(small_synthetic), *SMOKE]  # fmt: skip
    import mlflow

    with mlflow_server(tmp_path / "server") as server:
        url = server.url
        job = _run([*args, "--tracking-uri", url], tmp_path / "tracked")
        client = mlflow.MlflowClient(tracking_uri=url)
        deadline = time.time() + 300
        while time.time() < deadline and job.poll() is None:
            finished = [r for r in client.search_runs(
                [e.experiment_id for e in client.search_experiments()],
                filter_string="tags.kind = 'evaluation' and attributes.status = 'FINISHED'",
            )]  # fmt: skip
            if finished:
                break
            time.sleep(0.2)
        assert job.poll() is None, "the server must die before the run ends"
        server.stop()  # killed with the benchmark half-way
    _, err = job.communicate(timeout=600)
    assert job.returncode == 0, err
    assert err.count("warning: the MLflow tracking server was lost") == 1
    assert "bench run random" in err  # the parent run could not be completed there
    untracked = _records(tmp_path / "tracked")
    assert len(untracked) == 6

    plain = _run([*args, "--no-mlflow"], tmp_path / "plain")
    _, err = plain.communicate(timeout=600)
    assert plain.returncode == 0, err
    assert (tmp_path / "tracked" / BOARD).read_text() == (tmp_path / "plain" / BOARD).read_text()
