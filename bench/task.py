"""Task contract: a frozen spec that turns a PTB-XL-layout dataset into labels and folds.

A task knows nothing about models. ``TaskSpec.build(dataset)`` returns the labelled records of
the task (``ecg_ids``, multi-hot ``y``, alphabetical ``classes``, ``folds``) and the fixed
split: folds 1-8 train, 9 validation, 10 test. The label definitions follow PROTOCOL.md 1.1 (the
Strodthoff et al. 2021 benchmark): keys of ``scp_codes`` only, likelihoods ignored unless a
non-default threshold is asked for, labels occurring more than ``min_samples`` times kept,
records left without a label dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.registry import Registry

LEVELS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
TRAIN_FOLDS = (1, 2, 3, 4, 5, 6, 7, 8)
VAL_FOLDS = (9,)
TEST_FOLDS = (10,)  # never used for tuning, early stopping or model selection
BENCHMARK_TASKS = ("superdiagnostic", "form", "rhythm", "all_statements")


def code_to_labels(statements: pd.DataFrame, level: str) -> dict[str, frozenset[str]]:
    """For each SCP code, the labels it yields at ``level`` (empty when it has none).

    ``all``: the code itself; ``diagnostic`` / ``form`` / ``rhythm``: the code when its flag
    column is 1.0; ``subdiagnostic`` / ``superdiagnostic``: a diagnostic code's
    ``diagnostic_subclass`` / ``diagnostic_class``, NaN skipped.
    """
    if level not in LEVELS:
        raise BenchError(
            f"unknown label level {level!r}", hint=f"valid levels: {', '.join(LEVELS)}"
        )

    def flagged(column: str) -> pd.Series:
        return pd.to_numeric(statements[column], errors="coerce").fillna(0) == 1.0

    mapping: dict[str, frozenset[str]] = {}
    for code in statements.index:
        if level == "all":
            labels = {code}
        elif level in ("diagnostic", "form", "rhythm"):
            labels = {code} if flagged(level)[code] else set()
        else:
            column = "diagnostic_subclass" if level == "subdiagnostic" else "diagnostic_class"
            value = statements.at[code, column]
            labels = (
                {value}
                if flagged("diagnostic")[code] and isinstance(value, str) and value
                else set()
            )
        mapping[str(code)] = frozenset(labels)
    return mapping


def record_labels(
    codes: Mapping[str, float],
    mapping: Mapping[str, frozenset[str]],
    likelihood_threshold: float | None = None,
) -> set[str]:
    """The labels of one record (before the ``min_samples`` filter).

    Args:
        codes: parsed ``scp_codes`` ``{code: likelihood}``; only the keys count.
        mapping: :func:`code_to_labels` for the level.
        likelihood_threshold: non-benchmark option: keep only codes with likelihood >= it.
            Form and rhythm statements always carry likelihood 0, so any positive threshold
            deletes them; the benchmark uses None.
    """
    labels: set[str] = set()
    for code, likelihood in codes.items():
        if likelihood_threshold is None or likelihood >= likelihood_threshold:
            labels |= mapping.get(code, frozenset())
    return labels


@dataclass(frozen=True)
class TaskData:
    """The labelled records of one task on one dataset.

    Attributes:
        ecg_ids: ``(n,)`` int64, ascending.
        y: ``(n, k)`` uint8 multi-hot, columns in ``classes`` order.
        classes: ``k`` label names, alphabetical.
        folds: ``(n,)`` int ``strat_fold`` of each record.
    """

    task: TaskSpec
    dataset_name: str
    ecg_ids: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    folds: np.ndarray

    def split_mask(self, split: str) -> np.ndarray:
        """Boolean ``(n,)`` mask of ``split`` in {"train", "val", "test"}."""
        folds = self.task.split_folds(split)
        return np.isin(self.folds, folds)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(ecg_ids, y)`` of one split."""
        mask = self.split_mask(split)
        return self.ecg_ids[mask], self.y[mask]

    def counts(self) -> dict[str, int]:
        return {s: int(self.split_mask(s).sum()) for s in ("train", "val", "test")}

    def require_splits(self, *splits: str) -> None:
        """Raise a :class:`BenchError` naming every empty split among ``splits``."""
        empty = [s for s in splits if not self.split_mask(s).any()]
        if empty:
            what = ", ".join(f"{s} (folds {list(self.task.split_folds(s))})" for s in empty)
            raise BenchError(
                f"task {self.task.name} on {self.dataset_name}: no labelled records in the "
                f"{what} split{'s' if len(empty) > 1 else ''}",
                hint="every split needs records: check strat_fold in ptbxl_database.csv, or "
                "use a larger subset of PTB-XL",
            )


