"""``bench reproduce RECORD``: re-run one run record's exact evaluation and compare.

A run record (:mod:`bench.results`) carries everything its evaluation depended on: the resolved
method config, the protocol's settings (``config.eval``, hashed into the record key), task,
protocol, seed, label fraction, precision, device, the dataset fingerprint and the pre-training
run. :func:`reproduce` rebuilds the subject and the evaluator from those fields alone, runs the
same :meth:`bench.evaluate.runner.Evaluator.evaluate` that ``bench run`` runs into a temporary
results directory (the original record, its predictions, features and pre-training run are only
read), and compares the two records: test macro AUROC / AP and their CI, per-label test AUROC,
validation AUROC, best epoch, epochs run and, from the ``.npz``, the records, labels, scores and
window logits. Environment differences (git commit, package versions, device, threads,
precision) are reported as notes: they explain differences, they are not differences.

* **SSL records** reuse the record's pre-training checkpoint (``<results>/pretrain/<run
  id>/final.pt`` beside the record's store, else the recorded path); with ``pretrain=True`` the
  pre-training is re-run from the recorded config too (into the temporary directory) and its
  weights are compared with the original checkpoint, so the whole chain is checked.
* **Reference rows** (``random`` / ``supervised``) rebuild their encoder from their config and
  seed, as ``bench run`` does.
* The data used now must have the record's fingerprint, a hash of the content of the metadata
  tables and of every record file (:mod:`bench.data.identity`): a byte-identical copy anywhere
  reproduces, other data is refused before anything runs. A record that predates content
  identity (its fingerprint hashed file mtimes, ``fingerprint_kind`` absent) is accepted on the
  untouched files whose mtimes still match; elsewhere it is refused unless
  ``unchecked_data=True`` (``--unchecked-data``), which runs it anyway and reports every
  difference.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.paths import RESULTS_ENV
from bench.results import RecordKey, RecordStore, safe_name

# (name in the report, path into the record) of the scalar metrics compared.
_SCALARS = (
    ("test macro AUROC", ("metrics", "test", "macro_auroc")),
    ("test macro AP", ("metrics", "test", "macro_ap")),
    ("test macro AUROC CI low", ("metrics", "test", "ci", "macro_auroc", 0)),
    ("test macro AUROC CI high", ("metrics", "test", "ci", "macro_auroc", 1)),
    ("val macro AUROC", ("selection", "val_macro_auroc")),
)
# Compared exactly, whatever the tolerance.
_EXACT = (
    ("best epoch", ("selection", "best_epoch")),
    ("epochs run", ("selection", "epochs_run")),
    ("classes", ("classes",)),
    ("counts", ("counts",)),
)
_ARRAYS_EXACT = ("val_ecg_ids", "val_y", "test_ecg_ids", "test_y")
_ARRAYS_CLOSE = (
    ("test scores", "test_scores"),
    ("val scores", "val_scores"),
    ("test window logits", "test_window_logits"),
)


@dataclass
class Row:
    """One compared quantity: recorded and current value, absolute difference, within tolerance."""

    what: str
    recorded: Any
    now: Any
    diff: float | None
    ok: bool


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce`.

    Attributes:
        record_path: the original record's JSON.
        original, new: the original and the re-computed record.
        rows: every compared quantity.
        notes: environment and provenance differences (explanations, not failures).
        pretrain: what happened to the pre-training (reused checkpoint or re-run and compared).
        workdir: the temporary results directory (None once removed).
        tolerance: the largest absolute difference accepted.
    """

    record_path: Path
    original: dict
    new: dict
    rows: list[Row]
    notes: list[str]
    pretrain: str
    workdir: Path | None
    tolerance: float
    extra_differences: list[str] = field(default_factory=list)
    data: str = ""  # how the data was checked against the record's fingerprint

    @property
    def differences(self) -> list[str]:
        """One line per quantity beyond the tolerance (empty: reproduced)."""
        out = list(self.extra_differences)
        for row in self.rows:
            if not row.ok:
                diff = "" if row.diff is None else f" (|diff| {row.diff:.3g})"
                out.append(
                    f"{row.what}: recorded {_show(row.recorded)}, now {_show(row.now)}{diff}"
                )
        return out

    @property
    def identical(self) -> bool:
        """Every quantity exactly equal (not just within tolerance)."""
        return not self.differences and all(r.diff in (None, 0.0) for r in self.rows)

    @property
    def max_score_diff(self) -> float | None:
        return next((r.diff for r in self.rows if r.what == "test scores"), None)


