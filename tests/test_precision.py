"""``--precision auto``: bf16 only where the hardware computes it natively, fp32 elsewhere; on a
machine with native bf16 nothing changes (same run, same losses, same records)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import EMULATED, make_ptbxl

import bench.precision as precision_module
from bench.data.cache import prepare_cache
from bench.data.ptbxl import PTBXL
from bench.encoders import resolve_attention
from bench.precision import bf16_slowdown, native_bf16, resolve_precision
from bench.train import EngineConfig, pretrain, resolve_config, with_resolved_precision


def run_detection(extra_env: dict[str, str], keep_switches: bool = False) -> tuple[list[str], str]:
    """What a fresh process detects under ``extra_env`` (torch reads the ISA switches once, at
    start-up): ``([native, auto's choice, bf16 attention kernel], auto's reason)``."""
    switches = () if keep_switches else ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    env = {k: v for k, v in os.environ.items() if k not in switches}
    code = (
        "from bench.precision import native_bf16, resolve_precision\n"
        "from bench.encoders import resolve_attention\n"
        "print(native_bf16('cpu')[0], resolve_precision('auto', 'cpu').name,"
        " resolve_attention('auto', 'cpu', 'bf16'))\n"
        "print(resolve_precision('auto', 'cpu').reason)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, **extra_env},
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.splitlines()  # fmt: skip
    return out[0].split(), out[1]


@pytest.mark.parametrize(
    "extra_env", [{"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}]
)
def test_an_avx2_cpu_gets_fp32_and_the_fused_attention(extra_env):
    """Real detection: torch's ISA switches make any x86 CPU an AVX2-only one; auto then picks
    fp32, and bf16 attention (if asked for) the fused kernel."""
    (native, chosen, kernel), reason = run_detection(extra_env)
    assert (native, chosen, kernel) == ("False", "fp32", "fused")
    assert reason.startswith("auto: CPU without native bf16")


def test_the_detection_follows_the_cpu_flags():
    """Without extra switches the answer is this CPU's (and this environment's): native exactly
    when torch reports AVX512-BF16 or AMX, dispatches AVX-512 kernels and oneDNN is not capped
    below bf16."""
    (native, chosen, kernel), _ = run_detection({}, keep_switches=True)
    flags = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper() in ("AVX2", "AVX", "SSE41")
    expected = flags and torch.backends.cpu.get_cpu_capability() == "AVX512" and not capped
    assert native == str(expected)
    assert chosen == ("bf16" if expected else "fp32")
    assert kernel == ("matmul" if expected else "fused")


def test_auto_picks_bf16_only_with_native_support(cpu_kind):
    cpu_kind("native")
    chosen = resolve_precision("auto", "cpu")
    assert (chosen.name, chosen.requested) == ("bf16", "auto")
    assert chosen.reason == "auto: CPU with AVX512-BF16"
    assert resolve_attention("auto", "cpu", "bf16") == "matmul"
    cpu_kind("emulated")
    assert resolve_precision("auto", "cpu").name == "fp32"
    assert resolve_attention("auto", "cpu", "bf16") == "fused"
    assert resolve_precision("fp32", "cpu").name == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", "cpu")


def test_explicit_bf16_without_native_support_runs_but_warns_with_the_measured_slowdown(
    cpu_kind,
):
    cpu_kind("emulated")
    lines: list[str] = []
    with pytest.warns(UserWarning, match=r"a bf16 matmul measured \d+\.\dx the time of fp32"):
        chosen = resolve_precision("bf16", "cpu", lines.append)
    assert chosen.name == "bf16" and chosen.reason.startswith("requested; CPU without native")
    assert any(line.startswith("warning: bf16 requested") for line in lines)
    cpu_kind("native")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", "cpu").name == "bf16"  # native: no warning


def test_the_choice_is_announced_once_per_process(cpu_kind, monkeypatch):
    monkeypatch.setattr(precision_module, "_announced", set())
    cpu_kind("native")
    lines: list[str] = []
    for _ in range(3):
        resolve_precision("auto", "cpu", lines.append)
    assert lines == ["precision: bf16 on cpu (auto: CPU with AVX512-BF16)"]


def test_bf16_slowdown_is_a_positive_ratio():
    assert bf16_slowdown("cpu", size=64, repeats=1) > 0


def test_native_bf16_of_a_cuda_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    major, _ = torch.cuda.get_device_capability()
    assert native_bf16("cuda")[0] == (major >= 8)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = make_ptbxl(tmp_path_factory.mktemp("data") / "ptbxl", n=40, rates=(100,))
    ds = PTBXL(root)
    return ds, prepare_cache(
        ds, 100, cache_root=tmp_path_factory.mktemp("cache"), workers=1, progress=False
    )


def test_auto_on_native_hardware_is_the_former_bf16_run(small, tmp_path, cpu_kind):
    """Nothing changes where bf16 is native: ``auto`` resolves to the run id of an explicit
    ``bf16`` run (so it reuses it), and trains bit-identical losses when forced."""
    cpu_kind("native")
    ds, cache = small
    cfg = resolve_config("jepa", "smoke", ["optim.steps=2"])
    base = dict(device="cpu", workers=0, mlflow=False, progress=False)
    explicit = pretrain("jepa", cfg, ds, cache, EngineConfig(precision="bf16", **base),
                        runs_root=tmp_path)  # fmt: skip
    auto = pretrain("jepa", cfg, ds, cache, EngineConfig(**base), runs_root=tmp_path)
    assert auto.reused and auto.run_dir == explicit.run_dir
    again = pretrain("jepa", cfg, ds, cache, EngineConfig(**base), runs_root=tmp_path / "b",
                     force=True)  # fmt: skip
    assert again.run_dir.name == explicit.run_dir.name
    np.testing.assert_array_equal(again.losses, explicit.losses)
    state = torch.load(again.final_checkpoint, weights_only=True)
    assert state["precision"] == "bf16"
    assert state["precision_reason"] == "auto: CPU with AVX512-BF16"


def test_auto_without_native_bf16_trains_in_fp32(small, tmp_path, cpu_kind):
    cpu_kind("emulated")
    ds, cache = small
    cfg = resolve_config("jepa", "smoke", ["optim.steps=1"])
    base = dict(device="cpu", workers=0, mlflow=False, progress=False)
    auto = pretrain("jepa", cfg, ds, cache, EngineConfig(**base), runs_root=tmp_path)
    fp32 = pretrain("jepa", cfg, ds, cache, EngineConfig(precision="fp32", **base),
                    runs_root=tmp_path)  # fmt: skip
    assert fp32.reused and fp32.run_dir == auto.run_dir
    engine = with_resolved_precision(EngineConfig(**base))
    assert (engine.precision, engine.precision_reason) == ("fp32", f"auto: {EMULATED[1]}")
    assert with_resolved_precision(engine) is engine  # resolved once
