"""BYOL (Grill et al. 2020, NeurIPS, arXiv 2006.07733) with the ECG views of Mehari & Strodthoff
2022 (Computers in Biology and Medicine 141:105114, arXiv 2103.12676).

An online network (encoder -> projector -> predictor) predicts the projection that a slowly
moving EMA target network (encoder -> projector, no gradient) computes for the other view of the
same record; no negatives. Loss per direction: the normalised MSE
``|| p / |p| - z / |z| ||^2 = 2 - 2 cos(p, z)``, symmetrised over the two directions
(PROTOCOL.md 2.5). Target momentum follows a half-cosine from 0.99 to 1.0 over training.

Views: exactly those of :mod:`methods.simclr` (a shared random 2.5 s window of the 10 s crop;
per view a random resized crop of 50-100 % resampled to 250 samples, then time-out of 20-40 %).
Encoder: the shared ViT, ``mixed`` layout, 50 ms patches at 100 Hz, ViT-S, no registers. The
benchmarked encoder is the online encoder (Grill et al. evaluate the online network).

Heads (Grill et al., as in lightly): projector Linear(d, 4096)-BN-ReLU-Linear(4096, 256),
predictor of the same shape on 256. Optimiser (Mehari & Strodthoff's ``custom_byol_bolts.py`` +
``bolts_config.yaml``, README command ``--batch_size 4096 --epochs 2000 --precision 16``): Adam,
LR 2.29e-3, 10 warm-up epochs then cosine to 0, weight decay 1e-5, batch 4096, 2000 epochs
(= 8,000 steps on PTB-XL folds 1-8).

Note:
    * Backbone: the shared ViT instead of the paper's xresnet1d50 (published: all statements,
      fine-tune 0.929 / linear 0.878). Pre-training on PTB-XL folds 1-8 only (theirs: the
      CinC 2020, Zheng (Chapman-Shaoxing) and Ribeiro collections).
    * Momentum 0.99 -> 1.0 as PROTOCOL.md 2.5 states; Grill et al. use 0.996 (ImageNet) and
      Mehari & Strodthoff's code the same 0.996 (pl_bolts default), updating only parameters
      named ``weight`` (a quirk we do not copy: every parameter is averaged here).
    * Loss scale: the mean of the two directions, ``(L12 + L21) / 2`` in [0, 4]; Grill et al.
      and Mehari & Strodthoff sum them. Adam(W) is invariant to a constant loss factor (up to
      eps), so only the logged value differs.
    * Heads: Grill et al.'s 4096 / 256 rather than Mehari & Strodthoff's 512 hidden /
      16 out (their released config). Both views pass the encoder as one batch (the ViT has
      no batch-dependent layer, so this is exact); the heads see each view separately so
      BatchNorm statistics are per view, as in Grill et al.'s implementation; per rank under
      DDP.
    * Optimiser: the engine's AdamW (decoupled decay) for their Adam with L2 1e-5; decay on
      Linear weights only (theirs: every parameter). Grill et al.'s LARS at LR 0.2 x bs/256 is
      an image-scale recipe we do not use.
    * BatchNorm layers of the heads keep no running statistics (they would never be used:
      the heads only run in training mode and are not benchmarked); this keeps DDP ranks
      bitwise identical. Training behaviour is unchanged.
    * The target network runs in training mode (BatchNorm on batch statistics), as in
      Grill et al.'s implementation, but without gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

from bench.augment import batch_statistics_only
from bench.method import OptimConfig, TwoViewConfig, TwoViewMethod, cosine, register_method


@dataclass(frozen=True)
class BYOLConfig(TwoViewConfig):
    # Mehari & Strodthoff's optimiser (TwoViewConfig's) with their BYOL's weight decay.
    optim: OptimConfig = field(
        default_factory=lambda: replace(
            TwoViewConfig().optim, weight_decay=1e-5, weight_decay_end=1e-5
        )
    )
    momentum: tuple[float, float] = (0.99, 1.0)  # target EMA, half-cosine start -> end
    proj_hidden_dim: int = 4096
    proj_dim: int = 256
    pred_hidden_dim: int = 4096


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(p, z)`` averaged over the batch (= MSE of the L2-normalised vectors).

    Args:
        p: ``(N, P)`` online predictions; z: ``(N, P)`` target projections (no gradient).
    """
    # lightly's NegativeCosineSimilarity is -mean(cos): 2 + 2 * (-cos) = 2 - 2 cos.
    return 2 + 2 * NegativeCosineSimilarity()(p, z)


@register_method
class BYOL(TwoViewMethod):
    """BYOL (Grill et al. 2020): online encoder/projector/predictor, EMA target, 2 - 2 cos."""

    name = "byol"
    Config = BYOLConfig

    def __init__(self, cfg: BYOLConfig):
        super().__init__(cfg)  # the online encoder and the two-view pipeline
        self.projector = batch_statistics_only(
            BYOLProjectionHead(self.encoder.num_features, cfg.proj_hidden_dim, cfg.proj_dim)
        )
        self.predictor = batch_statistics_only(
            BYOLPredictionHead(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)
        )
        self.target_encoder = self.ema_target(self.encoder)
        self.target_projector = self.ema_target(self.projector)

    def momentum(self, progress: float) -> float:
        """Target EMA momentum at ``progress``: half-cosine ``momentum[0]`` -> ``momentum[1]``."""
        return cosine(progress, *self.cfg.momentum)

    def training_step(self, batch, progress):
        x1, x2 = batch["x1"], batch["x2"]
        both = torch.cat([x1, x2])  # (2N, C, T): one encoder pass for both views
        h1, h2 = self.encoder(both).chunk(2)  # (N, D) each
        p1 = self.predictor(self.projector(h1))  # (N, P)
        p2 = self.predictor(self.projector(h2))
        with torch.no_grad():
            g1, g2 = self.target_encoder(both).chunk(2)
            z1, z2 = self.target_projector(g1), self.target_projector(g2)  # (N, P)
        with torch.autocast(device_type=both.device.type, enabled=False):
            loss = 0.5 * (byol_loss(p1.float(), z2.float()) + byol_loss(p2.float(), z1.float()))
            # Collapse monitor: per-dimension std of the normalised projections (~1/sqrt(P)
            # when healthy, 0 when collapsed).
            spread = torch.nn.functional.normalize(z1.float(), dim=1).std(dim=0).mean()
        return loss, {"momentum": self.momentum(progress), "target_z_std": spread}

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {
            "optim.lr": trial.suggest_float("optim.lr", 1e-4, 5e-3, log=True),
            "momentum": (trial.suggest_float("momentum_start", 0.9, 0.999), 1.0),
        }
