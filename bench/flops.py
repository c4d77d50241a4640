"""Model FLOPs of SSL pre-training, counted rather than estimated.

A method is built from its resolved config exactly as the engine builds it
(:func:`bench.train.build_method`), one training step (``prepare_batch``, forward, ``backward``)
runs on random crops in fp32 on the CPU, and :class:`torch.utils.flop_counter.FlopCounterMode`
counts the matrix products of the forward and backward passes (2 FLOPs per multiply-add; norms,
activations, the optimiser and EMA updates are not counted, as usual). Attention runs on the
math kernel while counting: the fused CPU kernel has no FLOP formula and would count as zero.

Counting the real step takes every method's particulars into account (EMA targets with a
forward only, masked context encoders, predictors, two views) without per-method formulas.

``flops.json`` in a pre-training run directory caches a run's count, so reports do not recount.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from bench.method import METHODS, MethodConfig

FLOPS_FORMAT = 1  # bump when the counting changes: cached counts of older formats are redone


def pretrain_step_flops(
    method_name: str,
    config: dict | MethodConfig,
    batch_size: int = 2,
    *,
    seed: int = 0,
    progress: float = 0.0,
) -> float:
    """Model FLOPs per training sample of one pre-training step (forward + backward).

    Args:
        method_name: a registered method (``bench methods``).
        config: its resolved config, as a dataclass or as the ``config`` dict of a run's
            ``config.json`` (``bench.config.to_dict`` output).
        batch_size: crops in the counted batch; the result is divided by it. Per-sample FLOPs
            hardly depend on it (only batch-wide terms such as SimCLR's similarity matrix do).
        seed: seeds the weights, the random crops and the generator of ``prepare_batch``
            (masks, augmentations), so the count is reproducible; methods that draw a mask
            ratio per batch vary by a few percent between draws.
        progress: the schedule position passed to the training step.

    The counted batch is ``x`` ``(batch_size, len(cfg.data.leads), cfg.data.crop_samples)``
    float32, the shape of the engine's crops. The global RNG state is left as it was.

    Returns:
        FLOPs per sample; multiply by samples per optimiser step and steps for a run's total
        (:func:`pretrain_total_flops`).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from bench.config import from_dict
    from bench.train import build_method

    cls = METHODS.get(method_name)
    cfg = config if isinstance(config, MethodConfig) else from_dict(cls.Config, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_method(cfg, method_name).train()
        x = torch.randn(batch_size, len(cfg.data.leads), cfg.data.crop_samples)
        batch = model.prepare_batch(x, torch.Generator().manual_seed(seed))
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            loss, _ = model(batch, progress)  # the module call, as the engine makes it
            loss.backward()
    return counter.get_total_flops() / batch_size


def pretrain_total_flops(flops_per_sample: float, batch_size: int, steps: int) -> float:
    """Total model FLOPs of a run: ``batch_size`` is ``optim.batch_size``, the samples of one
    optimiser step over all ranks; gradient accumulation splits it into micro-batches, so it
    does not multiply the total."""
    return float(flops_per_sample) * int(batch_size) * int(steps)


def run_flops_per_sample(run_dir: Path) -> float:
    """FLOPs per sample of the pre-training run in ``run_dir``, from its ``config.json``.

    Read from ``run_dir/flops.json`` when it holds a count of the current format; otherwise
    counted with :func:`pretrain_step_flops` and written there atomically (a read-only run
    directory is not an error: the count is returned without caching).

    Raises:
        OSError, ValueError, KeyError: ``config.json`` is missing or not a run config;
        anything the method raises while building or stepping.
    """
    run_dir = Path(run_dir)
    cache = run_dir / "flops.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("format") == FLOPS_FORMAT:
            return float(cached["flops_per_sample"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent or unreadable: count again
    run = json.loads((run_dir / "config.json").read_text())
    value = pretrain_step_flops(run["method"], run["config"])
    entry = {
        "format": FLOPS_FORMAT,
        "method": run["method"],
        "flops_per_sample": value,
        "counted_on": "cpu fp32, forward + backward, torch.utils.flop_counter",
        "torch": torch.__version__,
    }
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(entry, indent=1))
        os.replace(tmp, cache)
    except OSError:
        tmp.unlink(missing_ok=True)
    return value
