"""The machine's matrix-multiply peak, measured rather than taken from a data sheet.

Achieved FLOP/s of a training step only means something against what the same machine, the same
PyTorch build and the same number of threads reach on the best case: one large square matmul.
The probe times ``torch.mm`` on a few square sizes per dtype and keeps the fastest rate.
"""

from __future__ import annotations

import time

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(n: int, dtype: torch.dtype, device: torch.device, seconds: float) -> float:
    """FLOP/s of ``(n, n) @ (n, n)`` in ``dtype`` on ``device``, timed for about ``seconds``
    after two warm-up products (``2 n^3`` FLOPs per product)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b, out=out)
    _sync(device)
    count, started = 0, time.perf_counter()
    while True:
        torch.mm(a, b, out=out)
        count += 1
        if count % 4 == 0 or device.type != "cuda":
            _sync(device)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return 2.0 * n**3 * count / elapsed


def matmul_peak(
    device: torch.device | str = "cpu",
    precisions: tuple[str, ...] = ("fp32", "bf16"),
    sizes: tuple[int, ...] | None = None,
    seconds: float = 1.0,
) -> dict[str, dict]:
    """Best measured matmul FLOP/s per precision.

    Args:
        sizes: square sizes to try (default 1024 and 2048 on a CPU, 4096 and 8192 on a GPU).
        seconds: timing per size and precision.

    Returns:
        ``{"fp32": {"flops": ..., "size": n, "by_size": {n: flops}}, "bf16": {...}}``.
    """
    device = torch.device(device)
    if sizes is None:
        sizes = (4096, 8192) if device.type == "cuda" else (1024, 2048)
    out: dict[str, dict] = {}
    for precision in precisions:
        rates = {n: matmul_rate(n, DTYPES[precision], device, seconds) for n in sizes}
        best = max(rates, key=rates.get)
        out[precision] = {"flops": rates[best], "size": best, "by_size": rates}
    return out
