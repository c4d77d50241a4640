"""``bench run``: pre-train (or reuse), evaluate every task x protocol x fraction x seed, update
the leaderboard, print a summary. Finished records are skipped, so a killed run continues where
it stopped and never duplicates anything."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.errors import BenchError
from bench.evaluate.config import check_protocol, resolve_eval_config
from bench.evaluate.metrics import ci_notation
from bench.task import TaskSpec


@dataclass(frozen=True)
class RunPlan:
    """Everything ``bench run`` was asked to do (logged as the parent run's parameters)."""

    methods: tuple[str, ...]
    tasks: tuple[TaskSpec, ...]
    protocols: tuple[str, ...] = ("linear", "finetune")
    seeds: int = 1
    fractions: tuple[float, ...] = (1.0,)
    preset: str = "cpu"
    encoder: str | None = None
    overrides: tuple[str, ...] = ()
    eval_overrides: tuple[str, ...] = ()
    tuned: bool = False
    # training FLOPs per SSL run (bench.budget); () = the preset's steps
    budgets: tuple[float, ...] = ()
    shard: tuple[int, int] | None = None  # (K, N): the K-th of N parts (bench.evaluate.shards)

    def __post_init__(self) -> None:
        for p in self.protocols:
            check_protocol(p)
        if self.budgets:
            from bench.budget import check_no_schedule_overrides

            check_no_schedule_overrides(self.overrides)
        if self.seeds < 1:
            raise BenchError("--seeds must be at least 1")
        for f in self.fractions:
            if not 0 < f <= 1:
                raise BenchError(f"label fraction {f} is not in (0, 1]", hint="e.g. 0.01,0.1,1")

    def describe(self) -> dict:
        d = dataclasses.asdict(self)
        d["tasks"] = [t.name for t in self.tasks]
        return d


def budgets_of(name: str, plan: RunPlan) -> tuple[float | None, ...]:
    """The pre-training budgets ``name`` runs at: each of the plan's for an SSL method; one
    ``None`` (no budget) for a reference row or a plan without budgets."""
    from bench.evaluate.subjects import REFERENCES

    return (None,) if name in REFERENCES or not plan.budgets else plan.budgets


def prepare_subject(
    name, plan: RunPlan, dataset, engine, echo: Callable[[str], None], budget: float | None = None
):
    """The subject for ``name`` (pre-training it first when needed, to ``budget`` training
    FLOPs if given) and its cache."""
    from bench.data.cache import prepare_cache
    from bench.evaluate.subjects import (
        REFERENCES,
        pretrained_subject,
        reference_subject,
        subject_config,
    )
    from bench.train import load_checkpoint, pretrain

    cfg = subject_config(name, plan.preset, plan.overrides, plan.encoder)
    cache = prepare_cache(dataset, cfg.data.rate, progress=engine.progress)
    if name in REFERENCES:
        return reference_subject(name, cfg, dataset, cache), cache
    if budget is not None:
        from bench.budget import budgeted_config

        cfg, planned = budgeted_config(name, cfg, budget)
        echo(f"{name}: {planned.describe()}")
    result = pretrain(name, cfg, dataset, cache, engine)
    if result.reused:
        echo(f"{name}: reusing the finished pre-training run {result.run_dir.name}")
    else:
        echo(
            f"{name}: pre-trained {result.steps} steps in {result.wall_seconds:.0f} s "
            f"({result.samples_per_second:.1f} samples/s) -> {result.run_dir.name}"
        )
    subject = pretrained_subject(name, result, load_checkpoint(result.final_checkpoint))
    if budget is not None:
        subject.pretrain["budget_flops"] = budget
    return subject, cache


def run_benchmark(
    plan: RunPlan, dataset, engine, echo: Callable[[str], None] = print, storage: str | None = None
) -> list[dict]:
    """Run ``plan`` on ``dataset``; returns the records (new and reused) in plan order.
    ``storage``: the Optuna storage URL ``plan.tuned`` reads (default: :func:`storage_url`)."""
    from bench.evaluate.runner import Evaluator
    from bench.report.build import write_report
    from bench.results import RecordStore
    from bench.tracking import start_run
    from bench.train import resolve_device, with_resolved_precision

    engine = with_resolved_precision(engine, echo)  # one choice for pre-training and evaluation
    eval_cfg = resolve_eval_config(plan.preset, plan.eval_overrides)
    device = resolve_device(engine.device)
    store = RecordStore()
    store.remove_stale_temporaries()
    task_data = [spec.build(dataset) for spec in plan.tasks]
    for td in task_data:  # before any training: an empty split cannot be evaluated
        td.require_splits("train", "val", "test")
    subjects = [(n, b) for n in plan.methods for b in budgets_of(n, plan)]
    mine = None  # the (subject, budget, task, protocol) items of this shard; None: all
    if plan.shard is not None:
        from bench.evaluate.shards import describe_shard, shard_of

        shard, total = shard_of(plan, task_data, eval_cfg)
        for line in describe_shard(shard, total):
            echo(line)
        mine = shard.items()
        subjects = [s for s in subjects if s in shard.subjects()]
    records: list[dict] = []
    started = time.perf_counter()
    fresh_count = 0

    def tracking(name: str):
        return start_run(
            name, enabled=engine.mlflow, uri=engine.tracking_uri, nested=True,
            tags={"kind": "evaluation", "dataset": dataset.name},
        )  # fmt: skip

    shard_label = f" [shard {plan.shard[0]}/{plan.shard[1]}]" if plan.shard else ""
    with start_run(
        f"bench run {','.join(plan.methods)}{shard_label}",
        enabled=engine.mlflow,
        uri=engine.tracking_uri,
        tags={"kind": "bench-run", "dataset": dataset.name, "synthetic": dataset.is_synthetic},
    ) as parent:
        parent.log_params(
            {
                "plan": plan.describe(),
                "dataset": dataset.name,
                "precision": engine.precision,
                "precision_reason": engine.precision_reason,
            }
        )
        for name, budget in subjects:
            subject, cache = prepare_subject(name, plan, dataset, engine, echo, budget)
            evaluator = Evaluator(
                subject,
                dataset,
                cache,
                eval_cfg,
                device,
                engine.precision,
                store,
                precision_reason=engine.precision_reason,
            )
            for td in task_data:
                for protocol in plan.protocols:
                    if protocol not in subject.protocols:
                        continue
                    if mine is not None and (name, budget, td.task.name, protocol) not in mine:
                        continue
                    cfg, tuned = eval_cfg, None
                    if plan.tuned:
                        from bench.tuning import tuned_eval_config

                        cfg, tuned = tuned_eval_config(
                            eval_cfg, subject.run_id, td.task.name, protocol, storage
                        )
                    for fraction in plan.fractions:
                        for seed in range(plan.seeds):
                            record, fresh = evaluator.evaluate(
                                td, protocol, seed, fraction, tracking=tracking,
                                eval_cfg=cfg, tuned=tuned,
                            )  # fmt: skip
                            fresh_count += fresh
                            records.append(record)
                            echo(_line(record, fresh))
            if evaluator.computed_health is not None:  # said once per subject, when computed
                from bench.health import health_line

                echo(f"{name} pre-training health: {health_line(evaluator.computed_health)}")
        # Reports take turns and read the records inside the lock: of jobs sharing a results
        # directory (shards of a job array), the last to report sees every record.
        from filelock import FileLock

        store.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store.root.parent / ".report.lock")):
            written = write_report(store.records())
        parent.log_metrics({"records": len(records), "new_records": fresh_count})
        for directory in written:
            for path in sorted(directory.glob("leaderboard.*")):
                parent.log_artifact(path, f"leaderboard/{directory.name}")
    skipped = [n for n in plan.methods for p in plan.protocols if not _takes_part(n, p)]
    if skipped:
        echo("note: reference rows take part only in their protocols: random (linear, attentive), "
             "supervised (finetune)")  # fmt: skip
    echo(
        f"{len(records)} records ({fresh_count} new, {len(records) - fresh_count} already done) "
        f"in {time.perf_counter() - started:.0f} s; leaderboard: "
        + ", ".join(str(d) for d in written)
    )
    return records


