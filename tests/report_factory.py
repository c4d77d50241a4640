"""Hand-made run records for the report tests: the fields the leaderboard reads, known values.

``fake_record`` returns the JSON part of a record, ``fake_arrays`` predictions whose test AUROC
is controlled (``signal`` = how strongly scores follow the labels), so table, figure, HTML and
comparison tests can assert exact contents without training anything. ``fake_health`` builds the
``health`` block of a record (:mod:`bench.health`) from real curves and feature matrices, so the
report shows what the evaluator would have stored.
"""

from __future__ import annotations

import hashlib

import numpy as np

SYNTHETIC = "synthetic (n=3000, seed=0, v1)"
REAL = "PTB-XL 1.0.3"
CLASSES = {
    "superdiagnostic": ["CD", "HYP", "MI", "NORM", "STTC"],
    "form": ["ABQRS", "INVT", "LVOLT", "NDT"],
    "rhythm": ["AFIB", "SBRAD", "SR", "STACH"],
    "all_statements": ["AFIB", "IMI", "NORM", "SR"],
}


def fake_loss(shape: str, steps: int = 200) -> list[float]:
    """A pre-training loss curve: ``"falling"`` (stopped inside the initial fall), ``"turned"``
    (JEPA's dip then a rise) or ``"plateau"`` (converged)."""
    t = np.arange(1, steps + 1)
    noise = 0.005 * np.random.default_rng(steps).normal(size=steps)
    if shape == "falling":
        curve = 0.1 + 0.6 * np.exp(-t / (steps / 2))
    elif shape == "turned":
        curve = 0.09 + 0.6 * np.exp(-t / (steps / 8)) + 0.3 * np.clip(t / steps - 0.4, 0, None)
    elif shape == "plateau":
        curve = 0.3 + 1.4 * np.exp(-t / (steps / 10))
    else:
        raise ValueError(shape)
    return list(curve + noise)


def fake_features(rank: int, offset: float = 0.0, dim: int = 32, n: int = 400) -> np.ndarray:
    """``(n, dim)`` features varying along ``rank`` equal directions around ``offset``."""
    rng = np.random.default_rng(rank)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, :rank]
    return offset + rng.normal(size=(n, rank)) @ basis.T


def fake_health(
    loss: str | None = "plateau", rank: int = 20, init_rank: int | None = 16, offset: float = 0.0
) -> dict:
    """A health block as :meth:`bench.evaluate.runner.Evaluator.health` stores it: ``loss``
    a :func:`fake_loss` shape (None: a reference row), features of ``rank`` directions at the
    end and ``init_rank`` at init (None: a reference row, its encoder is at init)."""
    from bench.health import HEALTH_VERSION, feature_health, loss_curve_health

    return {
        "version": HEALTH_VERSION,
        "loss": loss_curve_health(fake_loss(loss)) if loss else None,
        "features": feature_health(fake_features(rank, offset)),
        "features_init": feature_health(fake_features(init_rank)) if init_rank else None,
        "sample": {"folds": "train (1-8)", "records": 400, "of_records": 400,
                   "crops_per_record": 1, "window_samples": 250, "precision": "bf16"},
        "seconds": 0.5,
    }  # fmt: skip


def fake_record(
    method: str = "jepa",
    task: str = "superdiagnostic",
    protocol: str = "linear",
    auroc: float = 0.8,
    *,
    seed: int = 0,
    label_fraction: float = 1.0,
    encoder: str = "xs",
    dataset: str = SYNTHETIC,
    run_id: str | None = None,
    eval_hash: str = "0123456789abcdef",
    half_width: float = 0.02,
    kind: str | None = None,
    train_seconds: float = 600.0,
    steps: int = 1000,
    batch_size: int = 64,
    health: dict | None = None,
) -> dict:
    """One complete record dict (the fields readers use), per-label AUROC around ``auroc``;
    ``health`` goes in as is (None: a record written before health signals existed)."""
    kind = kind or {"random": "reference", "supervised": "reference"}.get(method, "ssl")
    run_id = run_id or f"{method}-{encoder}-" + hashlib.sha256(method.encode()).hexdigest()[:10]
    classes = CLASSES[task]
    offsets = np.linspace(-0.05, 0.05, len(classes))
    per_label = {c: float(np.clip(auroc + o, 0, 1)) for c, o in zip(classes, offsets, strict=True)}
    synthetic = dataset.startswith("synthetic")
    pretrain = (
        None
        if kind != "ssl"
        else {
            "run_id": run_id,
            "steps": steps,
            "batch_size": batch_size,
            "train_seconds": train_seconds,
            "precision": "bf16",
            "reused": False,
        }
    )
    return {
        "method": method,
        "kind": kind,
        "run_id": run_id,
        "encoder": encoder,
        "task": task,
        "protocol": protocol,
        "seed": seed,
        "label_fraction": label_fraction,
        "dataset": {"name": dataset, "synthetic": synthetic, "fingerprint": "f" * 64, "rate": 100},
        "config": {"method": {"seed": 0}, "eval_hash": eval_hash, "method_hash": "a" * 16},
        "pretrain": pretrain,
        **({"health": health} if health is not None else {}),
        "classes": classes,
        "selection": {
            "metric": "val_macro_auroc",
            "best_epoch": 3,
            "val_macro_auroc": auroc - 0.01,
        },
        "metrics": {
            "test": {
                "macro_auroc": auroc,
                "macro_ap": auroc - 0.3,
                "per_label_auroc": per_label,
                "excluded_labels": [],
                "n_records": 300,
                "ci": {"macro_auroc": [auroc - half_width, auroc + half_width / 2]},
            }
        },
        "test_macro_auroc": auroc,
        "test_macro_auroc_ci": [auroc - half_width, auroc + half_width / 2],
        "test_macro_ap": auroc - 0.3,
        "environment": {"device": "cpu", "git": {"commit": "c" * 40, "dirty": False}},
        "precision": "bf16",
        "created": "2026-12-01T12:00:00.000+00:00",
        "timings": {"fit_seconds": 10.0, "test_seconds": 1.0, "total_seconds": 11.0},
        "key": {
            "run_id": run_id,
            "task": task,
            "protocol": protocol,
            "eval_hash": eval_hash,
            "label_fraction": label_fraction,
            "seed": seed,
        },
        "complete": True,
    }


def fake_arrays(n: int, n_labels: int, signal: float, seed: int, ids_seed: int = 0) -> dict:
    """Test-set predictions: labels fixed by ``ids_seed``, scores = signal * label + noise."""
    labels_rng = np.random.default_rng(ids_seed)
    y = (labels_rng.random((n, n_labels)) < 0.3).astype(np.uint8)
    y[0], y[1] = 1, 0  # every label has both classes
    noise = np.random.default_rng(seed).normal(size=(n, n_labels))
    return {
        "test_ecg_ids": np.arange(1, n + 1, dtype=np.int64),
        "test_y": y,
        "test_scores": (signal * y + noise).astype(np.float32),
    }


def write_fake(store, record: dict, arrays: dict) -> None:
    """Publish a hand-made record and its predictions through the real :class:`RecordStore`."""
    from bench.results import RecordKey

    key = RecordKey(**record["key"])
    store.write(key, {n: v for n, v in record.items() if n != "key"}, arrays)
