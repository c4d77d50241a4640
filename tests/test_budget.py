"""Compute-matched pre-training: ``bench run --budget`` / ``--budget-sweep``."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_run_cli import SMOKE, bench, record_files

from bench.budget import budgeted_config, parse_budgets, plan_budget
from bench.errors import BenchError
from bench.evaluate.run import RunPlan
from bench.flops import pretrain_step_flops
from bench.task import resolve_tasks
from bench.train import resolve_config


def test_a_budget_buys_whole_steps_and_keeps_the_warmup_share():
    cfg = resolve_config("jepa", "cpu")  # 200 steps, 20 of warm-up, batch 64
    per_step = pretrain_step_flops("jepa", cfg) * cfg.optim.batch_size
    planned = plan_budget("jepa", cfg, 1000.5 * per_step)
    assert planned.steps == 1000 and planned.warmup_steps == 100
    assert planned.flops <= planned.budget < planned.flops + per_step
    changed, again = budgeted_config("jepa", cfg, 1000.5 * per_step)
    assert (changed.optim.steps, changed.optim.warmup_steps) == (1000, 100) and again == planned
    assert changed == replace(cfg, optim=replace(cfg.optim, steps=1000, warmup_steps=100))
    assert plan_budget("jepa", cfg, 1.5 * per_step).warmup_steps == 0  # 1 step: no warm-up
    with pytest.raises(BenchError, match="less than one step"):
        plan_budget("jepa", cfg, 0.5 * per_step)


@pytest.mark.parametrize(
    "text, message",
    [("", "no budget"), ("1e15,abc", "not a number"), ("-1e14", "positive"), ("inf", "positive")],
)
def test_bad_budgets_are_clear_errors(text, message):
    with pytest.raises(BenchError, match=message):
        parse_budgets(text)


def test_budgets_are_sorted_and_a_budget_cannot_be_mixed_with_steps():
    assert parse_budgets("1e16, 1e14,1e15,1e14") == (1e14, 1e15, 1e16)
    with pytest.raises(BenchError, match="conflicts with --budget"):
        RunPlan(("jepa",), tuple(resolve_tasks("superdiagnostic")), budgets=(1e15,),
                overrides=("optim.steps=10",))  # fmt: skip


def test_a_budget_sweep_runs_each_method_at_each_budget(small_synthetic, tmp_path):
    """jepa at two budgets and random once: budgeted steps, the budget and counted FLOPs in the
    records, one leaderboard row per budget, the budget table and the AUROC-vs-compute figure."""
    cfg = resolve_config("jepa", "smoke")
    per_step = pretrain_step_flops("jepa", cfg) * cfg.optim.batch_size
    budgets = (4.5 * per_step, 9.5 * per_step)
    results = tmp_path / "results"
    out = bench(
        "run", "--method", "jepa,random", "--task", "superdiagnostic", "--protocol", "linear",
        "--budget-sweep", ",".join(f"{b:.6e}" for b in budgets), "--no-mlflow",
        "--data-dir", str(small_synthetic), *SMOKE, env={"BENCH_RESULTS_DIR": str(results)},
    )  # fmt: skip
    records = [json.loads(f.read_text()) for f in record_files(results)]
    jepa = sorted(
        (r for r in records if r["method"] == "jepa"), key=lambda r: r["pretrain"]["steps"]
    )
    assert len(records) == 3 and [r["pretrain"]["steps"] for r in jepa] == [4, 9]
    for record, budget in zip(jepa, budgets, strict=True):
        assert record["pretrain"]["budget_flops"] == pytest.approx(budget)
        assert budget - per_step < record["pretrain"]["flops"] <= budget
    assert len({r["run_id"] for r in jepa}) == 2
    assert out.stderr.count("jepa: budget") == 2 and "4 steps x 8" in out.stderr
    assert out.stdout.count("jepa (tiny) @") == 2  # the terminal summary: a row per budget
    (board,) = (results / "leaderboard").glob("*/leaderboard.md")
    md = board.read_text()
    assert "## Pre-training budget" in md and "| random (tiny) | no pre-training |" in md
    assert md.count("jepa (tiny) @ ") >= 2  # the rows are named by their budgets
    assert (board.parent / "figures" / "auroc-vs-budget-superdiagnostic.png").is_file()
    html = (board.parent / "leaderboard.html").read_text()
    for record in jepa:  # the provenance of each row: steps, counted FLOPs, budget
        pre = record["pretrain"]
        assert f"{pre['steps']} steps x 8<br>{pre['flops']:.3g} FLOPs<br>budget " in html
    csv = (board.parent / "leaderboard.csv").read_text().splitlines()[0]
    assert "budget_flops" in csv and "pretrain_flops" in csv
