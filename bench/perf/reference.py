"""The straightforward implementation that ``bench perf`` measures the engine against.

It is the same model, optimiser and data with what a first implementation would do:

* **fp32** throughout (no autocast);
* **explicit softmax attention** (``softmax(q k^T / sqrt(d)) v`` as two matmuls, timm's
  non-fused path, boolean masks turned into an additive ``-inf`` bias on every call);
* **masks and views drawn per sample in a Python loop** (:func:`looped_prepare`): the sampler or
  augmentation called once per sample on a batch of one, results concatenated.

For the linear probe (``bench perf --probe``) the reference is the same probe on every thread,
validated each epoch with scikit-learn label by label (:func:`straightforward_fit_linear`).

Everything else (AdamW, EMA with foreach ops, the target encoder without autograd) is shared:
the speed-up printed is that of precision, kernels and batched sampling only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from bench.encoders import jepa_block_mask
from bench.method import SSLMethod

Prepare = Callable[[Tensor, torch.Generator], dict[str, Tensor]]


def _concat(parts: list[dict[str, Tensor]], batch: int) -> dict[str, Tensor]:
    """Per-sample batches of one -> one batch (tensors with a leading dim of 1 concatenated)."""
    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if values[0].ndim and values[0].shape[0] == 1:
            out[key] = torch.cat(values)
        else:
            raise ValueError(f"cannot stack per-sample {key!r} of shape {tuple(values[0].shape)}")
    assert all(v.shape[0] == batch for v in out.values())
    return out


def _per_sample(model: SSLMethod) -> Prepare:
    """``prepare_batch`` called on each sample alone (independent masks / views per sample)."""

    def prepare(x: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        return _concat(
            [model.prepare_batch(x[i : i + 1], generator) for i in range(len(x))], len(x)
        )

    return prepare


def _jepa(model: SSLMethod) -> Prepare:
    """JEPA keeps the same count K in every sample of a batch: draw the keep ratio once, then
    sample each sample's block layout on its own with that ratio."""
    cfg = model.cfg

    def prepare(x: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        n_tokens = x.shape[-1] // model.encoder.layout.patch_size
        lo, hi = cfg.keep_ratio
        ratio = lo + (hi - lo) * torch.rand((), generator=generator, device=generator.device).item()
        keeps, masks = [], []
        for _ in range(len(x)):
            keep, mask = jepa_block_mask(1, n_tokens, (ratio, ratio), cfg.min_block, generator)
            keeps.append(keep)
            masks.append(mask)
        return {
            "x": x,
            "idx_keep": torch.cat(keeps).to(x.device),
            "idx_mask": torch.cat(masks).to(x.device),
        }

    return prepare


def looped_prepare(model: SSLMethod) -> tuple[Prepare, str]:
    """The per-sample reference of ``model.prepare_batch`` and a note of what it loops over.

    Methods whose masks or views are independent per sample (SimCLR, BYOL, MAE and any plugin
    with per-sample outputs) loop ``prepare_batch`` over one-sample slices; JEPA fixes the batch's
    keep ratio first; ECG-JEPA draws one time mask per batch, so there is nothing per sample to
    loop over and its batched ``prepare_batch`` is kept. A plugin whose per-sample outputs cannot
    be concatenated also keeps its own ``prepare_batch`` (noted as such).
    """
    if model.name == "jepa":
        return _jepa(model), "block masks per sample"
    if model.name == "ecg_jepa":
        return model.prepare_batch, "one mask per batch (nothing per sample)"
    probe = torch.zeros(2, len(model.cfg.data.leads), model.cfg.data.crop_samples)
    try:
        _per_sample(model)(probe, torch.Generator().manual_seed(0))
    except (ValueError, RuntimeError):
        return model.prepare_batch, "batched prepare_batch (per-sample outputs do not stack)"
    return _per_sample(model), "prepare_batch per sample"


def sklearn_validation_auroc(y: np.ndarray, window_logits: np.ndarray, aggregation: str) -> float:
    """Validation macro AUROC the straightforward way: scikit-learn per label (and AP beside
    it, as the record's metrics do), every epoch."""
    from bench.evaluate.metrics import aggregate_windows, label_metrics

    scores = aggregate_windows(window_logits, aggregation)
    return float(label_metrics(y, scores, [str(i) for i in range(y.shape[1])])["macro_auroc"])


def straightforward_fit_linear(
    train_features, y_train, val_features, y_val, cfg, aggregation, seed
):
    """The linear probe on every intra-op thread, validated with :func:`sklearn_validation_auroc`:
    the same maths and the same selected epoch as :func:`bench.evaluate.protocols.fit_linear`."""
    from bench.evaluate.protocols import fit_linear_with

    return fit_linear_with(
        train_features, y_train, val_features, y_val, cfg, aggregation, seed, None,
        sklearn_validation_auroc,
    )  # fmt: skip
