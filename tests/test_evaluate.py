"""Downstream evaluation: windows, the fold-10 guarantee, protocols, records, references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.evaluate.config import EvalConfig, eval_hash, resolve_eval_config
from bench.evaluate.runner import Evaluator, FoldLeak
from bench.evaluate.signals import crop, window_length, window_offsets
from bench.evaluate.subjects import reference_subject, subject_config
from bench.results import RecordStore
from bench.task import TASKS


# --------------------------------------------------------------------------- windows
def test_window_length_rounds_down_to_whole_patches():
    assert window_length(2.5, 100, 5) == 250  # JEPA: 50 patches of 50 ms
    assert window_length(2.5, 100, 20) == 240  # ECG-JEPA 0.2 s patches: 12 patches = 2.4 s
    assert window_length(2.5, 250, 75) == 600  # MAE 0.3 s patches: 8 patches = 2.4 s
    assert window_length(2.5, 500, 25) == 1250
    with pytest.raises(BenchError):
        window_length(0.01, 100, 5)


def test_window_offsets_cover_the_record_like_the_benchmark():
    offsets = window_offsets(1000, 250, 125)
    assert offsets.tolist() == [0, 125, 250, 375, 500, 625, 750]  # 7 windows over 10 s
    assert window_offsets(1000, 240, 125)[-1] + 240 <= 1000
    with pytest.raises(BenchError):
        window_offsets(100, 250, 125)


def test_crop_takes_each_rows_own_window():
    x = np.arange(2 * 3 * 10, dtype=np.float32).reshape(2, 3, 10)
    out = crop(x, np.array([0, 4]), 5)
    assert out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out[0], x[0, :, 0:5])
    np.testing.assert_array_equal(out[1], x[1, :, 4:9])


def test_eval_hash_depends_on_the_protocols_own_settings_only():
    base = EvalConfig()
    other = resolve_eval_config(None, ["finetune.epochs=3"])
    assert eval_hash(base, "linear") == eval_hash(other, "linear")
    assert eval_hash(base, "finetune") != eval_hash(other, "finetune")
    # fine-tuning starts from the linear head, so it depends on the linear settings too
    linear_changed = resolve_eval_config(None, ["linear.lr=0.01"])
    assert eval_hash(base, "finetune") != eval_hash(linear_changed, "finetune")
    with pytest.raises(BenchError, match="unknown config key"):
        resolve_eval_config(None, ["finetune.nope=1"])


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def synthetic(small_synthetic, tmp_path_factory):
    """The small synthetic PTB-XL with its 100 Hz cache."""
    from bench.data.cache import prepare_cache
    from bench.data.ptbxl import PTBXL

    dataset = PTBXL(small_synthetic)
    cache_root = tmp_path_factory.mktemp("cache")
    cache = prepare_cache(dataset, 100, workers=1, progress=False, cache_root=cache_root)
    return dataset, cache


def _evaluator(synthetic, name="random", preset="smoke", overrides=(), eval_overrides=()):
    dataset, cache = synthetic
    cfg = subject_config(name, preset, overrides)
    subject = reference_subject(name, cfg, dataset, cache)
    eval_cfg = resolve_eval_config(preset, eval_overrides)
    return Evaluator(subject, dataset, cache, eval_cfg, torch.device("cpu"), "fp32", RecordStore())


# --------------------------------------------------------------------------- fold 10
def _poison_test_fold(dataset, cache) -> None:
    """Overwrite every fold-10 record in the cache with NaN: any read of it fails loudly."""
    meta = dataset.metadata
    test_ids = meta.index[meta["strat_fold"] == 10].to_numpy()
    signals = np.load(cache.path / "signals.npy", mmap_mode="r+")
    signals[cache.rows(test_ids)] = np.nan
    signals.flush()


def test_no_fit_early_stopping_selection_or_tuning_can_read_fold_10(synthetic, tmp_path):
    """Fit every protocol (and run a tuning study) on a copy of the data whose fold 10 is NaN:
    the fits and their whole selection history equal those on the clean data, and only the test
    evaluation notices the poison."""
    import shutil

    from bench.data.cache import SignalCache
    from bench.tuning import tune_protocol

    dataset, cache = synthetic
    td = TASKS.get("superdiagnostic").build(dataset)
    clean = _evaluator(synthetic, "random", eval_overrides=["finetune.epochs=2"])
    poisoned_cache = SignalCache(tmp_path / "cache", cache.manifest)
    shutil.copytree(cache.path, poisoned_cache.path)
    _poison_test_fold(dataset, poisoned_cache)
    poisoned = Evaluator(
        clean.subject, dataset, poisoned_cache, clean.eval_cfg, torch.device("cpu"), "fp32"
    )
    assert np.isnan(poisoned_cache.signals[poisoned_cache.rows(td.split("test")[0])]).all()

    supervised = reference_subject("supervised", clean.subject.config, dataset, cache)
    for protocol in ("linear", "attentive", "finetune"):
        a_eval = (
            clean
            if protocol != "finetune"
            else Evaluator(supervised, dataset, cache, clean.eval_cfg, torch.device("cpu"), "fp32")
        )
        b_eval = (
            poisoned
            if protocol != "finetune"
            else Evaluator(
                supervised, dataset, poisoned_cache, clean.eval_cfg, torch.device("cpu"), "fp32"
            )
        )
        a, b = a_eval.fit(td, protocol, seed=0), b_eval.fit(td, protocol, seed=0)
        assert a.history == b.history and a.best_epoch == b.best_epoch, protocol
        for (name, va), vb in zip(
            a.model.state_dict().items(), b.model.state_dict().values(), strict=True
        ):
            assert torch.equal(va, vb), (protocol, name)
        # the guard refuses fold 10 while fitting, and fold 10 really is poisoned afterwards
        with b_eval.guard.fit_phase(), pytest.raises(FoldLeak):
            b_eval.source(td.split("test")[0], "test")
        with pytest.raises(BenchError, match="non-finite"):
            b_eval.window_logits(b, protocol, td.split("test")[0], "test")

    study = tune_protocol(poisoned, td, "linear", 2, poisoned.eval_cfg, seed=0, echo=lambda m: None)
    clean_study = tune_protocol(clean, td, "linear", 2, clean.eval_cfg, seed=0,
                                storage=f"sqlite:///{tmp_path / 'clean.db'}", echo=lambda m: None)  # fmt: skip
    assert [t.value for t in study.trials] == [t.value for t in clean_study.trials]


# --------------------------------------------------------------------------- records
def test_evaluate_writes_a_complete_record_and_skips_it_the_second_time(synthetic):
    ev = _evaluator(synthetic, "random")
    td = TASKS.get("superdiagnostic").build(ev.dataset)
    record, fresh = ev.evaluate(td, "linear", seed=0)
    assert fresh
    assert record["method"] == "random" and record["protocol"] == "linear"
    assert (
        record["dataset"]["synthetic"] is True
        and record["dataset"]["fingerprint"] == ev.cache.fingerprint
    )
    test = record["metrics"]["test"]
    assert 0.0 <= test["macro_auroc"] <= 1.0
    lo, hi = record["test_macro_auroc_ci"]
    assert lo <= hi and test["ci"]["n_resamples"] == ev.eval_cfg.bootstrap
    assert record["classes"] == list(td.classes)
    assert record["counts"]["test"] == len(td.split("test")[0])
    assert record["window"]["samples"] == 250 and record["window"]["n_windows"] == 7
    assert (
        record["environment"]["git"]["commit"] is None
        or len(record["environment"]["git"]["commit"]) == 40
    )
    assert record["selection"]["history"][record["selection"]["best_epoch"]][
        "val_macro_auroc"
    ] == pytest.approx(record["selection"]["val_macro_auroc"])
    arrays = ev.store.read_arrays(ev.record_key(td, "linear", 0, 1.0))
    np.testing.assert_array_equal(arrays["test_ecg_ids"], td.split("test")[0])
    assert arrays["test_scores"].shape == (len(td.split("test")[0]), len(td.classes))
    assert arrays["test_window_logits"].shape[1] == 7
    # the stored predictions reproduce the stored metric
    from bench.evaluate.metrics import label_metrics

    again = label_metrics(arrays["test_y"], arrays["test_scores"], list(td.classes))
    assert again["macro_auroc"] == pytest.approx(test["macro_auroc"])

    again_record, fresh = ev.evaluate(td, "linear", seed=0)
    assert not fresh and again_record["created"] == record["created"]


def test_records_carry_the_subjects_health(synthetic):
    """An SSL subject whose encoder collapsed (its final LayerNorm maps every token to the same
    vector) after a loss curve that was still falling: the record's health block shows both
    against the encoder at init, from training-fold crops only; a reference row gets the
    feature part alone."""
    from pathlib import Path
    from types import SimpleNamespace

    from bench.config import to_dict
    from bench.evaluate.subjects import pretrained_subject
    from bench.health import assess
    from bench.train import build_method, resolve_config

    dataset, cache = synthetic
    cfg = resolve_config("jepa", "smoke")
    torch.manual_seed(cfg.seed)
    model = build_method(cfg, "jepa")
    model.benchmark_encoder().norm.weight.data.zero_()
    n_leads = len(cfg.data.leads)
    state = {
        "method": "jepa", "config": to_dict(cfg), "model": model.state_dict(), "step": 200,
        "losses": list(0.1 + 0.6 * np.exp(-np.arange(1, 201) / 120)),
        "norm_mean": torch.zeros(n_leads), "norm_std": torch.ones(n_leads),
    }  # fmt: skip
    result = SimpleNamespace(
        run_dir=Path("jepa-tiny-health0001"), final_checkpoint=Path("final.pt"), reused=False
    )
    subject = pretrained_subject("jepa", result, state)
    ev = Evaluator(
        subject, dataset, cache, resolve_eval_config("smoke"), torch.device("cpu"), "fp32"
    )
    td = TASKS.get("superdiagnostic").build(dataset)
    record, fresh = ev.evaluate(td, "linear", seed=0)
    assert fresh
    health = record["health"]
    assert health["loss"]["status"] == "still falling" and health["loss"]["steps"] == 200
    end, init = health["features"], health["features_init"]
    assert end["spread"] == 0.0 and end["effective_rank"] == 0.0  # every input: one vector
    assert init["spread"] > 0 and init["effective_rank"] > 1  # the same encoder at init varies
    assert end["dim"] == init["dim"] == subject.encoder().num_features
    assert [w.code for w in assess(health)] == ["budget", "collapse"]
    # one crop of every training record (folds 1-8 only), the same crops at init and end
    meta = dataset.metadata
    n_train = int(meta["strat_fold"].between(1, 8).sum())
    assert health["sample"]["records"] == n_train == end["n_samples"] == init["n_samples"]
    # computed once: the next record carries the same block
    other, _ = ev.evaluate(TASKS.get("form").build(dataset), "linear", seed=0)
    assert other["health"] == health

    reference = _evaluator(synthetic, "random")
    ref_health = reference.evaluate(td, "linear", seed=0)[0]["health"]
    assert ref_health["loss"] is None and ref_health["features_init"] is None
    assert ref_health["features"]["effective_rank"] > 1 and not assess(ref_health)


def test_same_seed_same_metrics_other_seed_differs(synthetic):
    ev = _evaluator(synthetic, "random")
    td = TASKS.get("rhythm").build(ev.dataset)
    a = ev.fit(td, "attentive", seed=0)
    b = ev.fit(td, "attentive", seed=0)
    c = ev.fit(td, "attentive", seed=1)
    assert a.history == b.history
    assert a.history != c.history


def test_label_fraction_trains_on_a_stratified_subset(synthetic):
    ev = _evaluator(synthetic, "random")
    td = TASKS.get("superdiagnostic").build(ev.dataset)
    record, _ = ev.evaluate(td, "linear", seed=0, fraction=0.1)
    n_train = record["counts"]["train"]
    assert record["counts"]["train_used"] < n_train
    ids, y = ev.training_subset(td, 0.1, 0)
    assert (y.sum(axis=0) > 0).sum() == (td.split("train")[1].sum(axis=0) > 0).sum()


def test_reference_rows_take_part_in_their_protocols_only(synthetic):
    ev = _evaluator(synthetic, "random")
    td = TASKS.get("superdiagnostic").build(ev.dataset)
    with pytest.raises(BenchError, match="does not take part"):
        ev.fit(td, "finetune", seed=0)
    sup = _evaluator(synthetic, "supervised")
    assert sup.subject.protocols == ("finetune",)
    assert sup.eval_cfg.finetune.encoder_lr_scale == 1.0  # from scratch: nothing to preserve


@pytest.mark.parametrize("name", __import__("bench.method", fromlist=["METHODS"]).METHODS.names())
def test_every_method_goes_through_every_protocol(synthetic, name):
    """The benchmarked encoder of every registered method (a plug-in too) fits all three
    protocols; the window respects the method's patch (ECG-JEPA / MAE get whole patches)."""
    import copy

    from bench.evaluate.subjects import Subject
    from bench.train import build_method, resolve_config

    dataset, cache = synthetic
    cfg = resolve_config(name, "smoke")
    encoder = build_method(cfg, name).benchmark_encoder()
    n_leads = len(cfg.data.leads)
    subject = Subject(
        name, f"{name}-contract", "ssl", cfg, ("linear", "attentive", "finetune"),
        np.zeros(n_leads, np.float32), np.ones(n_leads, np.float32), None,
        lambda: copy.deepcopy(encoder),
    )  # fmt: skip
    ev = Evaluator(
        subject, dataset, cache, resolve_eval_config("smoke"), torch.device("cpu"), "auto"
    )
    assert ev.window % cfg.encoder.patch_size(cfg.data.rate) == 0 and ev.window <= 250
    td = TASKS.get("superdiagnostic").build(dataset)
    for protocol in ("linear", "attentive", "finetune"):
        fit = ev.fit(td, protocol, seed=0)
        logits = ev.window_logits(fit, protocol, td.split("val")[0], "val")
        assert logits.shape == (len(td.split("val")[0]), len(ev.offsets), len(td.classes))
        assert np.isfinite(logits).all()


def test_linear_probe_runs_on_one_thread_and_restores_the_count():
    """Tiny layers run on one intra-op thread (faster, and immune to a busy machine); the
    caller's thread count comes back, also when the fit fails."""
    import torch

    from bench.evaluate import protocols as P
    from bench.evaluate.config import LinearConfig

    rng = np.random.default_rng(0)
    train, val = rng.normal(size=(40, 2, 8)).astype(np.float32), rng.normal(size=(20, 3, 8))
    y_train, y_val = (rng.random((40, 3)) < 0.5).astype(int), (rng.random((20, 3)) < 0.5)
    seen = []
    before = torch.get_num_threads()

    def on_epoch(epoch, logs):
        seen.append(torch.get_num_threads())
        if epoch == 1:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        P.fit_linear(train, y_train, val.astype(np.float32), y_val.astype(int),
                     LinearConfig(epochs=5), "mean_logits", 0, on_epoch)  # fmt: skip
    assert seen == [1, 1]
    assert torch.get_num_threads() == before