def _takes_part(name: str, protocol: str) -> bool:
    from bench.evaluate.subjects import REFERENCE_PROTOCOLS

    return protocol in REFERENCE_PROTOCOLS.get(name, (protocol,))


def _line(record: dict, fresh: bool) -> str:
    lo, hi = record["test_macro_auroc_ci"]
    status = "" if fresh else "  (done earlier, skipped)"
    return (
        f"{record['method']:>10s} {record['task']:>16s} {record['protocol']:>9s} "
        f"frac {record['label_fraction']:g} seed {record['seed']}: test macro AUROC "
        f"{ci_notation(record['test_macro_auroc'], lo, hi)}  (val {record['selection']['val_macro_auroc']:.3f}, "
        f"best epoch {record['selection']['best_epoch']}){status}"
    )


def summary_table(records: list[dict]) -> str:
    """Test macro AUROC ``0.925(08)`` (± sd over seeds), rows method x protocol, columns tasks."""
    from bench.report.tables import leaderboard_frame

    table = leaderboard_frame(records)
    if table.empty:
        return "(no records)"
    tasks = list(dict.fromkeys(r["task"] for r in records))
    head = f"{'method':>22s} {'protocol':>9s} {'frac':>5s}" + "".join(f" {t:>18s}" for t in tasks)
    lines = [head, "-" * len(head)]
    table = table.assign(budget=table["budget_flops"].fillna(0.0))  # 0: the preset's steps
    keys = ["method", "encoder", "budget", "protocol", "label_fraction"]
    methods = list(dict.fromkeys(r["method"] for r in records))
    protocols = ("linear", "attentive", "finetune")
    groups = sorted(
        table.groupby(keys),
        key=lambda g: (methods.index(g[0][0]), g[0][1], g[0][2], protocols.index(g[0][3]), g[0][4]),
    )
    for (method, encoder, budget, protocol, fraction), part in groups:
        cells = []
        for task in tasks:
            hit = part[part.task == task]
            cells.append(hit["notation"].iloc[0] if len(hit) else "-")
        label = f"{method} ({encoder})" + (f" @{budget:.0e}" if budget else "")
        lines.append(
            f"{label:>22s} {protocol:>9s} {fraction:>5g}" + "".join(f" {c:>18s}" for c in cells)
        )
    return "\n".join(lines)
