"""Do the engine's speed settings change the numbers? ``bench perf --equivalence N``.

The first ``N`` pre-training steps of a method, run from the same weights, batches and seeds in
three ways (one process, one after the other):

* ``eager``: the straightforward step: matmul attention, the loss read (and checked) every
  step, no ``torch.compile``, full fp32 outside autocast (no TF32);
* ``engine``: what the engine runs on the device: the attention kernel ``auto`` picks,
  loss reads deferred on CUDA (:func:`bench.train.defers_host_reads`), TF32 for the fp32 parts
  of a bf16 step on CUDA, and ``torch.compile`` with ``--compile``;
* ``fp32`` (only when the engine trains in bf16): the eager step in fp32, the yardstick of how
  far bf16 rounding alone moves the curve.

The engine's curve passes when its largest relative distance from the eager curve is within
the bf16 yardstick (or :data:`FLOOR` of the precision, whichever is larger). Training is
chaotic, so distances grow with the step; the first steps are the ones that can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FLOOR = {"bf16": 1e-2, "fp32": 1e-4}  # relative loss distance always allowed per precision


def _curve(method, cfg, batches, device, precision, *, attention, engine, compile_) -> list:
    """The loss of each of ``len(batches)`` steps from the seeded initial weights."""
    from bench.encoders import resolve_attention, use_attention
    from bench.precision import configure_device
    from bench.train import (
        _read_losses,
        build_method,
        defers_host_reads,
        make_optimizer,
        train_step,
    )

    configure_device(device, precision if engine else "fp32")  # eager: no TF32
    torch.manual_seed(cfg.seed)
    model = build_method(cfg, method).to(device).train()
    use_attention(model, resolve_attention(attention, device, precision))
    wrapped = torch.compile(model) if compile_ else model
    opt = make_optimizer(model, cfg.optim)
    feed = iter(batches)
    defer = engine and defers_host_reads(device)
    losses = [
        train_step(model, wrapped, opt, feed, step, cfg, precision, device, sync=not defer)[0]
        for step in range(len(batches))
    ]
    return _read_losses(losses, len(losses), method)


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Largest relative distance between two loss curves."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def loss_equivalence(
    method: str, cfg, cache, rows, leads, mean, std, device: torch.device, precision: str,
    steps: int, compile_: bool = False, attention: str = "auto",
) -> dict[str, Any]:  # fmt: skip
    """Curves of the ``eager``, ``engine`` (and ``fp32``) steps over ``steps`` batches of the
    engine's loader; ``cfg`` is the case's config (batch size, schedule over ``steps``).

    Returns the curves, ``distance`` (engine vs eager), ``bf16_distance`` (fp32 vs eager, None
    in fp32), the ``tolerance`` applied and ``passed``.
    """
    from bench.data.loader import crop_loader

    loader = crop_loader(cache, rows, leads, mean, std, cfg, cfg.optim.batch_size, 0, device)
    feed = iter(loader)
    batches = [next(feed) for _ in range(steps)]  # the same batches for every arm
    curves = {
        "eager": _curve(
            method, cfg, batches, device, precision,
            attention="matmul", engine=False, compile_=False,
        ),
        "engine": _curve(
            method, cfg, batches, device, precision,
            attention=attention, engine=True, compile_=compile_,
        ),
    }  # fmt: skip
    yardstick = None
    if precision == "bf16":
        curves["fp32"] = _curve(
            method, cfg, batches, device, "fp32", attention="matmul", engine=False, compile_=False
        )
        yardstick = _distance(curves["fp32"], curves["eager"])
    distance = _distance(curves["engine"], curves["eager"])
    tolerance = max(yardstick or 0.0, FLOOR[precision])
    return {
        "method": method,
        "precision": precision,
        "steps": steps,
        "batch_size": cfg.optim.batch_size,
        "compile": compile_,
        "curves": curves,
        "distance": distance,
        "bf16_distance": yardstick,
        "tolerance": tolerance,
        "passed": distance <= tolerance,
    }


EQUIVALENCE_HEADER = (
    "method", "precision", "steps", "batch", "compile", "first loss", "last loss (eager)",
    "engine vs eager", "fp32 vs eager", "tolerance", "same numbers",
)  # fmt: skip


def equivalence_cells(r: dict) -> list[str]:
    eager = r["curves"]["eager"]
    return [
        r["method"], r["precision"], str(r["steps"]), str(r["batch_size"]),
        "yes" if r["compile"] else "no", f"{eager[0]:.4f}", f"{eager[-1]:.4f}",
        f"{r['distance']:.2e}",
        "-" if r["bf16_distance"] is None else f"{r['bf16_distance']:.2e}",
        f"{r['tolerance']:.2e}", "yes" if r["passed"] else "NO",
    ]  # fmt: skip