# --------------------------------------------------------------------------- reading a record
def read_record(path: Path | str) -> tuple[dict, dict[str, np.ndarray], RecordKey, Path]:
    """A complete record at ``path`` (its JSON), its arrays, its key and its results directory.

    The record is read through :class:`RecordStore` (complete, npz of the recorded size, no
    pickle), so ``path`` must sit at its key's place in a store:
    ``<results>/records/<run id>/<task>/<protocol>-<hash>/frac<F>-seed<S>.json``.
    """
    path = Path(path).expanduser().resolve()
    if path.suffix != ".json" or not path.is_file():
        raise BenchError(
            f"no run record at {path}",
            hint="pass a record's .json, e.g. results/records/<run id>/<task>/<protocol>-<hash>/frac1-seed0.json",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        key = RecordKey(**raw["key"])
    except BenchError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(
            f"{path} is not a run record ({exc.__class__.__name__}: {exc})",
            hint="pass a record written by `bench run`",
        ) from None
    if len(path.parents) < 5:
        raise BenchError(f"{path} is not inside a record store")
    store = RecordStore(path.parents[3])
    if store.json_path(key) != path:
        raise BenchError(
            f"{path} is not where its key puts it ({store.json_path(key)})",
            hint="reproduce a record in place, inside its results directory's records/",
        )
    record = store.read(key)
    arrays = store.read_arrays(key)
    for name in ("method", "kind", "task", "protocol", "config", "dataset", "precision"):
        if name not in record:
            raise BenchError(f"record {path} has no {name!r} field: it cannot be reproduced")
    return record, arrays, key, path.parents[4]


# --------------------------------------------------------------------------- re-running
def reproduce(
    path: Path | str,
    dataset,
    *,
    pretrain: bool = False,
    tolerance: float = 0.0,
    device: str | None = None,
    workers: int = 2,
    keep: bool = False,
    progress: bool = False,
    unchecked_data: bool = False,
    echo: Callable[[str], None] = lambda m: None,
) -> Reproduction:
    """Re-run the evaluation of the record at ``path`` with its exact configuration.

    Args:
        dataset: the :class:`bench.data.ptbxl.PTBXL` to use; its fingerprint at the record's
            rate must equal the record's.
        pretrain: re-run the pre-training of an SSL record too (else reuse its checkpoint).
        tolerance: absolute difference accepted on every compared number.
        device: where to run (default: the record's device, else the CPU).
        workers: DataLoader workers of a re-run pre-training.
        keep: keep the temporary results directory (its path is in the result).
        unchecked_data: run a record that predates content identity on ``dataset`` even when
            its old (mtime) fingerprint cannot confirm the data; differences are reported.
        echo: progress messages.
    """
    from bench.config import config_hash, from_dict
    from bench.data.cache import prepare_cache
    from bench.evaluate.config import EvalConfig, check_protocol
    from bench.evaluate.runner import Evaluator
    from bench.evaluate.subjects import REFERENCES, ReferenceConfig, reference_subject
    from bench.method import METHODS
    from bench.task import TASKS

    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise BenchError(f"tolerance {tolerance!r} must be a number >= 0")
    record, arrays, key, results_root = read_record(path)
    name, protocol = record["method"], check_protocol(record["protocol"])

    # -- the data: refuse before any work when it is not the data the record used
    rate = int(record["dataset"]["rate"])
    data_line, legacy = check_data(record, dataset, rate, unchecked_data, progress)
    notes: list[str] = []
    if legacy:
        notes.append(
            "the record predates content identity: its run id and data fingerprint were computed "
            "from file mtimes, so ids differ now by design"
        )
    cache = prepare_cache(dataset, rate, progress=progress)

    # -- the configs, rebuilt from the record and checked against its hashes
    cfg_cls = ReferenceConfig if name in REFERENCES else METHODS.get(name).Config
    cfg = from_dict(cfg_cls, record["config"]["method"])
    if config_hash(cfg) != record["config"]["method_hash"]:
        raise BenchError(
            f"the record's method config no longer rebuilds to its hash "
            f"{record['config']['method_hash']} (the config fields of {name} changed since)",
            hint="reproduce it with the harness version of the record's git commit",
        )
    view = {k: v for k, v in record["config"]["eval"].items() if k != "protocol"}
    eval_cfg = from_dict(EvalConfig, view)
    spec = TASKS.get(record["task"])

    device_name = device or _recorded_device(record, echo)
    from bench.train import resolve_device

    torch_device = resolve_device(device_name)
    workdir = Path(tempfile.mkdtemp(prefix="bench-reproduce-"))
    extra: list[str] = []
    # A record from before content identity has run ids keyed by the old fingerprint: a new id
    # is expected there, a note rather than a difference.
    ids_differ = notes if legacy else extra
    try:
        with _results_dir(workdir):
            if name in REFERENCES:
                if pretrain:
                    notes.append(f"{name} is a reference row: there is no pre-training to re-run")
                subject = reference_subject(name, cfg, dataset, cache)
                pretrain_line = f"none ({name} reference row, encoder rebuilt from seed {cfg.seed})"
            else:
                subject, pretrain_line, more = _ssl_subject(
                    name, cfg, record, results_root, dataset, cache, pretrain, device_name,
                    workers, progress, workdir, echo,
                )  # fmt: skip
                for line in more:
                    (ids_differ if line.startswith("pre-training run id") else extra).append(line)
            if subject.run_id != key.run_id:
                ids_differ.append(f"run id: recorded {key.run_id}, now {subject.run_id}")
            store = RecordStore(workdir / "records")
            evaluator = Evaluator(
                subject, dataset, cache, eval_cfg, torch_device, record["precision"], store
            )
            td = spec.build(dataset)
            now_key = evaluator.record_key(td, protocol, key.seed, key.label_fraction, eval_cfg)
            if now_key.eval_hash != key.eval_hash:
                raise BenchError(
                    f"the record's protocol settings no longer rebuild to its eval hash "
                    f"{key.eval_hash} (now {now_key.eval_hash})",
                    hint="reproduce it with the harness version of the record's git commit",
                )
            echo(f"re-running {name} {td.task.name} {protocol} frac {key.label_fraction:g} "
                 f"seed {key.seed} on {torch_device} ({record['precision']}) in {workdir}")  # fmt: skip
            new, _ = evaluator.evaluate(
                td, protocol, key.seed, key.label_fraction,
                eval_cfg=eval_cfg, tuned=record.get("tuned"),
            )  # fmt: skip
            new_arrays = store.read_arrays(now_key)
    except BaseException:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    rows = compare(record, arrays, new, new_arrays, tolerance)
    notes += environment_notes(record, new)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return Reproduction(
        record_path=Path(path).expanduser().resolve(),
        original=record,
        new=new,
        rows=rows,
        notes=notes,
        pretrain=pretrain_line,
        workdir=workdir if keep else None,
        tolerance=float(tolerance),
        extra_differences=extra,
        data=data_line,
    )


def check_data(
    record: dict, dataset, rate: int, unchecked: bool = False, progress: bool = False
) -> tuple[str, bool]:
    """Check ``dataset`` against the record's data fingerprint before anything runs.

    Returns the report's line on the data and whether the record predates content identity.

    Raises:
        BenchError: other data (a content fingerprint that differs); or a record from before
            content identity whose mtime fingerprint does not match, unless ``unchecked``.
    """
    from bench.data.cache import legacy_source_fingerprint, source_fingerprint, source_rate_for
    from bench.data.identity import CONTENT_KIND, fingerprint_kind

    recorded = str(record["dataset"]["fingerprint"])
    source_rate = source_rate_for(dataset, rate)
    now = source_fingerprint(dataset, source_rate, progress=progress)
    what = f"the dataset {dataset.name} at {dataset.root}"
    if fingerprint_kind(record["dataset"]) == CONTENT_KIND:
        if now != recorded:
            raise BenchError(
                f"{what} is not the data the record used: its fingerprint at {rate} Hz is "
                f"{now[:12]}..., the record's is {recorded[:12]}... "
                f"({record['dataset'].get('name')})",
                hint="pass --data-dir pointing at the dataset the record was computed on (the "
                "fingerprint hashes the content of the metadata CSVs and of every record file: "
                "any byte-identical copy matches, wherever it lies)",
            )
        return f"fingerprint {recorded[:12]}... matches (content SHA-256)", False
    # A record written before content identity: its fingerprint hashed each record file's size
    # and mtime. The untouched files it was computed on still match that; a copy does not.
    if legacy_source_fingerprint(dataset, source_rate) == recorded:
        return (
            f"fingerprint {recorded[:12]}... (file mtimes: the record predates content "
            f"identity) matches the files as they are; content fingerprint now {now[:12]}...",
            True,
        )
    if not unchecked:
        raise BenchError(
            f"the record predates content identity: its data fingerprint {recorded[:12]}... "
            f"hashed each record file's size and mtime, and {what} does not match it (a copy, "
            "re-download or checkout has other mtimes), so whether it is the same data cannot "
            "be checked",
            hint="pass --unchecked-data to run it on this dataset anyway and report every "
            "difference, or reproduce it on the untouched files it was computed on",
        )
    return (
        f"NOT CHECKED (--unchecked-data): the record predates content identity, its fingerprint "
        f"{recorded[:12]}... (file mtimes) does not match; content fingerprint now {now[:12]}...",
        True,
    )


def _recorded_device(record: dict, echo) -> str:
    """The record's device if it is available now, else the CPU."""
    import torch

    recorded = str((record.get("environment") or {}).get("device") or "cpu")
    if recorded.startswith("cuda") and not torch.cuda.is_available():
        echo(f"note: the record ran on {recorded}, CUDA is not available: reproducing on the CPU")
        return "cpu"
    return recorded


@contextlib.contextmanager
def _results_dir(path: Path):
    """Point the harness's results directory (features, pre-training runs) at ``path``."""
    before = os.environ.get(RESULTS_ENV)
    os.environ[RESULTS_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RESULTS_ENV, None)
        else:
            os.environ[RESULTS_ENV] = before


def _ssl_subject(name, cfg, record, results_root: Path, dataset, cache, pretrain, device, workers,
                 progress, workdir: Path, echo):  # fmt: skip
    """The subject of an SSL record: its checkpoint reused, or its pre-training re-run."""
    from bench.config import config_hash, from_dict
    from bench.evaluate.subjects import pretrained_subject
    from bench.method import METHODS
    from bench.train import EngineConfig, PretrainResult, load_checkpoint
    from bench.train import pretrain as run_pretraining

    info = record.get("pretrain") or {}
    run_id = safe_name(str(info.get("run_id") or record["key"]["run_id"]), "run id")
    candidates = [results_root / "pretrain" / run_id / "final.pt"]
    if info.get("checkpoint"):
        candidates.append(Path(info["checkpoint"]))
    original = next((p for p in candidates if p.is_file()), None)
    differences: list[str] = []

    if not pretrain:
        if original is None:
            raise BenchError(
                f"the pre-training checkpoint of {run_id} is gone (looked for "
                + ", ".join(str(p) for p in candidates)
                + ")",
                hint="pass --pretrain to re-run the pre-training from the record's config as well",
            )
        state = load_checkpoint(original)
        if state.get("run") != run_id or config_hash(
            from_dict(METHODS.get(name).Config, state["config"])
        ) != config_hash(cfg):
            raise BenchError(
                f"checkpoint {original} is not the pre-training of this record (run "
                f"{state.get('run')!r}, expected {run_id!r} with the recorded config)",
                hint="pass --pretrain to re-run the pre-training from the record's config",
            )
        steps = int(state["step"])
        result = PretrainResult(original.parent, original, steps, list(state["losses"]), 0.0, 0.0,
                                steps, reused=True)  # fmt: skip
        return pretrained_subject(name, result, state), f"reused checkpoint {original}", differences

    precision = info.get("precision") or record["precision"]
    engine = EngineConfig(device=device, precision=precision, workers=workers, mlflow=False,
                          progress=progress)  # fmt: skip
    echo(f"re-running the pre-training of {run_id} ({cfg.optim.steps} steps, {precision})")
    result = run_pretraining(name, cfg, dataset, cache, engine, runs_root=workdir / "pretrain")
    state = load_checkpoint(result.final_checkpoint)
    line = f"re-run into {result.run_dir}"
    if result.run_dir.name != run_id:
        differences.append(
            f"pre-training run id: recorded {run_id}, now {result.run_dir.name} (config, "
            "precision or data differ)"
        )
    if original is None:
        line += "; the original checkpoint is gone, weights not compared"
    else:
        old = load_checkpoint(original)["model"]
        diff = _max_state_diff(old, state["model"])
        if diff is None:
            differences.append(f"pre-trained weights: {original} has other parameters")
        elif diff > 0:
            differences.append(f"pre-trained weights: max |diff| {diff:.3g} vs {original}")
        line += f"; weights vs {original}: " + (
            "identical" if diff == 0 else f"max |diff| {diff:.3g}" if diff is not None else "differ"
        )
    return pretrained_subject(name, result, state), line, differences


def _max_state_diff(a: dict, b: dict) -> float | None:
    """Largest absolute difference between two state dicts (None: other keys or shapes)."""
    if a.keys() != b.keys():
        return None
    worst = 0.0
    for k in a:
        if a[k].shape != b[k].shape:
            return None
        if a[k].numel():
            worst = max(worst, float((a[k].double() - b[k].double()).abs().max()))
    return worst


# --------------------------------------------------------------------------- comparing
def _get(record: dict, path: tuple) -> Any:
    value: Any = record
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _number_row(what: str, a: Any, b: Any, tolerance: float) -> Row:
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return Row(what, a, b, None, a == b)
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return Row(what, a, b, None, math.isnan(a) and math.isnan(b))
    diff = abs(a - b)
    return Row(what, a, b, diff, diff <= tolerance)


def compare(
    original: dict,
    original_arrays: dict[str, np.ndarray],
    new: dict,
    new_arrays: dict[str, np.ndarray],
    tolerance: float = 0.0,
) -> list[Row]:
    """Every compared quantity of two records of the same evaluation.

    Numbers (test macro AUROC / AP and CI, per-label test AUROC, validation AUROC, the maximum
    absolute difference of the scores and window logits) pass within ``tolerance``; the best
    epoch, epochs run, classes, counts, record ids and labels must be equal.
    """
    rows = [_number_row(what, _get(original, p), _get(new, p), tolerance) for what, p in _SCALARS]
    old_labels = _get(original, ("metrics", "test", "per_label_auroc")) or {}
    new_labels = _get(new, ("metrics", "test", "per_label_auroc")) or {}
    for label in dict.fromkeys([*old_labels, *new_labels]):
        rows.append(
            _number_row(
                f"test AUROC {label}", old_labels.get(label), new_labels.get(label), tolerance
            )
        )
    for what, p in _EXACT:
        a, b = _get(original, p), _get(new, p)
        rows.append(Row(what, a, b, None, a == b))
    for name in _ARRAYS_EXACT:
        a, b = original_arrays.get(name), new_arrays.get(name)
        same = a is not None and b is not None and a.shape == b.shape and np.array_equal(a, b)
        rows.append(Row(f"npz {name}", _shape(a), _shape(b), None, same))
    for what, name in _ARRAYS_CLOSE:
        a, b = original_arrays.get(name), new_arrays.get(name)
        if a is None or b is None or a.shape != b.shape:
            rows.append(Row(f"{what} (npz)", _shape(a), _shape(b), None, False))
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        if not np.array_equal(np.isnan(a64), np.isnan(b64)):
            rows.append(Row(what, "NaN pattern", "other NaN pattern", None, False))
            continue
        finite = ~np.isnan(a64)
        diff = float(np.abs(a64[finite] - b64[finite]).max()) if finite.any() else 0.0
        rows.append(Row(what, _shape(a), _shape(b), diff, diff <= tolerance))
    return rows


def _shape(a: np.ndarray | None) -> str:
    return "missing" if a is None else f"{a.dtype}{list(a.shape)}"


def environment_notes(original: dict, new: dict) -> list[str]:
    """Where the two records' environments differ: git commit, packages, device, precision."""
    old_env, new_env = original.get("environment") or {}, new.get("environment") or {}
    notes = []
    og, ng = old_env.get("git") or {}, new_env.get("git") or {}
    if (og.get("commit"), og.get("dirty")) != (ng.get("commit"), ng.get("dirty")):
        notes.append(f"git commit {_commit(og)} -> {_commit(ng)}")
    old_pk, new_pk = old_env.get("packages") or {}, new_env.get("packages") or {}
    for package in dict.fromkeys([*old_pk, *new_pk]):
        if old_pk.get(package) != new_pk.get(package):
            notes.append(f"{package} {old_pk.get(package)} -> {new_pk.get(package)}")
    for what in ("device", "torch_threads", "python"):
        if old_env.get(what) != new_env.get(what):
            notes.append(f"{what} {old_env.get(what)} -> {new_env.get(what)}")
    if original.get("precision") != new.get("precision"):
        notes.append(f"precision {original.get('precision')} -> {new.get('precision')}")
    return notes


def _commit(git: dict) -> str:
    commit = git.get("commit")
    if not commit:
        return "unknown"
    return commit[:10] + (" (uncommitted changes)" if git.get("dirty") else "")


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_report(rep: Reproduction) -> str:
    """The comparison as printed by ``bench reproduce``."""
    r = rep.original
    kind = "  [SYNTHETIC]" if r["dataset"].get("synthetic") else ""
    lines = [
        f"record:       {rep.record_path}",
        f"evaluation:   {r['method']} ({r.get('encoder')}, {r['kind']}) on {r['task']}, "
        f"{r['protocol']}, label fraction {r['label_fraction']:g}, seed {r['seed']}",
        f"dataset:      {r['dataset'].get('name')}{kind}, "
        + (rep.data or f"fingerprint {str(r['dataset']['fingerprint'])[:12]}... matches"),
        f"pre-training: {rep.pretrain}",
        f"re-run in:    {rep.workdir if rep.workdir else 'a temporary directory (removed; --keep keeps it)'}",
        "",
        f"{'':26s} {'recorded':>18s} {'now':>18s} {'|diff|':>9s}",
    ]
    for row in rep.rows:
        diff = "" if row.diff is None else f"{row.diff:.3g}"
        mark = "" if row.ok else "  <-- differs"
        if isinstance(row.recorded, (dict, list)) and row.ok:
            lines.append(f"{row.what:26s} {'same':>18s} {'same':>18s} {diff:>9s}{mark}")
            continue
        lines.append(
            f"{row.what:26s} {_show(row.recorded):>18s} {_show(row.now):>18s} {diff:>9s}{mark}"
        )
    score = rep.max_score_diff
    lines.append(f"max |test score difference|: {'n/a' if score is None else f'{score:.3g}'}")
    if rep.notes:
        lines.append("notes (environment differences, which can explain differences):")
        lines += [f"  - {n}" for n in rep.notes]
    differences = rep.differences
    if rep.identical:
        lines.append("result: identical (every compared value is exactly equal)")
    elif not differences:
        lines.append(f"result: reproduced within tolerance {rep.tolerance:g} (not bit-identical)")
    else:
        lines.append(
            f"result: DIFFERENT, {len(differences)} difference(s) beyond tolerance {rep.tolerance:g}:"
        )
        lines += [f"  - {d}" for d in differences]
    return "\n".join(lines)
