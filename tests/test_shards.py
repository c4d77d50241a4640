"""``bench run --shard K/N``: disjoint parts that cover the grid, a pre-training never split,
balanced work, and N jobs on one results directory equal to one uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from bench.errors import BenchError
from bench.evaluate.config import resolve_eval_config
from bench.evaluate.run import RunPlan
from bench.evaluate.shards import assign_shards, grid_units, parse_shard
from bench.task import resolve_tasks

SMOKE = ["--preset", "smoke", "--no-progress", "--no-mlflow"]


class FakeTaskData:
    """Only what the planner reads of a task: its name and split sizes."""

    def __init__(self, name: str, train: int) -> None:
        self.task = type("Spec", (), {"name": name})()
        self.train = train

    def counts(self) -> dict[str, int]:
        return {"train": self.train, "val": 10, "test": 10}


def _plan(**kw) -> RunPlan:
    base = dict(
        methods=("jepa", "simclr", "mae", "random", "supervised"),
        tasks=tuple(resolve_tasks("all")),
        protocols=("linear", "attentive", "finetune"),
        seeds=3,
        fractions=(0.1, 1.0),
        preset="cpu",
    )
    return RunPlan(**{**base, **kw})


def _units(plan: RunPlan):
    tasks = [FakeTaskData(t.name, 1000 + 300 * i) for i, t in enumerate(plan.tasks)]
    return grid_units(plan, tasks, resolve_eval_config(plan.preset, ()))


def _all_items(plan: RunPlan) -> set:
    from bench.evaluate.subjects import REFERENCE_PROTOCOLS

    return {
        (m, None, t.name, p)
        for m in plan.methods
        for t in plan.tasks
        for p in plan.protocols
        if p in REFERENCE_PROTOCOLS.get(m, (p,))
    }


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 16])
def test_shards_are_disjoint_cover_the_grid_and_never_split_a_pretraining(count):
    plan = _plan()
    units = _units(plan)
    shards = assign_shards(units, count)
    items = [item for shard in shards for item in shard.items()]
    assert len(items) == len(set(items))  # disjoint
    assert set(items) == _all_items(plan)  # and together the whole grid
    for method in ("jepa", "simclr", "mae"):  # each SSL subject lives in exactly one shard
        owners = [s.index for s in shards if (method, None) in s.subjects()]
        assert len(owners) == 1, (method, owners)
    # LPT: the busiest shard carries at most the mean plus the largest unit
    mean = sum(u.cost for u in units) / count
    assert max(s.cost for s in shards) <= mean + max(u.cost for u in units) + 1e-9


def test_the_parts_are_balanced_and_reference_rows_fill_the_gaps():
    shards = assign_shards(_units(_plan()), 4)
    costs = sorted(s.cost for s in shards)
    assert costs[-1] <= 1.25 * costs[0]  # 3 SSL subjects, the 12 reference pieces in the 4th
    shards = assign_shards(_units(_plan()), 6)
    random_owners = {s.index for s in shards if ("random", None) in s.subjects()}
    assert len(random_owners) == 3  # the reference pieces spread over the 3 jobs left


def test_the_parts_depend_only_on_the_arguments():
    """Two jobs computing the partition independently agree on it."""
    a = [[u.items for u in s.units] for s in assign_shards(_units(_plan()), 5)]
    b = [[u.items for u in s.units] for s in assign_shards(_units(_plan()), 5)]
    assert a == b


def test_a_budget_sweep_keeps_each_budgeted_pretraining_whole():
    plan = _plan(methods=("simclr", "random"), preset="smoke", budgets=(1e9, 3e9))
    units = _units(plan)
    ssl = [u for u in units if u.name == "simclr"]
    assert [u.budget for u in ssl] == [1e9, 3e9] and all(u.pretrains for u in ssl)
    assert ssl[1].cost > ssl[0].cost  # more compute, more work


@pytest.mark.parametrize(
    "text, expected", [("1/4", (1, 4)), (" 4 / 4 ", (4, 4)), (None, None)]
)  # fmt: skip
def test_shard_arguments_parse(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "1/0", "-1/3"])
def test_bad_shard_arguments_are_refused_with_the_valid_form(text):
    with pytest.raises(BenchError) as err:
        parse_shard(text)
    assert "--shard" in str(err.value) and "/" in err.value.hint


def test_a_bad_shard_is_refused_before_any_work(capsys, small_synthetic):
    code, out = run_cli(
        capsys, "run", "--method", "random", "--task", "rhythm", "--protocol", "linear",
        "--shard", "3/2", "--data-dir", str(small_synthetic), *SMOKE,
    )  # fmt: skip
    assert code != 0 and "K must be between 1 and N" in out and "Traceback" not in out


def _bench(args: list[str], results: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        env={**os.environ, "BENCH_RESULTS_DIR": str(results)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _records(results: Path) -> dict[str, dict]:
    out = {}
    for f in sorted((results / "records").rglob("*.json")):
        record = json.loads(f.read_text())
        out[str(f.relative_to(results))] = record["test_macro_auroc"]
    return out


def test_shards_on_one_results_directory_equal_one_uninterrupted_run(small_synthetic, tmp_path):
    """Three jobs of a job array, started together on one shared results directory, write
    exactly the records of a single run: same files, same numbers, same leaderboard."""
    args = ["run", "--method", "simclr,random", "--task", "superdiagnostic,rhythm",
            "--protocol", "linear,attentive", "--data-dir", str(small_synthetic), *SMOKE]  # fmt: skip
    shared, single = tmp_path / "shared", tmp_path / "single"
    jobs = [_bench([*args, "--shard", f"{k}/3"], shared) for k in (1, 2, 3)]
    alone = _bench(args, single)
    outputs = [job.communicate(timeout=600) for job in [*jobs, alone]]
    for job, (_, err) in zip([*jobs, alone], outputs, strict=True):
        assert job.returncode == 0, err
    shard_errs = [err for _, err in outputs[:3]]
    assert sum("simclr: pre-trained" in err for err in shard_errs) == 1  # pre-trained once
    assert not any("reusing the finished pre-training" in err for err in shard_errs)
    new = [int(err.split(" new,")[0].rsplit("(", 1)[1]) for err in shard_errs]
    assert sum(new) == 8  # 2 tasks x 2 protocols x 2 subjects, each written by one job
    assert _records(shared) == _records(single)
    board = "leaderboard/synthetic-n-240-seed-3-v1/leaderboard.csv"
    assert (shared / board).read_text() == (single / board).read_text()
    # `bench report` over the shared directory gives the same leaderboard again
    report = _bench(["report", "--no-figures"], shared)
    report.communicate(timeout=300)
    assert report.returncode == 0
    assert (shared / board).read_text() == (single / board).read_text()
