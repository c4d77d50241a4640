"""Shared fixtures.

The real PTB-XL subset is passed in through ``$PTBXL_DIR`` (``.ci/run`` sets it when
``../shared/data/ptb-xl`` exists); tests that need it are skipped without it. Every test runs
with ``$PTBXL_DIR`` cleared and its own results directory, so nothing leaks between tests or
into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REAL_PTBXL = os.environ.get("PTBXL_DIR")
LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
STATEMENTS = (
    Path(__file__).resolve().parents[1] / "bench" / "data" / "resources" / "scp_statements.csv"
)
DB_COLUMNS = ["ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr"]
# A few label sets covering every level (NDT is both form and diagnostic; SR/AFIB are rhythm).
CODE_SETS = [
    "{'NORM': 100.0, 'SR': 0.0}",
    "{'IMI': 80.0, 'QWAVE': 0.0, 'SR': 0.0}",
    "{'NDT': 50.0, 'AFIB': 0.0}",
    "{'CLBBB': 100.0, 'SR': 0.0}",
    "{'LVH': 100.0, 'STD_': 0.0, 'SBRAD': 0.0}",
    "{'SR': 0.0}",  # no diagnostic statement: dropped from diagnostic tasks
]


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("PTBXL_DIR", raising=False)
    monkeypatch.delenv("BENCH_CACHE_DIR", raising=False)
    # mlflow.set_tracking_uri exports this variable: never let one test's store leak into another
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("BENCH_OPTUNA_STORAGE", raising=False)
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path / "results"))
    from bench.tracking import _Outage

    _Outage.reset()  # a tracking server lost in one in-process test is not lost in the next


NATIVE_BF16 = (True, "CPU with AVX512-BF16")
EMULATED = (False, "CPU without native bf16 in use (ATen AVX2 kernels)")


@pytest.fixture
def cpu_kind(monkeypatch):
    """Make the CPU read as one with native bf16 (``"native"``) or without (``"emulated"``):
    the decision logic is tested on both kinds whatever CPU runs the suite; the real detection
    is tested in a subprocess with torch's own ISA switches (``test_precision.py``)."""
    import bench.precision as precision_module

    def use(kind: str) -> None:
        answer = NATIVE_BF16 if kind == "native" else EMULATED
        monkeypatch.setattr(precision_module, "_cpu_native_bf16", lambda: answer)

    return use


@pytest.fixture(scope="session")
def real_ptbxl() -> Path:
    """The real PTB-XL subset, or skip."""
    if not REAL_PTBXL or not Path(REAL_PTBXL, "ptbxl_database.csv").is_file():
        pytest.skip("real PTB-XL subset not available: set PTBXL_DIR=../shared/data/ptb-xl")
    return Path(REAL_PTBXL).resolve()


def write_record(base: Path, signal: np.ndarray, fs: int, sig_name=LEADS) -> None:
    """Write one WFDB record like PTB-XL's: 16-bit, gain 1000 ADC units per mV."""
    import wfdb

    base.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        base.name,
        fs=fs,
        units=["mV"] * signal.shape[1],
        sig_name=list(sig_name),
        p_signal=signal,
        fmt=["16"] * signal.shape[1],
        adc_gain=[1000.0] * signal.shape[1],
        baseline=[0] * signal.shape[1],
        write_dir=str(base.parent),
    )


def make_ptbxl(root: Path, n: int = 30, rates=(100, 500), seed: int = 0) -> Path:
    """A tiny PTB-XL-layout dataset: ``n`` records, folds 1-10 in turn, codes from CODE_SETS."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "scp_statements.csv").write_bytes(STATEMENTS.read_bytes())
    rows = []
    for ecg_id in range(1, n + 1):
        lr, hr = f"records100/00000/{ecg_id:05d}_lr", f"records500/00000/{ecg_id:05d}_hr"
        t = np.arange(5000) / 500
        signal = 0.5 * np.sin(2 * np.pi * (1 + ecg_id % 3) * t)[
            :, None
        ] + 0.05 * rng.standard_normal((5000, 12))
        if 500 in rates:
            write_record(root / hr, signal, 500)
        if 100 in rates:
            write_record(root / lr, signal[::5], 100)
        codes = CODE_SETS[(ecg_id - 1) % len(CODE_SETS)]
        rows.append([ecg_id, 1000 + ecg_id, codes, (ecg_id - 1) % 10 + 1, lr, hr])
    import csv

    with open(root / "ptbxl_database.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(DB_COLUMNS)
        writer.writerows(rows)
    return root


@pytest.fixture
def mini_ptbxl(tmp_path) -> Path:
    return make_ptbxl(tmp_path / "mini-ptbxl")


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """A small embedded-style synthetic PTB-XL (240 records at 100 Hz, every fold populated),
    generated once per test session."""
    from bench.data.synthetic import generate_synthetic_ptbxl

    root = tmp_path_factory.mktemp("small-synthetic") / "data"
    return generate_synthetic_ptbxl(root, n=240, seed=3, rates=(100,), workers=2, progress=False)


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """``bench ARGV`` in this process, as the console entry point runs it: (exit code, stdout
    + stderr). For error paths: same code as a subprocess without ~5 s of imports per call
    (``test_cli`` keeps subprocess checks of the real entry point)."""
    from bench.cli import main

    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err
