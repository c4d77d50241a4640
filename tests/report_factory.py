"""Hand-made run records for the report tests: the fields the leaderboard reads, known values.

``fake_record`` returns the JSON part of a record, ``fake_arrays`` predictions whose test AUROC
is controlled (``signal`` = how strongly scores follow the labels), so table, figure, HTML and
comparison tests can assert exact contents without training anything.
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
) -> dict:
    """One complete record dict (the fields readers use), per-label AUROC around ``auroc``."""
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
