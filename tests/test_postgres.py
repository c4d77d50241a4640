"""Optuna studies on a real PostgreSQL server (127.0.0.1, a throw-away cluster): workers share
the trials exactly, a killed worker's trial is failed by the heartbeat and run again, `bench run
--tuned` reads the best trial from the server, and a bad URL, a server that is down or wrong
credentials end in one line with a hint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from conftest import run_cli
from servers import free_port, postgres_server

SMOKE = ["--preset", "smoke", "--no-progress", "--no-mlflow"]
COMMON = ["--method", "random", "--task", "superdiagnostic", "--protocol", "linear"]


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


def _tune(url: str, trials: int, data, results) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "tune", *COMMON, "--trials", str(trials),
         "--storage", url, "--data-dir", str(data), *SMOKE],
        env={**os.environ, "BENCH_RESULTS_DIR": str(results), "BENCH_OPTUNA_HEARTBEAT_S": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _study(url: str):
    from bench.tuning import _driver_url

    storage = _driver_url(url)
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def test_workers_share_a_study_and_a_killed_workers_trial_is_run_again(
    postgres, small_synthetic, tmp_path
):
    url = postgres.url(database="postgres")
    results = tmp_path / "results"
    # A worker killed (SIGKILL) in the middle of its first trial leaves it RUNNING.
    victim = _tune(url, 4, small_synthetic, results)
    deadline = time.time() + 180
    running = []
    while not running and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
        try:
            running = _study(url).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except ValueError:  # no study yet
            continue
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert running, "the first worker must be killed mid-trial"

    # Two workers asked for 4 trials between them: 4 run, none twice, the killed one re-run.
    workers = [_tune(url, 4, small_synthetic, results) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
        assert "trials: 4;" in out and "s3cret" not in out + err  # the password is never shown
    ran = [int(n) for _, err in outputs for n in re.findall(r"^trial (\d+):", err, re.M)]
    assert len(ran) == len(set(ran)) == 4  # each trial ran once, in one of the two workers

    study = _study(url)
    by_state = {s: [t for t in study.trials if t.state == s] for s in optuna.trial.TrialState}
    assert len(by_state[optuna.trial.TrialState.COMPLETE]) == 4
    assert not by_state[optuna.trial.TrialState.RUNNING]
    failed = by_state[optuna.trial.TrialState.FAIL]
    killed = [t for t in failed if not t.user_attrs.get("surplus")]
    assert [t.number for t in killed] == [running[0].number]  # failed by the heartbeat
    assert sorted(t.number for t in by_state[optuna.trial.TrialState.COMPLETE]) == sorted(ran)

    # bench run --tuned reads the best trial from the server
    run = subprocess.run(
        [sys.executable, "-m", "bench", "run", *COMMON, "--tuned", "--storage", url,
         "--data-dir", str(small_synthetic), *SMOKE],
        env={**os.environ, "BENCH_RESULTS_DIR": str(results)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    import json

    (path,) = (results / "records").rglob("*.json")
    tuned = json.loads(path.read_text())["tuned"]
    assert tuned["trial"] == study.best_trial.number
    assert tuned["params"] == pytest.approx(study.best_trial.params)


def _tune_error(capsys, url: str, data) -> str:
    code, out = run_cli(capsys, "tune", *COMMON, "--trials", "1", "--storage", url,
                        "--data-dir", str(data), *SMOKE)  # fmt: skip
    assert code != 0 and "Traceback" not in out, out
    return out


def test_wrong_credentials_are_one_line_with_a_hint(postgres, small_synthetic, capsys):
    out = _tune_error(capsys, postgres.url(password="wrong"), small_synthetic)
    assert "cannot open the Optuna storage postgresql://bench:***@127.0.0.1" in out
    assert "password" in out and "check the user name and password" in out
    assert "wrong" not in out.replace("wrong-", "")  # the password is not echoed


def test_a_missing_database_is_named(postgres, small_synthetic, capsys):
    out = _tune_error(capsys, postgres.url(database="nope"), small_synthetic)
    assert 'database "nope" does not exist' in out and "createdb" in out


def test_a_server_that_is_down_is_one_line_with_a_hint(small_synthetic, capsys):
    url = f"postgresql://bench:pw@127.0.0.1:{free_port()}/postgres"  # nothing listens there
    out = _tune_error(capsys, url, small_synthetic)
    assert "cannot open the Optuna storage" in out and "server is running" in out


@pytest.mark.parametrize("url", ["not a url", "postgresql://bench@127.0.0.1:notaport/db"])
def test_a_bad_url_is_named(small_synthetic, capsys, url):
    out = _tune_error(capsys, url, small_synthetic)
    assert "not a database URL" in out or "cannot open the Optuna storage" in out


def test_a_worker_waits_for_the_last_trial_of_a_dead_worker_then_runs_it(tmp_path, monkeypatch):
    """In process, on SQLite: the study's only trial is RUNNING in a worker that died after its
    first heartbeat. The next worker says it waits, the heartbeat fails the trial after its
    grace, and the worker runs the trial itself: exactly one complete trial."""
    from bench import tuning

    monkeypatch.setenv("BENCH_OPTUNA_HEARTBEAT_S", "1")  # grace: 3 s
    storage = tuning._storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    with pytest.warns(UserWarning, match="Heartbeat"):  # optuna: heartbeats expect optimize()
        dead = study.ask()
    storage.record_heartbeat(dead._trial_id)  # its last sign of life
    said: list[str] = []
    ran: list[int] = []

    def objective(trial) -> float:
        ran.append(trial.number)
        return 0.5

    start = time.time()
    tuning._run_missing_trials(study, objective, 1, poll_s=0.2, echo=said.append)
    assert len(said) == 1 and said[0].startswith("waiting: 1 of the study's last trials")
    assert time.time() - start >= 2.5  # it waited for the grace period
    states = {t.number: t.state for t in study.trials}
    assert states[dead.number] == optuna.trial.TrialState.FAIL and len(ran) == 1
    assert states[ran[0]] == optuna.trial.TrialState.COMPLETE
