"""Paired bootstrap (`bench compare`): known answers, calibration, record pairing, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from report_factory import fake_arrays, fake_record, write_fake

from bench.cli import cli
from bench.errors import BenchError
from bench.evaluate.metrics import paired_bootstrap
from bench.report.compare import compare_subjects
from bench.results import RecordStore


def test_identical_scores_give_zero_difference_and_p_one():
    a = fake_arrays(200, 4, 1.0, seed=1)
    result = paired_bootstrap(a["test_y"], a["test_scores"], a["test_scores"], 300)
    assert result["difference"] == 0.0
    assert result["ci"] == [0.0, 0.0]
    assert result["p_value"] == 1.0


def test_perfect_against_random_scores_is_significant_with_the_exact_point_difference():
    a = fake_arrays(200, 4, 1.0, seed=1)
    y = a["test_y"]
    perfect = y.astype(np.float32) + 0.01 * np.arange(len(y))[:, None] / len(y)  # AUROC 1
    noise = np.random.default_rng(5).normal(size=y.shape).astype(np.float32)
    result = paired_bootstrap(y, perfect, noise, 500)
    from sklearn.metrics import roc_auc_score

    expected = 1.0 - np.mean([roc_auc_score(y[:, j], noise[:, j]) for j in range(4)])
    assert result["auroc_a"] == pytest.approx(1.0)
    assert result["difference"] == pytest.approx(expected)
    assert result["ci"][0] > 0.2
    assert result["p_value"] == pytest.approx(2 / 501)  # no resample favours B: the floor
    assert result["p_a_better"] == 1.0


def test_swapping_subjects_mirrors_the_result():
    a, b = fake_arrays(150, 3, 1.0, 1), fake_arrays(150, 3, 0.8, 2)
    ab = paired_bootstrap(a["test_y"], a["test_scores"], b["test_scores"], 300, seed=4)
    ba = paired_bootstrap(a["test_y"], b["test_scores"], a["test_scores"], 300, seed=4)
    assert ab["difference"] == pytest.approx(-ba["difference"])
    assert ab["ci"][0] == pytest.approx(-ba["ci"][1])
    assert ab["p_value"] == pytest.approx(ba["p_value"])


def test_p_values_are_calibrated_under_no_difference():
    """Two equally good, independent predictors: 'significant' at 5 % about 5 % of the time."""
    significant = 0
    for rep in range(40):
        a = fake_arrays(120, 3, 0.8, seed=100 + rep, ids_seed=rep)
        b = fake_arrays(120, 3, 0.8, seed=900 + rep, ids_seed=rep)
        result = paired_bootstrap(a["test_y"], a["test_scores"], b["test_scores"], 200, seed=rep)
        significant += result["p_value"] < 0.05
    assert significant <= 6  # binomial(40, 0.05): P(X > 6) < 0.01


def test_seeds_are_paired_and_averaged():
    a = [fake_arrays(100, 3, 1.0, s)["test_scores"] for s in (1, 2)]
    b = [fake_arrays(100, 3, 0.5, s)["test_scores"] for s in (3, 4)]
    y = fake_arrays(100, 3, 1.0, 1)["test_y"]
    both = paired_bootstrap(y, np.stack(a), np.stack(b), 200)
    single = [paired_bootstrap(y, a[i], b[i], 200)["difference"] for i in range(2)]
    assert both["n_seeds"] == 2
    assert both["difference"] == pytest.approx(np.mean(single))


def test_shape_mismatch_is_a_clear_error():
    a = fake_arrays(50, 3, 1.0, 1)
    with pytest.raises(BenchError, match="same shape"):
        paired_bootstrap(a["test_y"], a["test_scores"], a["test_scores"][:, :2])


def _store_with(tmp_path, shuffle_b: bool = False) -> RecordStore:
    store = RecordStore(tmp_path / "records")
    for method, signal in (("jepa", 1.5), ("random", 0.5)):
        for seed in (0, 1):
            arrays = fake_arrays(200, 5, signal, seed=10 * seed + len(method), ids_seed=7)
            if shuffle_b and method == "random":  # same records, another order
                order = np.random.default_rng(seed).permutation(200)
                arrays = {k: v[order] for k, v in arrays.items()}
            write_fake(store, fake_record(method, seed=seed), arrays)
    return store


def test_compare_subjects_pairs_records_by_ecg_id(tmp_path):
    plain = compare_subjects(
        _store_with(tmp_path / "a"), "jepa", "random", "superdiagnostic", "linear"
    )
    shuffled = compare_subjects(
        _store_with(tmp_path / "b", shuffle_b=True), "jepa", "random", "superdiagnostic", "linear"
    )
    assert plain["seeds"] == [0, 1]
    assert plain["difference"] > 0.1 and plain["ci"][0] > 0
    assert shuffled["difference"] == pytest.approx(plain["difference"])
    assert shuffled["ci"] == pytest.approx(plain["ci"])


def test_compare_refuses_unknown_subjects_and_other_datasets(tmp_path):
    store = _store_with(tmp_path)
    with pytest.raises(BenchError, match="no records for 'mae'"):
        compare_subjects(store, "jepa", "mae", "superdiagnostic", "linear")
    other = fake_record("mae", dataset="PTB-XL 1.0.3", seed=0)
    other["dataset"]["fingerprint"] = "e" * 64
    write_fake(store, other, fake_arrays(200, 5, 1.0, 0, ids_seed=7))
    with pytest.raises(BenchError, match="different datasets") as info:
        compare_subjects(store, "jepa", "mae", "superdiagnostic", "linear")
    assert "one BENCH_RESULTS_DIR" in info.value.hint


def test_compare_says_when_one_side_predates_content_identity(tmp_path):
    store = _store_with(tmp_path)  # fake records: no fingerprint_kind, as before content identity
    newer = fake_record("mae", dataset="PTB-XL 1.0.3", seed=0)
    newer["dataset"].update(fingerprint="e" * 64, fingerprint_kind="content-sha256")
    write_fake(store, newer, fake_arrays(200, 5, 1.0, 0, ids_seed=7))
    with pytest.raises(BenchError, match="different datasets") as info:
        compare_subjects(store, "jepa", "mae", "superdiagnostic", "linear")
    assert "predate content identity" in info.value.hint


def test_compare_cli_prints_verdict_and_json(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))
    _store_with(tmp_path)
    runner = CliRunner()
    out = runner.invoke(cli, ["compare", "jepa", "random", "--task", "superdiagnostic"])
    assert out.exit_code == 0, out.output
    assert "jepa beats random at the 95 % level" in out.output
    out = runner.invoke(
        cli,
        ["compare", "random", "jepa", "--task", "superdiagnostic", "--json", "--resamples", "200"],
    )
    result = json.loads(out.output)
    assert result["difference"] < 0 and result["n_resamples"] == 200
