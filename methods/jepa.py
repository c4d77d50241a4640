"""JEPA for 12-lead ECG (Weimann & Conrad 2024, arXiv 2410.13867).

A context encoder sees only the kept tokens of a temporal multi-block mask; a narrow predictor
predicts, at every masked position, the features an EMA target encoder computes from the full
input. Tokens mix all leads (one token = 12 leads x 50 ms).

Paper defaults (PROTOCOL.md 2.1), all in :class:`JEPAConfig`: 500 Hz, 10 s crops, per-lead
normalisation then clip to [-5, 5]; 25-sample (50 ms) patches, 1-D sin-cos positions, one
register token; keep ratio U(0.15, 0.25) per batch, masked blocks >= 10 tokens, one mask per
sample with equal counts; predictor half the encoder width, same depth; target = EMA encoder's
final-LayerNorm output at masked positions, L1 loss; EMA momentum linear 0.998 -> 0.9995;
AdamW (0.9, 0.99), eps 1e-6, LR 1e-3 with 10k warm-up then cosine to 1e-6, weight decay cosine
0.01 -> 0.1 on Linear weights only, 100k steps, batch 2048, bf16; ViT-S.

Note:
    * The benchmarked encoder is the EMA target encoder (as in I-JEPA); the paper does not state
      which of the two it probes.
    * The predictor uses the encoder's head count (the paper lists 96/8/4 for XS and 192/8/6 for
      S, i.e. the same heads as the encoder).
    * Mask layout: see :func:`bench.encoders.jepa_block_mask` for the exact sampling scheme (the
      paper specifies ratios and the minimum block length, not the sampler).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from bench.encoders import TokenPredictor, gather_tokens, jepa_block_mask, sincos_1d
from bench.encoders.vit import predictor_defaults
from bench.method import (
    DataConfig,
    EncoderConfig,
    MethodConfig,
    OptimConfig,
    SSLMethod,
    encoder_from_config,
    linear,
    register_method,
)


@dataclass(frozen=True)
class JEPAConfig(MethodConfig):
    data: DataConfig = field(
        default_factory=lambda: DataConfig(rate=500, crop_seconds=10.0, clip=5.0)
    )
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(size="s", layout="mixed", patch_ms=50, n_registers=1)
    )
    optim: OptimConfig = field(default_factory=OptimConfig)
    keep_ratio: tuple[float, float] = (0.15, 0.25)
    min_block: int = 10
    ema: tuple[float, float] = (0.998, 0.9995)
    predictor_depth: int | None = None  # None: the encoder's depth


@register_method
class JEPA(SSLMethod):
    """JEPA (Weimann & Conrad 2024): mixed-lead tokens, multi-block masks, EMA target, L1."""

    name = "jepa"
    Config = JEPAConfig

    def __init__(self, cfg: JEPAConfig):
        super().__init__(cfg)
        self.encoder = encoder_from_config(cfg)
        self.target = self.ema_target(self.encoder)
        p = predictor_defaults(cfg.encoder.size)
        heads = cfg.encoder.heads or p["heads"]
        n_tokens = self.encoder.layout.n_tokens
        self.predictor = TokenPredictor(
            self.encoder.num_features,
            p["dim"],
            cfg.predictor_depth or p["depth"],
            heads,
            sincos_1d(n_tokens, p["dim"]),
        )

    def prepare_batch(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n_tokens = x.shape[-1] // self.encoder.layout.patch_size
        keep, mask = jepa_block_mask(
            x.shape[0], n_tokens, self.cfg.keep_ratio, self.cfg.min_block, generator
        )
        return {"x": x, "idx_keep": keep.to(x.device), "idx_mask": mask.to(x.device)}

    def training_step(self, batch, progress):
        x, keep, mask = batch["x"], batch["idx_keep"], batch["idx_mask"]
        with torch.no_grad():
            self.target.eval()
            target = gather_tokens(self.target.forward_tokens(x), mask)  # (B, M, D)
        context = self.encoder.forward_tokens(x, idx_keep=keep)  # (B, K, D)
        pred = self.predictor(context, keep, mask)  # (B, M, D)
        loss = F.l1_loss(pred.float(), target.float())
        return loss, {"keep_ratio": keep.shape[1] / (keep.shape[1] + mask.shape[1])}

    def momentum(self, progress: float) -> float:
        """EMA momentum: linear ``ema[0]`` -> ``ema[1]`` over training."""
        return linear(progress, *self.cfg.ema)

    def benchmark_encoder(self):
        return self.target

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        low = trial.suggest_float("keep_ratio_low", 0.1, 0.3)
        return {
            "optim.lr": trial.suggest_float("optim.lr", 1e-4, 3e-3, log=True),
            "keep_ratio": (low, low + 0.1),
        }
