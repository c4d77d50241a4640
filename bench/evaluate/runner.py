"""Evaluate subjects on tasks and write run records (the engine behind ``bench run``).

For one (subject, task, protocol, label fraction, seed) :meth:`Evaluator.evaluate`:

1. skips the work when a complete record already exists (an interrupted run continues);
2. **fits** with the training split (optionally a stratified fraction of it) and selects the
   model on the validation split; while fitting, asking for fold 10 raises (:class:`FoldGuard`);
3. **tests** the selected model on fold 10 (macro AUROC / AP, per-label values, bootstrap CI);
4. writes the record JSON + predictions ``.npz`` atomically, and logs a nested MLflow run.

Every record also carries the subject's **health** block (:meth:`Evaluator.health`, computed
once per evaluator from the training folds only): the pre-training loss curve's shape and the
spread / effective rank of the frozen encoder's features, at the end and at init.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.config import apply_overrides, config_hash, to_dict
from bench.data.cache import SignalCache
from bench.encoders import resolve_attention, use_attention
from bench.errors import BenchError
from bench.evaluate import protocols as P
from bench.evaluate.config import EvalConfig, eval_hash, protocol_view
from bench.evaluate.metrics import (
    aggregate_windows,
    bootstrap_ci,
    label_metrics,
    stratified_fraction,
)
from bench.evaluate.signals import SignalSource, window_length, window_offsets
from bench.evaluate.subjects import Subject
from bench.health import HEALTH_VERSION, feature_health
from bench.paths import results_dir
from bench.results import RecordExists, RecordKey, RecordStore, environment, now_iso
from bench.task import TaskData

# Feature health uses one crop per training record, at most this many records (evenly spaced
# over the sorted ecg_ids): the effective rank of a D <= 768 feature needs N >> D samples, and
# the encoder at init has to encode the same crops once more.
HEALTH_MAX_RECORDS = 2048


class FoldLeak(BenchError):
    """Fold 10 was requested while fitting, early stopping or selecting a model."""


class FoldGuard:
    """Refuses test-fold access while a fit is in progress (PROTOCOL.md 1.1: fold 10 is never
    used for tuning, model selection or early stopping)."""

    def __init__(self) -> None:
        self.fitting = False

    @contextlib.contextmanager
    def fit_phase(self):
        self.fitting = True
        try:
            yield
        finally:
            self.fitting = False

    def check(self, split: str) -> None:
        if split == "test" and self.fitting:
            raise FoldLeak("the test fold was requested while fitting or selecting a model")


class Evaluator:
    """Runs the protocols for one subject on one dataset (shared feature cache and sources)."""

    def __init__(
        self,
        subject: Subject,
        dataset,
        cache: SignalCache,
        eval_cfg: EvalConfig,
        device: torch.device,
        precision: str = "auto",
        store: RecordStore | None = None,
        precision_reason: str = "",
    ):
        """``precision``: ``auto`` (bf16 where ``device`` has it natively, else fp32;
        :mod:`bench.precision`), ``bf16`` or ``fp32``; ``precision_reason`` is why, when the
        caller already resolved it (``bench run`` resolves once for pre-training and evaluation)."""
        if cache.rate != subject.config.data.rate:
            raise BenchError(
                f"cache at {cache.rate} Hz, {subject.name} needs {subject.config.data.rate}"
            )
        self.subject = subject
        self.dataset = dataset
        self.cache = cache
        self.eval_cfg = apply_overrides(eval_cfg, subject.eval_overrides)
        self.device = device
        if precision == "auto" or not precision_reason:
            from bench.precision import resolve_precision

            chosen = resolve_precision(precision, device)
            precision, precision_reason = chosen.name, chosen.reason
        self.precision = precision
        self.precision_reason = precision_reason
        self.store = store or RecordStore()
        self.guard = FoldGuard()
        cfg = subject.config
        self.rate = cfg.data.rate
        self.window = window_length(
            self.eval_cfg.window_seconds, self.rate, cfg.encoder.patch_size(self.rate)
        )
        length = int(cache.signals.shape[-1])
        self.offsets = window_offsets(
            length, self.window, round(self.eval_cfg.stride_seconds * self.rate)
        )
        self._frozen: torch.nn.Module | None = None
        self._features: P.FeatureStore | None = None
        self._health: dict | None = None

    # ------------------------------------------------------------------ data access
    def source(self, ecg_ids: np.ndarray, split: str) -> SignalSource:
        self.guard.check(split)
        s, c = self.subject, self.subject.config
        return SignalSource(self.cache, ecg_ids, s.leads, s.norm_mean, s.norm_std, c.data.clip)

    def encoder(self) -> torch.nn.Module:
        """A fresh copy of the subject's encoder, its attention kernel chosen for this device
        and precision (:func:`bench.encoders.resolve_attention`)."""
        encoder = self.subject.encoder()
        use_attention(encoder, resolve_attention("auto", self.device, self.precision))
        return encoder

    def frozen_encoder(self) -> torch.nn.Module:
        if self._frozen is None:
            self._frozen = self.encoder().to(self.device).eval().requires_grad_(False)
        return self._frozen

    def _group_source(self, group: str) -> SignalSource:
        """All cached records of a fold group (``train``: 1-8, ``val``: 9, ``test``: 10)."""
        self.guard.check(group)
        from bench.task import TEST_FOLDS, TRAIN_FOLDS, VAL_FOLDS

        folds = {"train": TRAIN_FOLDS, "val": VAL_FOLDS, "test": TEST_FOLDS}[group]
        meta = self.dataset.metadata
        ids = meta.index[meta["strat_fold"].isin(folds)].to_numpy()
        return self.source(np.sort(ids[np.isin(ids, self.cache.ecg_ids)]), group)

    def features(self, group: str, ecg_ids: np.ndarray) -> np.ndarray:
        self.guard.check(group)
        if self._features is None:
            e = self.eval_cfg
            directory = (
                results_dir()
                / "features"
                / self.subject.run_id
                / f"w{self.window}-s{round(e.stride_seconds * self.rate)}"
                f"-c{e.linear.train_crops}-{self.precision}"
            )
            self._features = P.FeatureStore(
                directory, self._group_source, self.frozen_encoder(), self.window, self.offsets,
                e.linear.train_crops, e.eval_batch_size, self.device, self.precision,
            )  # fmt: skip
        return self._features.features(group, ecg_ids)

    # ------------------------------------------------------------------ health (train only)
    def health(self) -> dict:
        """The subject's health block, computed once (it goes into every record it writes).

        * ``loss``: :func:`bench.health.loss_curve_health` of the pre-training losses (None for
          reference rows);
        * ``features``: :func:`bench.health.feature_health` of the frozen benchmarked encoder's
          pooled features, one fixed random crop (the evaluation window length) per training
          record (folds 1-8; never 9 or 10), at most :data:`HEALTH_MAX_RECORDS` records evenly
          spaced over the sorted ``ecg_id``s;
        * ``features_init``: the same for the encoder at the weights pre-training started from,
          on the same crops (None for reference rows, whose encoder is at init already);
        * ``sample``: which crops; ``seconds``: the time it took.

        One crop per record (not the K cached crops of the linear probe, and not their mean):
        the samples are distinct records, as many as the records, and the init encoder encodes
        exactly the same inputs.
        """
        if self._health is not None:
            return self._health
        started = time.perf_counter()
        source = self._group_source("train")
        count = min(len(source), HEALTH_MAX_RECORDS)  # spacing >= 1: distinct positions
        ids = source.ecg_ids[np.linspace(0, len(source) - 1, count).round().astype(int)]
        sample = self.source(ids, "train")
        # Same crop rule as the probe's cached crops (a function of the ecg_id): the first one.
        offsets = P.train_crop_offsets(ids, sample.length, self.window, 1)
        e = self.eval_cfg

        def pooled(encoder: torch.nn.Module) -> np.ndarray:
            feats = P.encode(
                encoder, sample, offsets, self.window, e.eval_batch_size, self.device,
                self.precision,
            )  # fmt: skip
            return feats[:, 0]

        end = feature_health(pooled(self.frozen_encoder())) if len(ids) else None
        init = None
        if self.subject.make_init_encoder is not None and len(ids):
            encoder = self.subject.make_init_encoder()
            use_attention(encoder, resolve_attention("auto", self.device, self.precision))
            init = feature_health(pooled(encoder.to(self.device).eval().requires_grad_(False)))
            del encoder
        self._health = {
            "version": HEALTH_VERSION,
            "loss": self.subject.loss_health,
            "features": end,
            "features_init": init,
            "sample": {
                "folds": "train (1-8)",
                "records": len(ids),
                "of_records": len(source),
                "crops_per_record": 1,
                "window_samples": self.window,
                "precision": self.precision,
            },
            "seconds": time.perf_counter() - started,
        }
        return self._health

    @property
    def computed_health(self) -> dict | None:
        """The health block if this evaluator has computed it (it has written a record)."""
        return self._health

    # ------------------------------------------------------------------ fit (train + val only)
    def training_subset(self, td: TaskData, fraction: float, seed: int):
        ids, y = td.split("train")
        if fraction < 1.0:
            keep = stratified_fraction(y, fraction, seed)
            ids, y = ids[keep], y[keep]
        return ids, y

    def fit(
        self,
        td: TaskData,
        protocol: str,
        seed: int,
        fraction: float = 1.0,
        eval_cfg: EvalConfig | None = None,
        on_epoch: P.EpochCallback | None = None,
    ) -> P.FitResult:
        """Fit ``protocol`` on the training split and select on validation. Never reads fold 10."""
        if protocol not in self.subject.protocols:
            raise BenchError(
                f"{self.subject.name} does not take part in the {protocol} protocol",
                hint=f"its protocols: {', '.join(self.subject.protocols)}",
            )
        e = self.resolve(eval_cfg)
        td.require_splits("train", "val")
        with self.guard.fit_phase():
            train_ids, y_train = self.training_subset(td, fraction, seed)
            val_ids, y_val = td.split("val")
            run = P.WindowedFit(
                window=self.window, eval_offsets=self.offsets, aggregation=e.aggregation,
                seed=seed, device=self.device, precision=self.precision,
                eval_batch_size=e.eval_batch_size, on_epoch=on_epoch,
            )  # fmt: skip
            if protocol in ("linear", "finetune"):
                linear = P.fit_linear(
                    self.features("train", train_ids), y_train,
                    self.features("val", val_ids), y_val,
                    e.linear, e.aggregation, seed,
                    on_epoch=on_epoch if protocol == "linear" else None,
                )  # fmt: skip
                if protocol == "linear":
                    return linear
                fit = P.fit_finetune(
                    self.encoder(), linear.model,
                    self.source(train_ids, "train"), y_train,
                    self.source(val_ids, "val"), y_val, e.finetune, run,
                )  # fmt: skip
                fit.head_init = {
                    "best_epoch": linear.best_epoch,
                    "val_macro_auroc": linear.val_macro_auroc,
                    "epochs_run": len(linear.history),
                    "seconds": linear.seconds,
                }
                return fit
            return P.fit_attentive(
                self.frozen_encoder(), self.source(train_ids, "train"), y_train,
                self.source(val_ids, "val"), y_val, e.attentive, run,
            )  # fmt: skip

    def window_logits(self, fit: P.FitResult, protocol: str, ecg_ids: np.ndarray, split: str):
        """``(n, W, k)`` logits of the selected model on the windows of ``split``'s records."""
        e = self.eval_cfg
        if protocol == "linear":
            feats = torch.from_numpy(self.features(split, ecg_ids))
            with torch.no_grad():
                return fit.model(feats).numpy()
        model = (
            fit.model
            if protocol == "finetune"
            else P.TokensThenHead(self.frozen_encoder(), fit.model)
        )
        return P.predict_windows(
            model.eval(), self.source(ecg_ids, split), self.offsets, self.window,
            e.eval_batch_size, self.device, self.precision,
        )  # fmt: skip

    # ------------------------------------------------------------------ one record
    def resolve(self, eval_cfg: EvalConfig | None) -> EvalConfig:
        """``eval_cfg`` (e.g. with tuned values) plus the subject's own overrides."""
        if eval_cfg is None:
            return self.eval_cfg
        return apply_overrides(eval_cfg, self.subject.eval_overrides)

    def record_key(
        self, td: TaskData, protocol: str, seed: int, fraction: float, eval_cfg=None
    ) -> RecordKey:
        return RecordKey(
            run_id=self.subject.run_id,
            task=td.task.name,
            protocol=protocol,
            eval_hash=eval_hash(self.resolve(eval_cfg), protocol),
            label_fraction=float(fraction),
            seed=int(seed),
        )

    def evaluate(
        self,
        td: TaskData,
        protocol: str,
        seed: int,
        fraction: float = 1.0,
        *,
        tracking: Callable[[str], Any] | None = None,
        eval_cfg: EvalConfig | None = None,
        tuned: dict | None = None,
    ) -> tuple[dict, bool]:
        """The record of one evaluation, and whether it was computed now (False: it existed).

        Args:
            tracking: ``tracking(name)`` -> a context manager yielding a
                :class:`bench.tracking.Tracker` for a nested MLflow run.
            eval_cfg: the protocol settings (default: the evaluator's), e.g. with tuned values.
            tuned: provenance of those tuned values (study, trial), kept in the record.
        """
        e = self.resolve(eval_cfg)
        key = self.record_key(td, protocol, seed, fraction, e)
        if self.store.exists(key):
            return self.store.read(key), False
        self.health()  # once per evaluator, outside this record's timings (it has its own)
        started = time.perf_counter()
        name = f"{key.run_id}/{key.task}/{protocol}/frac{fraction:g}-seed{seed}"
        with tracking(name) if tracking else contextlib.nullcontext(None) as tracker:
            if tracker is not None:
                tracker.log_params(
                    {
                        "method": self.subject.name,
                        "task": td.task.name,
                        "protocol": protocol,
                        "seed": seed,
                        "label_fraction": fraction,
                        "eval": protocol_view(e, protocol),
                        "method_config_hash": config_hash(self.subject.config),
                        "precision": self.precision,
                        "precision_reason": self.precision_reason,
                    }
                )

            def log_epoch(epoch: int, logs: dict[str, float]) -> None:
                if tracker is not None:
                    tracker.log_metrics(logs, step=epoch)

            fit = self.fit(td, protocol, seed, fraction, eval_cfg=e, on_epoch=log_epoch)
            fit_seconds = time.perf_counter() - started
            record, arrays = self._test_and_describe(td, protocol, seed, fraction, fit, e)
            record["timings"] = {
                "fit_seconds": fit_seconds,
                "test_seconds": time.perf_counter() - started - fit_seconds,
                "total_seconds": time.perf_counter() - started,
            }
            record["tuned"] = tuned
            try:
                path = self.store.write(key, record, arrays)
            except RecordExists:
                # A concurrent `bench run` on the same results directory published it first
                # (the same deterministic result): keep theirs, never a second copy.
                return self.store.read(key), False
            if tracker is not None:
                test = record["metrics"]["test"]
                tracker.log_metrics(
                    {
                        "test_macro_auroc": test["macro_auroc"],
                        "test_macro_ap": test["macro_ap"],
                        "test_macro_auroc_ci_low": test["ci"]["macro_auroc"][0],
                        "test_macro_auroc_ci_high": test["ci"]["macro_auroc"][1],
                        "val_macro_auroc": fit.val_macro_auroc,
                    }
                )
                tracker.log_artifact(path, "record")
                tracker.log_artifact(self.store.npz_path(key), "record")
        return self.store.read(key), True

    def _test_and_describe(self, td, protocol, seed, fraction, fit: P.FitResult, e: EvalConfig):
        s = self.subject
        train_ids, _ = self.training_subset(td, fraction, seed)
        val_ids, y_val = td.split("val")
        test_ids, y_test = td.split("test")  # first use of fold 10: the model is final
        val_logits = self.window_logits(fit, protocol, val_ids, "val")
        test_logits = self.window_logits(fit, protocol, test_ids, "test")
        val_scores = aggregate_windows(val_logits, e.aggregation)
        test_scores = aggregate_windows(test_logits, e.aggregation)
        classes = list(td.classes)
        test = label_metrics(y_test, test_scores, classes)
        test["ci"] = bootstrap_ci(y_test, test_scores, n_resamples=e.bootstrap, seed=seed)
        val = label_metrics(y_val, val_scores, classes)
        record = {
            "method": s.name,
            "kind": s.kind,
            "run_id": s.run_id,
            "encoder": s.config.encoder.size,
            "layout": s.config.encoder.layout,
            "task": td.task.name,
            "level": td.task.level,
            "protocol": protocol,
            "seed": int(seed),
            "label_fraction": float(fraction),
            "dataset": {
                "name": self.dataset.name,
                "synthetic": bool(self.dataset.is_synthetic),
                "fingerprint": self.cache.fingerprint,
                "fingerprint_kind": self.cache.fingerprint_kind,
                "rate": self.rate,
            },
            "config": {
                "method": to_dict(s.config),
                "method_hash": config_hash(s.config),
                "eval": protocol_view(e, protocol),
                "eval_hash": eval_hash(e, protocol),
            },
            "pretrain": s.pretrain,
            "health": self.health(),
            "window": {
                "samples": self.window,
                "seconds": self.window / self.rate,
                "stride_samples": int(self.offsets[1] - self.offsets[0])
                if len(self.offsets) > 1
                else 0,
                "n_windows": len(self.offsets),
                "aggregation": e.aggregation,
            },
            "classes": classes,
            "counts": {
                "train": int(td.split_mask("train").sum()),
                "train_used": len(train_ids),
                "val": len(val_ids),
                "test": len(test_ids),
            },
            "selection": {
                "metric": "val_macro_auroc",
                "best_epoch": fit.best_epoch,
                "val_macro_auroc": fit.val_macro_auroc,
                "epochs_run": len(fit.history),
                "history": fit.history,
                "head_init": fit.head_init,
            },
            "metrics": {"test": test, "val": val},
            "test_macro_auroc": test["macro_auroc"],
            "test_macro_auroc_ci": test["ci"]["macro_auroc"],
            "test_macro_ap": test["macro_ap"],
            "environment": environment(str(self.device)),
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "created": now_iso(),
        }
        arrays = {
            "val_ecg_ids": val_ids,
            "val_y": td.split("val")[1],
            "val_scores": val_scores.astype(np.float32),
            "test_ecg_ids": test_ids,
            "test_y": y_test,
            "test_scores": test_scores.astype(np.float32),
            "test_window_logits": test_logits.astype(np.float32),
        }
        return record, arrays


def record_label(record: dict) -> str:
    return f"{record['method']} ({record['encoder']}) {record['task']} {record['protocol']}"


def features_dir() -> Path:
    return results_dir() / "features"
