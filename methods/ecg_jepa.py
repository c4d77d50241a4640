"""ECG-JEPA with Cross-Pattern Attention (Kim 2024, arXiv 2410.08559).

Tokens are per lead: one token = one lead x 200 ms, lead-major (``index = lead * P + time``).
A context encoder sees only the time columns that a mini-batch mask keeps (the same columns in
every lead); a narrow predictor, run on each lead separately, predicts at the masked columns the
layer-normed features that an EMA target encoder computes from the full input. In every encoder
block, Cross-Pattern Attention (CroPA) lets the token at (lead l, time t) attend only to the
tokens of lead l and to every lead's token at time t.

Paper defaults (PROTOCOL.md 2.2), all in :class:`ECGJEPAConfig`:

=====================  ===================================================================
data                   8 leads (I, II, V1-V6), 250 Hz, 10 s crops (2,500 samples)
tokens                 50-sample (200 ms) patches per lead -> 8 x 50 = 400 tokens, linear
                       patch embedding, fixed 2-D (lead, time) sin-cos positions added at
                       the input of every block
encoder                ViT-B: width 768, 12 layers, 16 heads, no qkv bias, drop-path 0.1,
                       CroPA in every block (context and target encoder, and at inference)
mask                   time columns only, shared by all leads, one mask per mini-batch;
                       ``multiblock`` (default): union of 4 blocks of int(P x U(0.175,
                       0.225)) patches; ``random``: int(P x U(0.6, 0.7)) columns
predictor              width 384, depth 6, 12 heads, no CroPA, each lead separately
                       (tokens reshaped to batch x lead), learnable mask token, 1-D time
                       sin-cos positions (added at every block, as in the author's code)
target                 target encoder on the full input, ``layer_norm`` over features, at
                       the masked columns of every lead
loss                   SmoothL1 (beta 1)
EMA                    momentum linear 0.996 -> 1.0 over training
optimiser              AdamW (torch defaults: betas (0.9, 0.999), eps 1e-8), weight decay
                       0.05 (constant), LR 5e-5 (multi-block, batch 64), 5 % linear
                       warm-up (5 of 100 epochs), cosine to 1e-6
representation         mean over all 400 tokens (final LayerNorm, CroPA on) of the
                       *context* encoder
=====================  ===================================================================

Scaling rule for other encoder sizes: predictor width = half the encoder width, depth 6, heads
= width / 32 (the paper's head width, 384 / 12; the largest divisor of the width not above
that, at least 1). ``xs`` -> 96/6/3, ``s`` -> 192/6/6, ``b`` -> 384/6/12, ``tiny`` -> 16/6/1.

Note:
    * Data: pre-training uses PTB-XL folds 1-8 (PROTOCOL.md 2), not the paper's ~180k records
      of Chapman, Ningbo and CODE-15. ``optim.steps`` = 100 epochs of PTB-XL folds 1-8 at batch
      64 (~17.4k records -> 272 steps per epoch -> 27,200 steps); warm-up 5 epochs = 1,360
      steps. Inputs get the harness normalisation (per-lead mean / std of the training folds,
      clip to [-5, 5]); the author's code feeds the resampled signals in mV.
    * The benchmarked encoder is the context encoder: the author's released checkpoints store
      ``model.encoder`` (the context encoder), and its ``representation`` pools that one.
    * The target encoder runs in eval mode (no drop-path), as in :mod:`methods.jepa`; the
      author's code leaves it in train mode, so its targets see drop-path 0.1.
    * LR schedule: the harness warms up linearly from ``lr / warmup_steps`` and runs the cosine
      over the steps after warm-up; the author's timm ``CosineLRScheduler`` warms up from 1e-6
      and runs the cosine over all steps (warm-up replacing its first 5 %).
    * Weight decay skips every non-Linear parameter (:func:`bench.method.decay_groups`); the
      author's code skips biases and 1-D parameters only, so it also decays the (1, 1, D)
      mask token.
    * Initialisation is the shared ViT1D one (trunc-normal 0.02, LayerNorm eps 1e-6); the author
      also rescales each block's ``attn.proj`` and ``mlp.fc2`` weights by 1/sqrt(2 * layer)
      (the I-JEPA recipe) and uses LayerNorm eps 1e-5.
    * Multi-block starts are uniform over ``[0, P - size]`` (the author's code: ``[0, P - size
      - 1]``); see :func:`bench.encoders.ecg_jepa_time_mask`.
    * Predictor positions are ``sincos_1d`` over time; the author builds them with the 2-D
      sin-cos function on a one-row grid, so half of its channels are constant.
      The predictor uses the encoder's ``qkv_bias`` and ``drop_path``, like the author's code.
    * The engine trains in bf16 autocast; the author used fp16 autocast with a GradScaler.
    * The paper's encoder has 16 heads at width 768 (head width 48). The ``smoke`` and ``cpu``
      presets reset ``encoder.heads`` to the size's default (tiny 2, xs 4: head width 16, 48)
      instead of keeping 16 heads on a narrow encoder (head width 2 or 12).
    * Under torchrun each rank draws its own mask for its share of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.data.ptbxl import LEADS_8
from bench.encoders import (
    TokenPredictor,
    ecg_jepa_time_mask,
    lead_rows,
    sincos_1d,
    time_to_token_indices,
)
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
from bench.presets import register_preset_overrides

PREDICTOR_HEAD_DIM = 32  # the paper's predictor: 384 wide, 12 heads


@dataclass(frozen=True)
class ECGJEPAConfig(MethodConfig):
    data: DataConfig = field(
        default_factory=lambda: DataConfig(rate=250, leads=LEADS_8, crop_seconds=10.0, clip=5.0)
    )
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(
            size="b",
            heads=16,
            layout="lead",
            patch_ms=200,
            qkv_bias=False,
            drop_path=0.1,
            cropa=True,
            pos_every_block=True,
        )
    )
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            steps=27_200,
            batch_size=64,
            lr=5e-5,
            min_lr=1e-6,
            warmup_steps=1_360,
            weight_decay=0.05,
            weight_decay_end=0.05,
            betas=(0.9, 0.999),
            eps=1e-8,
        )
    )
    mask: Literal["multiblock", "random"] = "multiblock"
    n_blocks: int = 4
    block_frac: tuple[float, float] = (0.175, 0.225)
    random_frac: tuple[float, float] = (0.6, 0.7)
    ema: tuple[float, float] = (0.996, 1.0)
    predictor_dim: int | None = None  # None: half the encoder width
    predictor_depth: int = 6
    predictor_heads: int | None = None  # None: predictor_dim / 32 (see predictor_heads)
    predictor_pos_every_block: bool = True
    smooth_l1_beta: float = 1.0


def predictor_heads(dim: int, head_dim: int = PREDICTOR_HEAD_DIM) -> int:
    """Heads for a predictor of width ``dim``: the largest divisor of ``dim`` not above
    ``dim / head_dim`` (at least 1), i.e. head width ~32 as in the paper's 384 / 12."""
    heads = max(dim // head_dim, 1)
    while dim % heads:
        heads -= 1
    return heads


class LeadPredictor(TokenPredictor):
    """The ECG-JEPA predictor: a :class:`TokenPredictor` run on one lead per row.

    Rows are ``(batch x lead)``; token indices are *time* indices, so ``pos_table`` is
    ``(P, dim)`` over time. With ``pos_every_block`` the positions are added at the input of
    every block (the author's ``Predictor_Block``), otherwise once, as in the base class.

    Shapes: ``ctx`` ``(B*L, Kt, in_dim)``, ``idx_ctx`` ``(B*L, Kt)``, ``idx_tgt`` ``(B*L, Mt)``
    -> ``(B*L, Mt, out_dim)``.
    """

    def __init__(self, *args, pos_every_block: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pos_every_block = pos_every_block

    def forward(self, ctx: Tensor, idx_ctx: Tensor, idx_tgt: Tensor) -> Tensor:
        if not self.pos_every_block:
            return super().forward(ctx, idx_ctx, idx_tgt)
        if ctx.ndim != 3 or idx_ctx.shape != ctx.shape[:2] or idx_tgt.shape[0] != ctx.shape[0]:
            raise ValueError(
                f"expected ctx (R, K, D), idx_ctx (R, K), idx_tgt (R, M); got "
                f"{tuple(ctx.shape)}, {tuple(idx_ctx.shape)}, {tuple(idx_tgt.shape)}"
            )
        rows, k, _ = ctx.shape
        targets = self.mask_token.expand(rows, idx_tgt.shape[1], -1)
        x = torch.cat([self.embed(ctx).to(targets.dtype), targets], dim=1)
        pos = torch.cat([self.positions(idx_ctx), self.positions(idx_tgt)], dim=1)
        for block in self.blocks:
            x = block(x + pos)
        return self.head(self.norm(x[:, k:]))


@register_method
class ECGJEPA(SSLMethod):
    """ECG-JEPA (Kim 2024): per-lead tokens, CroPA, time-column masks, per-lead predictor."""

    name = "ecg_jepa"
    Config = ECGJEPAConfig
    needs_layout = "lead"  # time-column masks over every lead, a per-lead predictor

    def __init__(self, cfg: ECGJEPAConfig):
        super().__init__(cfg)
        self.encoder = encoder_from_config(cfg)
        self.target = self.ema_target(self.encoder)
        dim = cfg.predictor_dim or self.encoder.num_features // 2
        self.predictor = LeadPredictor(
            self.encoder.num_features,
            dim,
            cfg.predictor_depth,
            cfg.predictor_heads or predictor_heads(dim),
            sincos_1d(self.encoder.layout.n_time, dim),
            qkv_bias=cfg.encoder.qkv_bias,
            drop_path=cfg.encoder.drop_path,
            pos_every_block=cfg.predictor_pos_every_block,
        )

    def prepare_batch(self, x: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """One time mask for the whole batch, the same columns in every lead.

        Returns ``x`` ``(B, L, T)``, ``keep_times`` ``(Kt,)``, ``mask_times`` ``(Mt,)`` and
        ``idx_keep`` ``(B, L*Kt)``: the lead-major token indices the context encoder sees.
        """
        c = self.cfg
        n_leads, n_time = x.shape[1], x.shape[-1] // self.encoder.layout.patch_size
        keep_t, mask_t = ecg_jepa_time_mask(
            n_time, c.mask, c.n_blocks, c.block_frac, c.random_frac, generator
        )
        keep_t, mask_t = (
            keep_t.to(x.device, non_blocking=True),
            mask_t.to(x.device, non_blocking=True),
        )
        idx_keep = time_to_token_indices(keep_t, n_leads, n_time).expand(x.shape[0], -1)
        return {"x": x, "keep_times": keep_t, "mask_times": mask_t, "idx_keep": idx_keep}

    def targets(self, x: Tensor, mask_times: Tensor) -> Tensor:
        """Layer-normed target-encoder features at the masked columns: ``(B*L, Mt, D)`` float32,
        rows ordered batch-major then lead (the predictor's order)."""
        with torch.no_grad():
            self.target.eval()
            h = self.target.forward_tokens(x)  # (B, L*P, D), CroPA over the full grid
            h = F.layer_norm(h.float(), (h.shape[-1],))
            return lead_rows(h, x.shape[1])[:, mask_times]  # (B*L, P, D) -> (B*L, Mt, D)

    def training_step(self, batch, progress):
        x, keep_t, mask_t = batch["x"], batch["keep_times"], batch["mask_times"]
        target = self.targets(x, mask_t)  # (B*L, Mt, D)
        context = self.encoder.forward_tokens(x, idx_keep=batch["idx_keep"])  # (B, L*Kt, D)
        context = lead_rows(context, x.shape[1])  # (B*L, Kt, D)
        rows = context.shape[0]
        pred = self.predictor(
            context, keep_t.expand(rows, -1), mask_t.expand(rows, -1)
        )  # (B*L, Mt, D)
        loss = F.smooth_l1_loss(pred.float(), target, beta=self.cfg.smooth_l1_beta)
        n_time = keep_t.numel() + mask_t.numel()
        return loss, {"mask_ratio": mask_t.numel() / n_time}

    def momentum(self, progress: float) -> float:
        """EMA momentum: linear ``ema[0]`` -> ``ema[1]`` over training."""
        return linear(progress, *self.cfg.ema)

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        variant = trial.suggest_categorical("mask", ["multiblock", "random"])
        space: dict[str, Any] = {
            "optim.lr": trial.suggest_float("optim.lr", 1e-5, 5e-4, log=True),
            "mask": variant,
        }
        if variant == "multiblock":
            low = trial.suggest_float("block_frac_low", 0.1, 0.25)
            space["block_frac"] = (low, low + 0.05)
        else:
            low = trial.suggest_float("random_frac_low", 0.4, 0.75)
            space["random_frac"] = (low, low + 0.1)
        return space


# Narrow encoders keep their size's head count (head width 16 / 48) rather than 16 heads.
for _preset in ("smoke", "cpu", "gpu"):
    register_preset_overrides(_preset, ECGJEPA.name, {"encoder.heads": None})
# CroPA's per-sample (B, 1, K, K) masks keep SDPA off its fastest path on CPU: a 2-core run of the
# `cpu` preset fits its ~10 minute budget with half the batch and fewer steps.
register_preset_overrides(
    "cpu", ECGJEPA.name, {"optim.batch_size": 32, "optim.steps": 150, "optim.warmup_steps": 15}
)
