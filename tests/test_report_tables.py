"""Leaderboard csv / markdown from hand-made records: notation, seeds, best marks, published
context rows, and synthetic and real datasets kept apart."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from report_factory import REAL, SYNTHETIC, fake_arrays, fake_health, fake_record, write_fake

from bench.cli import cli
from bench.report.build import write_report
from bench.report.published import PUBLISHED, published_frame
from bench.report.tables import csv_frame, leaderboard_frame, markdown, slug
from bench.results import RecordStore


def _records(dataset: str) -> list[dict]:
    return [
        fake_record("jepa", "superdiagnostic", "linear", 0.900, dataset=dataset, seed=0),
        fake_record("jepa", "superdiagnostic", "linear", 0.910, dataset=dataset, seed=1),
        fake_record("jepa", "rhythm", "linear", 0.700, dataset=dataset),
        fake_record("random", "superdiagnostic", "linear", 0.850, dataset=dataset),
        fake_record("random", "rhythm", "linear", 0.750, dataset=dataset),
        fake_record("jepa", "superdiagnostic", "finetune", 0.920, dataset=dataset),
    ]


def test_seeds_are_aggregated_to_mean_and_sd():
    table = leaderboard_frame(_records(SYNTHETIC))
    row = table[(table.method == "jepa") & (table.task == "superdiagnostic")]
    row = row[row.protocol == "linear"].iloc[0]
    assert row.seeds == 2
    assert row.test_macro_auroc == pytest.approx(0.905)
    assert row.test_macro_auroc_sd == pytest.approx(0.00707, abs=1e-5)
    # CI bounds are the seed means: 0.905 - 0.02 and 0.905 + 0.01 -> larger deviation 0.020
    assert row.notation == "0.905(20) ± 0.007"


def test_markdown_tables_per_protocol_with_the_best_value_bold():
    text = markdown(leaderboard_frame(_records(SYNTHETIC)).reset_index(drop=True))
    assert "**SYNTHETIC data**" in text
    linear = text.split("## linear (label fraction 1)")[1].split("## finetune")[0]
    rows = [line for line in linear.splitlines() if line.startswith("| ")]
    assert rows[0] == "| method | superdiagnostic | rhythm |"
    assert rows[1] == "| jepa (xs) | **0.905(20) ± 0.007** | 0.700(20) |"
    assert rows[2] == "| random (xs) | 0.850(20) | **0.750(20)** |"
    assert text.index("## linear") < text.index("## finetune")
    assert "published" not in text  # never next to synthetic numbers


def test_published_rows_only_on_real_data_and_never_best():
    table = leaderboard_frame(_records(REAL)).reset_index(drop=True)
    text = markdown(table, published_frame())
    finetune = text.split("## finetune (label fraction 1)")[1]
    # ECG-JEPA fine-tune published 0.921 on superdiagnostic beats the measured 0.920: still
    # the measured value is the bold one, the published one is marked, not ranked
    assert "| jepa (xs) | **0.920(20)** |" in finetune
    assert "| *published: ECG-JEPA* † | *0.921* † |" in finetune
    assert "† Published, not re-measured" in text
    assert "Kim 2024" in text
    synthetic = markdown(leaderboard_frame(_records(SYNTHETIC)).reset_index(drop=True),
                         published_frame())  # fmt: skip
    assert "published" not in synthetic


def test_csv_marks_published_rows_and_keeps_measured_ones_numeric():
    table = leaderboard_frame(_records(REAL))
    frame = csv_frame(table, published_frame())
    measured, context = frame[~frame.published], frame[frame.published]
    assert len(measured) == len(table)
    assert len(context) == len(PUBLISHED)
    assert set(context.dataset) == {"published (not re-measured)"}
    assert context.ci_low.isna().all()
    assert not csv_frame(leaderboard_frame(_records(SYNTHETIC)), published_frame()).published.any()


def test_synthetic_and_real_records_never_share_a_table(tmp_path):
    records = _records(SYNTHETIC) + _records(REAL)
    written = write_report(records, root=tmp_path, figures=False)
    assert [p.name for p in written] == sorted([slug(REAL), slug(SYNTHETIC)])
    for directory in written:
        frame = pd.read_csv(directory / "leaderboard.csv")
        measured = frame[~frame.published]
        assert measured.dataset.nunique() == 1
        assert len(measured) == 5
        assert (directory / "leaderboard.html").stat().st_size > 0
    real = (tmp_path / slug(REAL) / "leaderboard.md").read_text()
    assert real.startswith(f"# Leaderboard: {REAL}")
    assert "SYNTHETIC" not in real


def test_bench_report_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))
    runner = CliRunner()
    out = runner.invoke(cli, ["report"])
    assert out.exit_code != 0 and "no complete run records" in str(out.exception)
    store = RecordStore(tmp_path / "records")
    for record in _records(REAL):
        write_fake(store, record, fake_arrays(50, 5, 1.0, record["seed"]))
    out = runner.invoke(cli, ["report", "--no-figures"])
    assert out.exit_code == 0, out.output
    assert "6 records -> 1 leaderboard(s)" in out.output
    assert (tmp_path / "leaderboard" / slug(REAL) / "leaderboard.md").is_file()


def test_two_protocol_configs_of_one_run_are_two_rows_not_two_seeds():
    default = fake_record("jepa", "superdiagnostic", "linear", 0.80, eval_hash="1" * 16)
    tuned = fake_record("jepa", "superdiagnostic", "linear", 0.90, eval_hash="2" * 16)
    table = leaderboard_frame([default, tuned])
    assert len(table) == 2 and set(table.seeds) == {1}
    assert sorted(table.run_id) == [
        f"{default['run_id']}@11111111",
        f"{default['run_id']}@22222222",
    ]
    text = markdown(table.reset_index(drop=True))
    assert f"| jepa (xs) `{default['run_id']}@22222222` | **0.900(20)** |" in text


def test_health_columns_and_markdown_table_per_run():
    """Health is per pre-training run: every row of a run gets its columns, from the newest
    record that has them; records without health (older ones) show as not recorded."""
    falling = fake_health("falling", rank=4, init_rank=16)
    records = _records(REAL)
    for r in records:
        if r["method"] == "jepa":
            r["health"] = falling
    records[0]["created"] = "2026-11-01T00:00:00.000+00:00"  # an older record, other health
    records[0]["health"] = fake_health("turned")
    table = leaderboard_frame(records).reset_index(drop=True)
    jepa, random = table[table.method == "jepa"], table[table.method == "random"]
    assert set(jepa.loss_status) == {"still falling"} and jepa.health_recorded.all()
    assert set(jepa.health_warnings) == {"budget;dimensional"}
    assert jepa.effective_rank.iloc[0] == pytest.approx(falling["features"]["effective_rank"])
    assert not random.health_recorded.any() and random.effective_rank.isna().all()
    text = markdown(table, published_frame())
    assert text.index("† Published") < text.index("## Pre-training health")
    health = text.split("## Pre-training health")[1]
    rows = [line for line in health.splitlines() if line.startswith("| ")]
    end, init = falling["features"]["effective_rank"], falling["features_init"]["effective_rank"]
    assert rows[1].startswith("| jepa (xs) | still falling at step 200 | ")
    assert f"| {init:.1f} → {end:.1f} (32) |" in rows[1] and rows[1].endswith(
        "| ⚠ budget, dimensional |"
    )
    assert rows[2] == "| random (xs) | not recorded | | | | |"
    # the csv carries the same columns; without any health the markdown has no such section
    frame = csv_frame(table, published_frame())
    assert frame[~frame.published].health_warnings.fillna("").str.contains("dimensional").sum() == 3
    assert "## Pre-training health" not in markdown(leaderboard_frame(_records(REAL)))


def test_the_title_states_the_budget_and_each_ssl_row_its_warm_up():
    """The leaderboard's title gives the pre-training budget (steps x batch, counted FLOPs) and
    each SSL run has one line saying, from its loss curve, whether it left its warm-up regime."""
    records = [
        fake_record("jepa", "superdiagnostic", "linear", 0.73, dataset=REAL,
                    health=fake_health("falling", rank=20, init_rank=16)),
        fake_record("simclr", "superdiagnostic", "linear", 0.79, dataset=REAL,
                    health=fake_health("turned")),
        fake_record("ecg_jepa", "superdiagnostic", "linear", 0.60, dataset=REAL, steps=150,
                    batch_size=32, health=fake_health("plateau")),
        fake_record("random", "superdiagnostic", "linear", 0.72, dataset=REAL),
    ]  # fmt: skip
    for r, flops in zip(records[:3], (1.1e14, 2.0e14, 3.5e13), strict=True):
        r["pretrain"]["flops"] = flops
    text = markdown(leaderboard_frame(records))
    title = text.splitlines()[0]
    assert title == (
        f"# Leaderboard: {REAL}: pre-training 1,000 x 64 steps x batch (ecg_jepa 150 x 32), "
        "3.5e+13-2e+14 training FLOPs"
    )
    lines = [line for line in text.splitlines() if line.startswith("- **")]
    assert lines[0].startswith("- **ecg_jepa (xs)**: past its warm-up regime: loss plateau")
    assert lines[1].startswith("- **jepa (xs)**: still in its warm-up regime (the budget is too")
    assert lines[2].startswith("- **simclr (xs)**: past its warm-up regime: loss turned")
    assert len(lines) == 3  # reference rows have no warm-up
