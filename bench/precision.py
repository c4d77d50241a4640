"""Which numeric precision a run uses: bf16 autocast only where the hardware computes bf16 natively.

``--precision auto`` (the default of every command) resolves, per device, to

* ``bf16`` on a CUDA device whose tensor cores do bf16 (compute capability 8.0 and later:
  A100, H100, H200, RTX 30xx and later);
* ``bf16`` on a CPU whose instruction set torch dispatches to has native bf16 dot products
  (AVX512-BF16 or AMX tiles, and ATen's AVX-512 kernels, and oneDNN not capped below them with
  ``ONEDNN_MAX_CPU_ISA``);
* ``fp32`` everywhere else: on an AVX2-only x86 CPU torch emulates bf16 and a bf16 autocast
  ``Linear`` is 4-10x slower than fp32 (a bf16 matmul 5-50x), so bf16 would only cost time there.

An explicit ``bf16`` on hardware without it still runs, but :func:`resolve_precision` warns
with the slowdown measured on the spot (:func:`bf16_slowdown`). The choice and its reason are
printed once per process and stored in run records, checkpoints and MLflow runs.

On a machine that already had native bf16, ``auto`` gives ``bf16`` exactly as the former
default did, so run ids, records and leaderboards are unchanged.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "bf16", "fp32")

# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) that still include native bf16 dot products.
_ONEDNN_BF16_ISAS = {
    "ALL",
    "AVX512_CORE_BF16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` is ``bf16`` or ``fp32``; ``reason`` says why, in words."""

    name: str
    reason: str
    requested: str = "auto"


def native_bf16(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and what that was read from.

    Returns:
        ``(native, evidence)``, e.g. ``(True, "CPU with AVX512-BF16")`` or
        ``(False, "CPU without native bf16 (ATen AVX2 kernels)")``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        major, minor = torch.cuda.get_device_capability(index)
        if major >= 8:
            return True, f"{name} (compute capability {major}.{minor}) with bf16 tensor cores"
        return False, f"{name} (compute capability {major}.{minor}) without native bf16"
    if device.type != "cpu":
        return False, f"{device.type} device: no native bf16 known to this harness"
    return _cpu_native_bf16()


def _cpu_native_bf16() -> tuple[bool, str]:
    features = []
    if torch.cpu._is_avx512_bf16_supported():
        features.append("AVX512-BF16")
    if torch.cpu._is_amx_tile_supported():
        features.append("AMX")
    if not features:
        return False, "CPU without native bf16 (no AVX512-BF16 or AMX)"
    kernels = torch.backends.cpu.get_cpu_capability()  # honours ATEN_CPU_CAPABILITY
    if kernels != "AVX512":
        return False, f"CPU without native bf16 in use (ATen {kernels} kernels)"
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").strip().upper() or "ALL"
    if onednn not in _ONEDNN_BF16_ISAS:
        return False, f"CPU without native bf16 in use (ONEDNN_MAX_CPU_ISA={onednn})"
    return True, f"CPU with {' and '.join(features)}"


def bf16_slowdown(device: torch.device | str, size: int = 256, repeats: int = 3) -> float:
    """Measured time of a ``size`` x ``size`` bf16 matmul over the fp32 one on ``device``
    (best of ``repeats`` after one warm-up call); > 1 means bf16 is slower. ~0.1 s on a CPU
    without native bf16."""
    device = torch.device(device)
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        a @ b  # first call: kernel selection and allocation
        best = float("inf")
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - t0)
        times[dtype] = best
    return times[torch.bfloat16] / max(times[torch.float32], 1e-12)


_announced: set[tuple[str, str, str]] = set()


def resolve_precision(
    requested: str, device: torch.device | str, echo=None, *, warn: bool = True
) -> Precision:
    """``auto`` | ``bf16`` | ``fp32`` on ``device`` -> a :class:`Precision` with its reason.

    ``echo`` (e.g. ``click.echo``) receives one line saying what was chosen and why, once per
    process for each (requested, device, result). An explicit ``bf16`` where the device has no
    native bf16 runs anyway, with a :class:`UserWarning` (and an ``echo`` line) giving the
    measured slowdown.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose from {', '.join(PRECISIONS)}")
    device = torch.device(device)
    native, evidence = native_bf16(device)
    if requested == "auto":
        name = "bf16" if native else "fp32"
        reason = f"auto: {evidence}"
    elif requested == "bf16" and not native:
        name = "bf16"
        reason = f"requested; {evidence}"
        if warn:
            slow = bf16_slowdown(device)
            message = (
                f"bf16 requested on {evidence}: a bf16 matmul measured {slow:.1f}x the time of "
                "fp32 here; --precision auto (fp32 on this device) is faster"
            )
            warnings.warn(message, UserWarning, stacklevel=2)
            if echo is not None:
                echo(f"warning: {message}")
    else:
        name, reason = requested, f"requested; {evidence}"
    precision = Precision(name, reason, requested)
    key = (requested, str(device), name)
    if echo is not None and key not in _announced:
        _announced.add(key)
        echo(f"precision: {name} on {device} ({reason})")
    return precision


def configure_device(device: torch.device | str, precision: str) -> None:
    """Process-wide math settings for a ``precision`` run on ``device``. On CUDA, a bf16 run
    also gets TF32 tensor cores for the matmuls and convolutions it keeps in fp32 (losses and
    heads that leave autocast: 10-bit mantissa products, fp32 accumulation, the setting of the
    reference JEPA code); an ``fp32`` run keeps full fp32 there, as its name promises. Nothing
    changes on a CPU."""
    if torch.device(device).type == "cuda":
        tf32 = precision == "bf16"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
