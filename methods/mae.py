"""Masked autoencoding of ECG patches, ST-MEM style (Na et al., ICLR 2024, arXiv 2402.09450).

Every lead is cut into 300 ms patches (one token per lead and patch, lead-major). Each lead of
each sample hides 75 % of its patches at random, independently of the other leads; the encoder
sees only the visible tokens; a small decoder gets the encoded visible tokens plus a learnable
mask token at every hidden position and regresses the raw samples of the hidden patches,
normalised per patch (``norm_pix_loss``). Loss: MSE over the hidden patches only.

Defaults (PROTOCOL.md 2.3 and ST-MEM's released code, github.com/bakqui/ST-MEM), all in
:class:`MAEConfig`:

=====================  ===================================================================
data                   12 leads, 250 Hz, random 9 s crops (2,250 samples: ST-MEM's input
                       length, ``seq_len=2250``), i.e. 30 patches per lead
tokens                 75-sample (300 ms) patches per lead -> 12 x 30 = 360 tokens; fixed
                       1-D sin-cos time positions shared by all leads plus a learned lead
                       embedding (``encoder.pos_embed="sincos_time+lead_embed"``)
encoder                ViT-B (ST-MEM's ``st_mem_vit_base_dec256d4b``): width 768, 12
                       layers, 12 heads, qkv bias, no drop-path; visible tokens only
mask                   75 % of the patches of every lead, drawn independently per lead and
                       sample (:func:`bench.encoders.mae_lead_mask`)
decoder                width 256, 4 blocks, 4 heads (ST-MEM: 4 heads x 64), learnable mask
                       token, 1-D sin-cos time positions at width 256, ``Linear(256, 75)``
                       per token; lead-wise: each lead decoded separately by the shared
                       decoder (``decoder_leadwise``), as ST-MEM does
loss                   MSE over the masked patches; targets normalised per patch
                       ((x - mean) / sqrt(var + 1e-6), unbiased var as in MAE / ST-MEM)
optimiser              AdamW betas (0.9, 0.95), eps 1e-8; LR = base 1.5e-4 x batch / 256
                       (MAE rule in ST-MEM's ``main_pretrain.py``) = 1.5e-4 at the default
                       batch 256; linear warm-up then half-cycle cosine to 0; weight decay
                       0.01 (ST-MEM's ``configs/pretrain/st_mem.yaml``), constant; 800
                       epochs with 40 warm-up epochs (MAE recipe; see the Note)
representation         mean over all tokens (final LayerNorm) of the encoder
=====================  ===================================================================

Note:
    * Schedule: ``optim.steps`` = 800 epochs of PTB-XL folds 1-8 (~17.4k records) at batch 256
      = 68 steps per epoch -> 54,400 steps; warm-up 40 epochs = 2,720 steps. The epoch count,
      warm-up and batch size are the MAE recipe (He et al. 2022) that ST-MEM's code follows; they
      could not be checked against the ST-MEM paper here (its released config is a 10-epoch
      example on dummy data with batch 16, 3 warm-up epochs). The batch is set to 256, the
      reference batch of the LR rule, so ``optim.lr`` is the base LR; ``optim.lr`` is absolute:
      change it with the batch (x batch / 256) to follow the rule.
    * Weight decay 0.01 is the value in ST-MEM's released config (the MAE recipe uses 0.05). ST-MEM
      decays every parameter; the harness skips biases, norms, the lead embedding and the mask
      token (:func:`bench.method.decay_groups`).
    * Data: pre-training uses PTB-XL folds 1-8 (PROTOCOL.md 2), not ST-MEM's Chapman, Ningbo and
      CODE-15. Inputs get the harness normalisation (per-lead mean / std of the training folds,
      clip to [-5, 5]); ST-MEM band-passes 0.67-40 Hz and standardises each record.
    * No [SEP] tokens: ST-MEM puts a learned [SEP] embedding at both ends of every lead (positions
      0 and P + 1, patches at 1..P); the shared ViT1D has none, so patch positions are 0..P-1.
    * Patch embedding is one Linear (ST-MEM: LayerNorm(75) -> Linear -> LayerNorm(768)); the
      pooled representation is the mean of the final-LayerNorm tokens (ST-MEM: LayerNorm of
      the mean); weights use trunc-normal(0.02) init (ST-MEM: xavier-uniform).
    * Masked count: ``round(30 x 0.75) = 22`` of 30 patches per lead; ST-MEM keeps
      ``int(30 x 0.25) = 7``, masking 23.
    * Presets: ``smoke`` shrinks the decoder to 32 wide / 2 heads and ``cpu`` to 128 wide / 2
      heads (ST-MEM keeps 256 at every encoder size), so that the decoder does not dominate a
      tiny or xs encoder's CPU run; depth 4, masking and loss are unchanged.
    * Decoding is lead-wise by default, as in ST-MEM's ``forward_decoder`` (each lead's row of
      visible tokens plus mask tokens goes through the shared blocks on its own, no lead
      embedding in the decoder). ``decoder_leadwise=false`` gives a joint decoder over all
      leads' tokens with a learned lead embedding at the decoder width (``TokenPredictor(...,
      lead_embed=n_leads)``, plain MAE on lead tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bench.data.ptbxl import LEADS_12
from bench.encoders import TokenPredictor, gather_tokens, lead_rows, mae_lead_mask, sincos_1d
from bench.method import (
    DataConfig,
    EncoderConfig,
    MethodConfig,
    OptimConfig,
    SSLMethod,
    encoder_from_config,
    register_method,
)
from bench.presets import register_preset_overrides


@dataclass(frozen=True)
class MAEConfig(MethodConfig):
    data: DataConfig = field(
        default_factory=lambda: DataConfig(rate=250, leads=LEADS_12, crop_seconds=9.0, clip=5.0)
    )
    encoder: EncoderConfig = field(
        # ViT-B with its 12 heads, qkv bias, no drop-path, no registers: EncoderConfig's defaults.
        default_factory=lambda: EncoderConfig(
            size="b", layout="lead", patch_ms=300, pos_embed="sincos_time+lead_embed"
        )
    )
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            steps=54_400,
            batch_size=256,
            lr=1.5e-4,
            min_lr=0.0,
            warmup_steps=2_720,
            weight_decay=0.01,
            weight_decay_end=0.01,
            betas=(0.9, 0.95),
            eps=1e-8,
        )
    )
    mask_ratio: float = 0.75
    decoder_dim: int = 256
    decoder_depth: int = 4
    decoder_heads: int = 4
    decoder_leadwise: bool = True
    norm_pix_loss: bool = True
    norm_pix_eps: float = 1e-6


def norm_pix(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-patch normalised targets: ``(patch - mean) / sqrt(var + eps)`` over the last axis.

    ``var`` is the unbiased variance, as in MAE's and ST-MEM's ``forward_loss``. Shape kept.
    """
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


