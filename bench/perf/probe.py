"""``bench perf --probe``: linear probing of the benchmark tasks from cached features.

The frozen encoder (``random`` init of the preset's encoder: probing cost does not depend on
the weights) encodes the training and validation folds once, as ``bench run`` does; then every
task's probe is fitted twice from the same cached features, by the harness
(:func:`bench.evaluate.protocols.fit_linear`) and by the straightforward version
(:func:`bench.perf.reference.straightforward_fit_linear`), each timed. Both must select the
same epoch with the same validation AUROC, or the comparison is void. Fold 10 is never read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bench.evaluate import protocols as P
from bench.perf.reference import straightforward_fit_linear


def probe_benchmark(
    dataset,
    task_names: Sequence[str],
    preset: str = "cpu",
    encoder: str | None = None,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time encoding once, then the linear probe of every task, harness vs straightforward.

    Returns ``{"encode_seconds", "tasks": [{"task", "seconds", "reference_seconds",
    "best_epoch", "epochs", "val_macro_auroc", "same_selection"}], "total_seconds",
    "reference_total_seconds"}``.
    """
    from bench.data.cache import prepare_cache
    from bench.evaluate.config import resolve_eval_config
    from bench.evaluate.runner import Evaluator
    from bench.evaluate.subjects import reference_subject, subject_config
    from bench.task import TASKS

    device = torch.device(device)
    cfg = subject_config("random", preset, (), encoder)
    cache = prepare_cache(dataset, cfg.data.rate, progress=False)
    subject = reference_subject("random", cfg, dataset, cache)
    eval_cfg = resolve_eval_config(preset, ())
    evaluator = Evaluator(subject, dataset, cache, eval_cfg, device, precision)
    e = evaluator.eval_cfg
    tasks = [TASKS.get(name).build(dataset) for name in task_names]

    started = time.perf_counter()
    with evaluator.guard.fit_phase():  # the training and validation folds only
        for group in ("train", "val"):
            ids = evaluator._group_source(group).ecg_ids
            evaluator.features(group, ids)
    encode_seconds = time.perf_counter() - started
    echo(f"encoded folds 1-9 once ({cfg.encoder.size} encoder): {encode_seconds:.1f} s")

    rows = []
    for td in tasks:
        with evaluator.guard.fit_phase():
            train_ids, y_train = evaluator.training_subset(td, 1.0, 0)
            val_ids, y_val = td.split("val")
            inputs = (
                evaluator.features("train", train_ids), y_train,
                evaluator.features("val", val_ids), y_val, e.linear, e.aggregation, 0,
            )  # fmt: skip
            t0 = time.perf_counter()
            fit = P.fit_linear(*inputs)
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            reference = straightforward_fit_linear(*inputs)
            reference_seconds = time.perf_counter() - t0
        row = {
            "task": td.task.name,
            "labels": int(y_train.shape[1]),
            "seconds": seconds,
            "reference_seconds": reference_seconds,
            "epochs": len(fit.history),
            "best_epoch": fit.best_epoch,
            "val_macro_auroc": fit.val_macro_auroc,
            "same_selection": fit.best_epoch == reference.best_epoch
            and abs(fit.val_macro_auroc - reference.val_macro_auroc) < 1e-9,
        }
        rows.append(row)
        echo(
            f"{row['task']:>16}: {row['labels']} labels, {row['epochs']} epochs, "
            f"{seconds:.1f} s (straightforward {reference_seconds:.1f} s, "
            f"{reference_seconds / seconds:.1f}x); same selection: "
            f"{'yes' if row['same_selection'] else 'NO'}"
        )
    total = sum(r["seconds"] for r in rows)
    reference_total = sum(r["reference_seconds"] for r in rows)
    echo(
        f"linear probing of {len(rows)} tasks from cached features: {total:.1f} s "
        f"(straightforward {reference_total:.1f} s, {reference_total / total:.1f}x)"
    )
    return {
        "dataset": dataset.name,
        "encoder": cfg.encoder.size,
        "encode_seconds": encode_seconds,
        "tasks": rows,
        "total_seconds": total,
        "reference_total_seconds": reference_total,
    }
