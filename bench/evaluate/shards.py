"""``bench run --shard K/N``: the K-th of N disjoint parts of a benchmark grid, for job arrays.

N jobs started with the same arguments (and ``--shard 1/N`` ... ``N/N``) on one shared results
directory together write exactly the records of one uninterrupted run: the parts are a pure
function of the arguments and the dataset (never of what is already on disk, so jobs that start
at different times agree), disjoint, and cover the grid.

The unit of work is a **subject** with everything it evaluates, so a pre-training is never split
across jobs (a job that evaluated a subject pre-trained elsewhere would have to wait for it).
Reference rows have no pre-training: each of their (task, protocol) pairs is a unit of its own,
which lets the cheap rows fill the gaps. Units go to the least-loaded shard, largest first
(LPT scheduling: the busiest shard carries at most the mean plus one unit).

Costs are estimated in *encoder sample passes* (a forward pass of one sample = 1, a backward
pass = 2 more), from the plan alone:

* pre-training: ``3 x steps x batch`` (a budgeted run: its steps from the counted FLOPs);
* linear probe: ``train records x fraction x train_crops`` (features encoded once);
* attentive probe: ``train records x fraction x epochs`` (tokens re-encoded every epoch);
* fine-tuning: ``3 x train records x fraction x epochs``; every seed once.

Early stopping, validation passes and method-specific multipliers (two views, EMA targets) are
left out: the estimate only has to balance, not predict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bench.errors import BenchError

# One evaluation of the grid: (subject name, budget or None, task name, protocol).
Item = tuple[str, float | None, str, str]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; ``None`` stays ``None``."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise BenchError(
            f"--shard {text!r} is not K/N",
            hint="e.g. --shard 2/8 runs the second of 8 parts (K from 1 to N); in a SLURM job "
            "array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=1-8",
        )
    k, n = int(match.group(1)), int(match.group(2))
    if not 1 <= k <= n:
        raise BenchError(
            f"--shard {k}/{n}: K must be between 1 and N",
            hint=f"the {n} parts are --shard 1/{n} ... {n}/{n}",
        )
    return k, n


@dataclass
class Unit:
    """Work that stays in one shard: a subject's pre-training (if any) and ``items``."""

    name: str
    budget: float | None
    items: list[Item]
    cost: float
    order: int  # position in the plan: ties are broken by it, so every job agrees
    pretrains: bool = False

    def describe(self) -> str:
        label = self.name + (f" @ {self.budget:.0e} FLOPs" if self.budget else "")
        if self.pretrains:
            return f"{label} (pre-training + {len(self.items)} evaluations)"
        tasks = ", ".join(f"{task} {protocol}" for _, _, task, protocol in self.items)
        return f"{label} {tasks}"


@dataclass
class Shard:
    index: int  # 1-based
    count: int
    units: list[Unit] = field(default_factory=list)
    cost: float = 0.0

    def items(self) -> set[Item]:
        return {item for unit in self.units for item in unit.items}

    def subjects(self) -> set[tuple[str, float | None]]:
        return {(unit.name, unit.budget) for unit in self.units}


def evaluation_cost(protocol: str, train_records: int, fraction: float, eval_cfg) -> float:
    """Encoder sample passes of one evaluation (one seed)."""
    n = max(1, round(train_records * fraction))
    if protocol == "linear":
        return n * eval_cfg.linear.train_crops
    if protocol == "attentive":
        return n * eval_cfg.attentive.epochs
    return 3 * n * eval_cfg.finetune.epochs


def pretraining_cost(name: str, plan, budget: float | None) -> float:
    """``3 x steps x batch`` of the subject's pre-training (0 for a reference row)."""
    from bench.evaluate.subjects import REFERENCES, subject_config

    if name in REFERENCES:
        return 0.0
    cfg = subject_config(name, plan.preset, plan.overrides, plan.encoder)
    if budget is not None:
        from bench.budget import budgeted_config

        cfg, _ = budgeted_config(name, cfg, budget)
    return 3.0 * cfg.optim.steps * cfg.optim.batch_size


def grid_units(plan, task_data, eval_cfg) -> list[Unit]:
    """The plan's grid as units of work, in plan order (see the module docstring)."""
    from bench.evaluate.run import budgets_of
    from bench.evaluate.subjects import REFERENCE_PROTOCOLS, REFERENCES

    units: list[Unit] = []
    for name, budget in [(n, b) for n in plan.methods for b in budgets_of(n, plan)]:
        protocols = [p for p in plan.protocols if p in REFERENCE_PROTOCOLS.get(name, (p,))]
        pieces: list[tuple[list[Item], float]] = []
        for td in task_data:
            train = td.counts()["train"]
            for protocol in protocols:
                cost = plan.seeds * sum(
                    evaluation_cost(protocol, train, f, eval_cfg) for f in plan.fractions
                )
                pieces.append(([(name, budget, td.task.name, protocol)], cost))
        if name in REFERENCES:  # nothing to pre-train: every (task, protocol) stands alone
            units += [Unit(name, budget, items, cost, len(units)) for items, cost in pieces]
        else:
            items = [item for part, _ in pieces for item in part]
            cost = pretraining_cost(name, plan, budget) + sum(c for _, c in pieces)
            units.append(Unit(name, budget, items, cost, len(units), pretrains=True))
    return units


def assign_shards(units: list[Unit], count: int) -> list[Shard]:
    """Largest unit first to the least-loaded shard (ties: plan order, lowest shard)."""
    shards = [Shard(i + 1, count) for i in range(count)]
    for unit in sorted(units, key=lambda u: (-u.cost, u.order)):
        target = min(shards, key=lambda s: (s.cost, s.index))
        target.units.append(unit)
        target.cost += unit.cost
    for shard in shards:
        shard.units.sort(key=lambda u: u.order)
    return shards


def shard_of(plan, task_data, eval_cfg) -> tuple[Shard, float]:
    """This job's shard (``plan.shard``) and the estimated cost of the whole grid."""
    k, n = plan.shard
    units = grid_units(plan, task_data, eval_cfg)
    shards = assign_shards(units, n)
    return shards[k - 1], sum(u.cost for u in units)


def describe_shard(shard: Shard, total: float) -> list[str]:
    share = 100.0 * shard.cost / total if total else 0.0
    if not shard.units:
        return [
            f"shard {shard.index}/{shard.count}: no work (the grid has fewer units than shards: "
            "a pre-training is never split); the other shards write every record"
        ]
    head = (
        f"shard {shard.index}/{shard.count}: {len(shard.items())} evaluations, "
        f"~{share:.0f} % of the grid's estimated work"
    )
    return [head] + [f"  {unit.describe()}" for unit in shard.units]