@register_method
class MAE(SSLMethod):
    """ST-MEM-style masked autoencoder: per-lead patches, lead embedding, per-lead masks."""

    name = "mae"
    Config = MAEConfig
    needs_layout = "lead"  # per-lead masks and lead-wise decoding

    def __init__(self, cfg: MAEConfig):
        super().__init__(cfg)
        self.encoder = encoder_from_config(cfg)
        layout = self.encoder.layout
        self.decoder = TokenPredictor(
            self.encoder.num_features,
            cfg.decoder_dim,
            cfg.decoder_depth,
            cfg.decoder_heads,
            sincos_1d(layout.n_time, cfg.decoder_dim),
            out_dim=layout.patch_size,
            # Lead-wise rows carry one lead each; the joint decoder needs to know the lead.
            lead_embed=0 if cfg.decoder_leadwise else layout.n_leads,
        )

    def prepare_batch(self, x: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Independent per-lead masks: ``idx_keep`` ``(B, L*Kp)``, ``idx_mask`` ``(B, L*Mp)``,
        lead-major token indices, sorted (each lead's block contiguous)."""
        n_time = x.shape[-1] // self.encoder.layout.patch_size
        keep, mask = mae_lead_mask(x.shape[0], x.shape[1], n_time, self.cfg.mask_ratio, generator)
        return {"x": x, "idx_keep": keep.to(x.device), "idx_mask": mask.to(x.device)}

    def decode(self, latent: Tensor, idx_keep: Tensor, idx_mask: Tensor, n_time: int) -> Tensor:
        """Reconstruct the masked patches: ``latent`` ``(B, L*Kp, D)`` -> ``(B, L*Mp, patch)``
        in the order of ``idx_mask``."""
        if not self.cfg.decoder_leadwise:
            return self.decoder(latent, idx_keep, idx_mask)
        # One lead per row, positions by time: (B*L, Kp, D) context -> (B*L, Mp, patch).
        n_leads = self.encoder.layout.n_leads
        pred = self.decoder(
            lead_rows(latent, n_leads),
            lead_rows(idx_keep % n_time, n_leads),
            lead_rows(idx_mask % n_time, n_leads),
        )
        return pred.reshape(latent.shape[0], -1, pred.shape[-1])

    def targets(self, x: Tensor, idx_mask: Tensor) -> Tensor:
        """Raw patches at ``idx_mask`` (``(B, L*Mp, patch)`` float32), per-patch normalised when
        ``norm_pix_loss``."""
        patches = gather_tokens(self.encoder.patchify(x.float()), idx_mask)
        return norm_pix(patches, self.cfg.norm_pix_eps) if self.cfg.norm_pix_loss else patches

    def training_step(self, batch, progress):
        x, keep, mask = batch["x"], batch["idx_keep"], batch["idx_mask"]
        latent = self.encoder.forward_tokens(x, idx_keep=keep)  # (B, L*Kp, D)
        pred = self.decode(latent, keep, mask, x.shape[-1] // self.encoder.layout.patch_size)
        # Predictions exist only at masked positions: the loss cannot see a visible patch.
        loss = (pred.float() - self.targets(x, mask)).pow(2).mean()
        return loss, {"mask_ratio": mask.shape[1] / (keep.shape[1] + mask.shape[1])}

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {
            "optim.lr": trial.suggest_float("optim.lr", 3e-5, 1e-3, log=True),
            "mask_ratio": trial.suggest_float("mask_ratio", 0.5, 0.9),
        }


# ST-MEM's decoder is 256 wide whatever the encoder; next to a tiny or xs encoder on a CPU it
# would cost ~10x the encoder, so these presets shrink its width (depth 4 is kept): smoke to the
# tiny encoder's width (head width 16), cpu to 128 with ST-MEM's head width 64.
register_preset_overrides("smoke", MAE.name, {"decoder_dim": 32, "decoder_heads": 2})
for _preset in ("cpu", "gpu"):  # the xs encoder's decoder
    register_preset_overrides(_preset, MAE.name, {"decoder_dim": 128, "decoder_heads": 2})