@dataclass(frozen=True)
class TaskSpec:
    """A PTB-XL multi-label task.

    Attributes:
        name: registry name (``superdiagnostic``, ``all_statements`` ...).
        level: label level, one of :data:`LEVELS`.
        description: one line for ``bench tasks``.
        min_samples: keep labels occurring more than this many times (benchmark: 0).
        likelihood_threshold: non-benchmark option, see :func:`record_labels`.
        metric: primary metric (macro AUROC on the test fold).
    """

    name: str
    level: str
    description: str
    min_samples: int = 0
    likelihood_threshold: float | None = None
    train_folds: tuple[int, ...] = TRAIN_FOLDS
    val_folds: tuple[int, ...] = VAL_FOLDS
    test_folds: tuple[int, ...] = TEST_FOLDS
    metric: str = "macro_auroc"
    protocols: tuple[str, ...] = field(default=("linear", "attentive", "finetune"))

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"task {self.name}: unknown level {self.level!r}")
        if set(self.test_folds) & (set(self.train_folds) | set(self.val_folds)):
            raise ValueError(f"task {self.name}: the test folds overlap training or validation")

    def split_folds(self, split: str) -> tuple[int, ...]:
        try:
            return {"train": self.train_folds, "val": self.val_folds, "test": self.test_folds}[
                split
            ]
        except KeyError:
            raise BenchError(
                f"unknown split {split!r}", hint="valid splits: train, val, test"
            ) from None

    def build(self, dataset) -> TaskData:
        """Labels and folds of this task on ``dataset`` (a :class:`bench.data.ptbxl.PTBXL`)."""
        meta = dataset.metadata
        mapping = code_to_labels(dataset.statements, self.level)
        per_record = [
            record_labels(codes, mapping, self.likelihood_threshold) for codes in meta["scp_codes"]
        ]
        counts = Counter(label for labels in per_record for label in labels)
        classes = tuple(sorted(label for label, n in counts.items() if n > self.min_samples))
        kept = set(classes)
        index = {c: j for j, c in enumerate(classes)}
        rows, ids, folds = [], [], []
        for ecg_id, fold, labels in zip(meta.index, meta["strat_fold"], per_record, strict=True):
            labels = labels & kept
            if not labels:  # records left with no label are dropped (benchmark definition)
                continue
            row = np.zeros(len(classes), dtype=np.uint8)
            row[[index[c] for c in labels]] = 1
            rows.append(row)
            ids.append(int(ecg_id))
            folds.append(int(fold))
        if not rows:
            raise BenchError(
                f"task {self.name}: no record of {dataset.name} has a {self.level} label"
            )
        order = np.argsort(ids)
        return TaskData(
            task=self,
            dataset_name=dataset.name,
            ecg_ids=np.asarray(ids, dtype=np.int64)[order],
            y=np.stack(rows)[order],
            classes=classes,
            folds=np.asarray(folds, dtype=np.int64)[order],
        )


TASKS: Registry[TaskSpec] = Registry(
    "task", builtin_module="tasks", entry_point_group="ecg_bench.tasks"
)


def register_task(spec: TaskSpec) -> TaskSpec:
    """Register a task spec under its name (duplicate names are errors)."""
    TASKS.register(spec.name, spec)
    return spec


def resolve_tasks(selection: str) -> list[TaskSpec]:
    """``"all"`` -> the four benchmark tasks; otherwise a comma-separated list of names."""
    names = (
        list(BENCHMARK_TASKS)
        if selection.strip() == "all"
        else [s.strip() for s in selection.split(",") if s.strip()]
    )
    if not names:
        raise BenchError("no task given", hint=f"valid tasks: all, {', '.join(TASKS.names())}")
    return [TASKS.get(n) for n in dict.fromkeys(names)]
