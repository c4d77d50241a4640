"""``bench compare A B``: does A really beat B? Paired bootstrap on the same test records.

A subject is a method name (``jepa``, ``random``) or a pre-training run id when one method has
records from several configurations. Both subjects' records must come from the same dataset
(fingerprint) and cover the same test records; seeds present for both are paired.
"""

from __future__ import annotations

import numpy as np

from bench.data.identity import fingerprint_kind
from bench.errors import BenchError
from bench.evaluate.metrics import paired_bootstrap
from bench.results import RecordKey, RecordStore


def subject_records(
    store: RecordStore, subject: str, task: str, protocol: str, label_fraction: float
) -> list[dict]:
    """The records of one subject (method name or run id), one per seed, sorted by seed."""
    found = [
        r
        for r in store.records(task=task, protocol=protocol, label_fraction=label_fraction)
        if subject in (r["method"], r["run_id"])
    ]
    if not found:
        raise BenchError(
            f"no records for {subject!r} on task {task!r}, protocol {protocol!r}, label fraction "
            f"{label_fraction:g} in {store.root}",
            hint=f"run `bench run --method <method> --task {task} --protocol {protocol}` first, "
            "or check the names with `bench report`",
        )
    configs = sorted({(r["run_id"], r["key"]["eval_hash"], r["dataset"]["name"]) for r in found})
    if len(configs) > 1:
        listed = "; ".join(f"run {run} eval {ev} on {ds}" for run, ev, ds in configs)
        raise BenchError(
            f"{subject!r} has records from {len(configs)} configurations: {listed}",
            hint="name one pre-training run id instead of the method, or keep one configuration "
            "per results directory (BENCH_RESULTS_DIR)",
        )
    return sorted(found, key=lambda r: r["seed"])


def compare_subjects(
    store: RecordStore,
    a: str,
    b: str,
    task: str,
    protocol: str,
    label_fraction: float = 1.0,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Paired bootstrap of test macro AUROC(A) - AUROC(B); see :func:`paired_bootstrap`.

    Returns its dict plus ``a``/``b`` (subject, run id, seeds), ``task``, ``protocol``,
    ``label_fraction`` and ``dataset``.
    """
    rec_a = subject_records(store, a, task, protocol, label_fraction)
    rec_b = subject_records(store, b, task, protocol, label_fraction)
    fingerprints = {r["dataset"]["fingerprint"] for r in rec_a + rec_b}
    if len(fingerprints) > 1:
        hint = "compare records of one dataset (one BENCH_RESULTS_DIR / --data-dir)"
        if len({fingerprint_kind(r["dataset"]) for r in rec_a + rec_b}) > 1:
            # an mtime fingerprint and a content one never agree, whatever the data
            hint = (
                "some of these records predate content identity (their data fingerprint hashed "
                "file mtimes): run them again with `bench run` so both sides carry content "
                "fingerprints"
            )
        raise BenchError(
            f"{a!r} and {b!r} were evaluated on different datasets "
            f"({rec_a[0]['dataset']['name']} vs {rec_b[0]['dataset']['name']})",
            hint=hint,
        )
    seeds = sorted({r["seed"] for r in rec_a} & {r["seed"] for r in rec_b})
    if not seeds:
        raise BenchError(
            f"no seed in common: {a!r} has seeds {[r['seed'] for r in rec_a]}, "
            f"{b!r} has {[r['seed'] for r in rec_b]}",
            hint="run both with the same --seeds",
        )
    ids, y, scores_a, scores_b = None, None, [], []
    for s in seeds:
        arr_a = store.read_arrays(RecordKey(**next(r for r in rec_a if r["seed"] == s)["key"]))
        arr_b = store.read_arrays(RecordKey(**next(r for r in rec_b if r["seed"] == s)["key"]))
        if ids is None:
            ids, y = arr_a["test_ecg_ids"], arr_a["test_y"]
        scores_a.append(_aligned(arr_a, ids, a))
        scores_b.append(_aligned(arr_b, ids, b))
    result = paired_bootstrap(
        y, np.stack(scores_a), np.stack(scores_b), n_resamples, seed, confidence
    )
    return {
        **result,
        "a": {"subject": a, "run_id": rec_a[0]["run_id"], "method": rec_a[0]["method"]},
        "b": {"subject": b, "run_id": rec_b[0]["run_id"], "method": rec_b[0]["method"]},
        "seeds": seeds,
        "task": task,
        "protocol": protocol,
        "label_fraction": label_fraction,
        "dataset": rec_a[0]["dataset"]["name"],
    }


def _aligned(arrays: dict[str, np.ndarray], ids: np.ndarray, subject: str) -> np.ndarray:
    """``test_scores`` reordered to ``ids``; an error unless both cover the same records."""
    own = arrays["test_ecg_ids"]
    if len(own) != len(ids) or not np.array_equal(np.sort(own), np.sort(ids)):
        raise BenchError(
            f"{subject!r} was tested on other records ({len(own)} vs {len(ids)} test records)",
            hint="a paired comparison needs the same test fold; re-run on the same dataset",
        )
    order = np.argsort(own)[np.searchsorted(np.sort(own), ids)]
    return arrays["test_scores"][order]


def format_comparison(result: dict) -> str:
    """A few lines a user can paste into a paper's text."""
    lo, hi = result["ci"]
    pct = round(result["confidence"] * 100)
    a, b = result["a"]["subject"], result["b"]["subject"]
    verdict = (
        f"{a} beats {b}" if lo > 0 else f"{b} beats {a}" if hi < 0 else "no significant difference"
    )
    return "\n".join(
        [
            f"{result['task']} / {result['protocol']} / label fraction "
            f"{result['label_fraction']:g} on {result['dataset']}",
            f"  {a:<12s} test macro AUROC {result['auroc_a']:.4f}  ({result['a']['run_id']})",
            f"  {b:<12s} test macro AUROC {result['auroc_b']:.4f}  ({result['b']['run_id']})",
            f"  difference {result['difference']:+.4f}, {pct} % CI [{lo:+.4f}, {hi:+.4f}], "
            f"p = {result['p_value']:.3g} (two-sided)",
            f"  paired bootstrap: {result['n_resamples']} resamples ({result['mode']}) of "
            f"{result['n_records']} test records, {result['n_labels']} labels, seeds "
            f"{result['seeds']}",
            f"  => {verdict} at the {pct} % level",
        ]
    )
