"""Compute-matched pre-training: a method's step count from a budget of training FLOPs.

``bench run --budget 1e15`` pre-trains every SSL method to the same counted training compute
rather than the same number of steps: the FLOPs of one training step are counted on the method's
real step (:func:`bench.flops.pretrain_step_flops`: forward + backward of every network the
method runs, EMA targets and predictors included), and the run gets as many whole steps of its
configured batch as fit in the budget (never more). The warm-up keeps its share of the schedule
and every other schedule (EMA momentum, weight decay, masking) is a function of the progress
``step / steps``, so a budgeted run is the method's own recipe, compressed or stretched.

``--budget-sweep 1e14,1e15,1e16`` runs each method at each budget; the report draws AUROC
against compute per task (``auroc-vs-budget-<task>``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from bench.config import apply_overrides
from bench.errors import BenchError
from bench.method import MethodConfig

SCHEDULE_KEYS = ("optim.steps", "optim.warmup_steps")  # what a budget sets


@dataclass(frozen=True)
class Budget:
    """How a method spends a FLOP budget: ``steps`` of ``batch_size`` at ``flops_per_sample``
    (``flops`` in all, at most ``budget``)."""

    budget: float
    flops_per_sample: float
    batch_size: int
    steps: int
    warmup_steps: int

    @property
    def flops(self) -> float:
        return self.flops_per_sample * self.batch_size * self.steps

    def describe(self) -> str:
        return (
            f"budget {self.budget:.3g} FLOPs = {self.steps} steps x {self.batch_size} at "
            f"{self.flops_per_sample:.3g} FLOPs/sample ({self.flops:.3g} FLOPs used, warm-up "
            f"{self.warmup_steps})"
        )


def parse_budgets(text: str) -> tuple[float, ...]:
    """``"1e14,1e15"`` -> ``(1e14, 1e15)``: positive, finite, distinct, ascending."""
    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise BenchError(
                f"budget {item!r} is not a number of FLOPs", hint="e.g. --budget 1e15"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise BenchError(f"budget {item} must be a positive number of FLOPs")
        values.append(value)
    if not values:
        raise BenchError("no budget given", hint="e.g. --budget-sweep 1e14,1e15,1e16")
    return tuple(sorted(set(values)))


def check_no_schedule_overrides(overrides: Iterable[str]) -> None:
    """A budget sets the step count: ``--set optim.steps=...`` would contradict it."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in SCHEDULE_KEYS:
            raise BenchError(
                f"--set {item} conflicts with --budget: the budget sets {', '.join(SCHEDULE_KEYS)}",
                hint="drop the --set, or drop --budget to give the steps yourself",
            )


def plan_budget(method: str, cfg: MethodConfig, budget: float) -> Budget:
    """The whole steps of ``cfg.optim.batch_size`` that fit in ``budget`` training FLOPs, and the
    warm-up at the same share of the run as in ``cfg``."""
    from bench.flops import pretrain_step_flops

    per_sample = pretrain_step_flops(method, cfg)
    batch = cfg.optim.batch_size
    steps = int(budget // (per_sample * batch))
    if steps < 1:
        raise BenchError(
            f"{method}: a budget of {budget:.3g} FLOPs is less than one step "
            f"({per_sample * batch:.3g} FLOPs at batch {batch})",
            hint="raise --budget, or lower optim.batch_size with --set",
        )
    share = cfg.optim.warmup_steps / max(cfg.optim.steps, 1)
    warmup = min(round(steps * share), steps - 1)
    return Budget(budget, per_sample, batch, steps, max(warmup, 0))


def budgeted_config(method: str, cfg: MethodConfig, budget: float) -> tuple[MethodConfig, Budget]:
    """``cfg`` with the steps and warm-up of ``budget`` (:func:`plan_budget`)."""
    planned = plan_budget(method, cfg, budget)
    changed = apply_overrides(
        cfg, {"optim.steps": planned.steps, "optim.warmup_steps": planned.warmup_steps}
    )
    return changed, planned
