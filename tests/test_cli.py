"""The ``bench`` command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import make_ptbxl, run_cli


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"bench {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        )
    return result


def test_help_lists_the_commands():
    out = bench("--help").stdout
    assert "data" in out and "tasks" in out
    assert "prepare" in bench("data", "--help").stdout


def test_cli_module_imports_no_heavy_library():
    code = "import sys, bench.cli; print(sorted(m for m in ('numpy','pandas','torch','wfdb','mlflow','timm') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_unknown_task_lists_the_valid_ones(mini_ptbxl):
    result = bench("tasks", "--data-dir", str(mini_ptbxl), "--task", "rythm", check=False)
    assert result.returncode == 1
    assert (
        "unknown task 'rythm'" in result.stderr and "superdiagnostic, form, rhythm" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_missing_data_dir_explains_how_to_download(tmp_path):
    result = bench("data", "prepare", "--data-dir", str(tmp_path / "absent"), check=False)
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "bench data download ptbxl" in result.stderr
    assert "Traceback" not in result.stderr


def test_prepare_info_tasks_on_a_small_dataset(mini_ptbxl):
    out = bench(
        "data",
        "prepare",
        "--data-dir",
        str(mini_ptbxl),
        "--rate",
        "100",
        "--rate",
        "250",
        "--no-progress",
    ).stdout
    assert "100 Hz cache built: 30 records x 12 leads x 1000 samples" in out
    assert "250 Hz cache built: 30 records x 12 leads x 2500 samples (resampled from 500 Hz)" in out
    assert (
        "up to date"
        in bench("data", "prepare", "--data-dir", str(mini_ptbxl), "--no-progress").stdout
    )
    info = bench("data", "info", "--data-dir", str(mini_ptbxl)).stdout
    assert (
        "records: 30" in info and "cache 100 Hz: ready" in info and "cache 500 Hz: missing" in info
    )
    tasks = bench("tasks", "--data-dir", str(mini_ptbxl)).stdout
    lines = {
        line.split()[0]: line.split()[1:]
        for line in tasks.splitlines()
        if line and not line.startswith(" ")
    }
    assert lines["superdiagnostic"] == [
        "5",
        "25",
        "20",
        "3",
        "2",
    ]  # ids 6, 12, ..., 30 have no diagnostic label
    assert lines["all_statements"] == ["10", "30", "24", "3", "3"]


def test_corrupt_record_fails_the_prepare_cleanly(tmp_path):
    root = make_ptbxl(tmp_path / "ds", n=12, rates=(100,))
    dat = root / "records100/00000/00007_lr.dat"
    dat.write_bytes(dat.read_bytes()[:50])
    result = bench("data", "prepare", "--data-dir", str(root), "--no-progress", check=False)
    assert (
        result.returncode == 1
        and "ecg_id 7: truncated" in result.stderr
        and "--skip-bad" in result.stderr
    )
    assert "cache 100 Hz: missing" in bench("data", "info", "--data-dir", str(root)).stdout
    out = bench("data", "prepare", "--data-dir", str(root), "--no-progress", "--skip-bad")
    assert "11 records" in out.stdout and "skipped 1 bad records" in out.stderr


def test_download_failure_is_a_clear_error(tmp_path):
    result = bench(
        "data", "download", "ptbxl", "--dest", str(tmp_path / "ptbxl"), "--url", "http://127.0.0.1:9/x.zip",
        "--sums-url", "http://127.0.0.1:9/SHA256SUMS.txt", "--no-progress", check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ptbxl").exists()


def test_data_benchmark_prints_both_figures_and_the_ratio(mini_ptbxl):
    out = bench("data", "benchmark", "--data-dir", str(mini_ptbxl)).stdout
    assert "wfdb per-record reads: 24 records" in out and "memory-mapped cache:   24 records" in out
    assert "speed-up:" in out and "identical arrays: True" in out


@pytest.mark.ptbxl
def test_prepare_then_tasks_on_the_real_subset(real_ptbxl):
    out = bench("data", "prepare", "--data-dir", str(real_ptbxl), "--no-progress").stdout
    assert "1987 records x 12 leads x 1000 samples" in out
    tasks = bench("tasks", "--data-dir", str(real_ptbxl), "--task", "all").stdout
    assert "PTB-XL subset (1987 records)" in tasks
    rows = {
        line.split()[0]: line.split()[1:]
        for line in tasks.splitlines()
        if line and not line.startswith(" ")
    }
    assert rows["superdiagnostic"] == ["5", "1965", "1481", "232", "252"]
    assert rows["all_statements"] == ["68", "1987", "1490", "242", "255"]
    assert set(rows) >= {"form", "rhythm"} and "diagnostic" not in rows


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--method", "jepaa"], "unknown method 'jepaa'"),
        (["--method", "jepa", "--preset", "laptop"], "unknown preset 'laptop'"),
        (["--method", "jepa", "--set", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
        (["--method", "jepa", "--set", "optim.steps=many"], "expected int"),
    ],
)
def test_pretrain_rejects_bad_names_with_the_valid_ones(args, fragment, capsys):
    if args == ["--method", "jepaa"]:  # once through the real entry point, as a user runs it
        result = bench("pretrain", *args, check=False)
        code, out = result.returncode, result.stderr
    else:  # the same code in process: no ~5 s of imports per case
        code, out = run_cli(capsys, "pretrain", *args)
    assert code == 1 and fragment in out and "hint:" in out
    assert "Traceback" not in out
