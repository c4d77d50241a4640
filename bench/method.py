"""The SSL method contract and the registry every method plugs into.

A method is one file in ``methods/``: a ``Config`` dataclass whose defaults are the paper's
setting, and an :class:`SSLMethod` subclass decorated with ``@register_method``. The engine
(``bench/train.py``) owns data loading, optimisation, precision, checkpoints, distribution and
logging; the method only says what one step computes:

1. ``prepare_batch(x, generator)``: views, masks and index tensors for a batch of crops
   ``x`` ``(B, C, T)`` on the training device (batched tensor ops, no per-sample Python);
2. ``training_step(batch, progress)``: the loss and a dict of floats to log;
3. ``after_optimizer_step(progress)``: EMA target updates and the like (targets made with
   :meth:`SSLMethod.ema_target` are moved by the base class at ``momentum(progress)``).

Schedules are pure functions of ``progress`` = step / total steps, so a resumed run needs no
hidden state. ``benchmark_encoder()`` is the encoder the downstream protocols evaluate
(``self.encoder`` unless a method says otherwise). The parts several methods share live here
too: :class:`TwoViewConfig` / :class:`TwoViewMethod` (an encoder and the two augmented views of
SimCLR and BYOL) and the EMA target. Third-party packages register methods through the
``ecg_bench.methods`` entry-point group.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from bench.augment import AugmentConfig, TwoViews
from bench.data.ptbxl import LEADS_12
from bench.registry import Registry


@dataclass(frozen=True)
class DataConfig:
    """What the encoder sees. ``rate`` in Hz; ``crop_seconds`` of the pre-training crops.

    Signals are normalised per lead with mean / std computed on the training folds and stored
    with the checkpoint, then clipped to ``[-clip, clip]`` (0 disables the clip).
    """

    rate: int = 500
    leads: tuple[str, ...] = LEADS_12
    crop_seconds: float = 10.0
    clip: float = 5.0

    @property
    def crop_samples(self) -> int:
        return round(self.rate * self.crop_seconds)


@dataclass(frozen=True)
class EncoderConfig:
    """The shared 1-D ViT (PROTOCOL.md 3). ``patch_ms`` keeps a token's duration fixed across rates."""

    size: str = "s"
    heads: int | None = None  # None: the size's default (ECG-JEPA's paper uses 16 at width 768)
    layout: Literal["mixed", "lead"] = "mixed"
    patch_ms: int = 50
    n_registers: int = 0
    qkv_bias: bool = True
    drop_path: float = 0.0
    cropa: bool = False
    pos_every_block: bool = False
    pos_embed: str = "sincos"

    def __post_init__(self) -> None:
        # Checked here, when --encoder / --set make the config: the size is part of the run id,
        # a directory name, so an unknown one must fail before anything is written.
        from bench.encoders.vit import ENCODER_SIZES

        if self.size not in ENCODER_SIZES:
            from bench.errors import BenchError

            raise BenchError(
                f"unknown encoder size {self.size!r}",
                hint=f"valid sizes: {', '.join(ENCODER_SIZES)}",
            )

    def patch_size(self, rate: int) -> int:
        samples = rate * self.patch_ms / 1000
        if samples != int(samples) or samples < 1:
            raise ValueError(
                f"a {self.patch_ms} ms patch is not a whole number of samples at {rate} Hz"
            )
        return int(samples)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with warm-up + cosine LR and a cosine weight-decay schedule, all per step."""

    steps: int = 100_000
    batch_size: int = 2048
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_steps: int = 10_000
    weight_decay: float = 0.01
    weight_decay_end: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-6
    grad_clip: float = 0.0


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method config: data, encoder and optimiser groups plus the seed."""

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0


def cosine(progress: float, start: float, end: float) -> float:
    """Half-cosine from ``start`` (progress 0) to ``end`` (progress 1)."""
    p = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * p))


def linear(progress: float, start: float, end: float) -> float:
    p = min(max(progress, 0.0), 1.0)
    return start + (end - start) * p


def learning_rate(optim: OptimConfig, step: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps`` then cosine to ``min_lr`` at ``steps``."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    span = max(optim.steps - optim.warmup_steps, 1)
    return cosine((step - optim.warmup_steps) / span, optim.lr, optim.min_lr)


def weight_decay(optim: OptimConfig, step: int) -> float:
    return cosine(step / max(optim.steps, 1), optim.weight_decay, optim.weight_decay_end)


def decay_groups(*modules: nn.Module) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on Linear / Conv weights only; biases, norms, positions,
    mask and register tokens undecayed (JEPA; ECG-JEPA's "not on biases or 1-D parameters"
    differs only for token parameters)."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for sub in module.modules():
            for name, p in sub.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                is_weight = name == "weight" and isinstance(sub, nn.Linear | nn.Conv1d | nn.Conv2d)
                (decay if is_weight else no_decay).append(p)
    return [{"params": decay, "wd_scale": 1.0}, {"params": no_decay, "wd_scale": 0.0}]


def encoder_from_config(cfg: MethodConfig) -> nn.Module:
    """The shared 1-D ViT of a method config: layout from the data and encoder groups, size,
    options (registers, CroPA, positions). Every method builds its encoder(s) here, so a
    leaderboard row differs from another only by the objective and the recorded config."""
    from bench.encoders import TokenLayout, build_encoder

    e = cfg.encoder
    layout = TokenLayout(
        e.layout, len(cfg.data.leads), cfg.data.crop_samples, e.patch_size(cfg.data.rate)
    )
    options: dict[str, Any] = dict(
        qkv_bias=e.qkv_bias,
        drop_path=e.drop_path,
        n_registers=e.n_registers,
        pos_embed=e.pos_embed,
        pos_every_block=e.pos_every_block,
        cropa=e.cropa,
    )
    if e.heads is not None:
        options["heads"] = e.heads
    return build_encoder(e.size, layout, **options)


class SSLMethod(nn.Module):
    """Base class of the SSL methods. Subclasses set ``name`` and ``Config``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    #: Methods whose loss needs negatives from every rank set this (SimCLR).
    gathers_across_ranks: ClassVar[bool] = False
    #: The token layout a method's objective is written for (``"lead"``: one token per lead and
    #: patch, lead-major); None: any layout.
    needs_layout: ClassVar[str | None] = None

    def __init__(self, cfg: MethodConfig):
        super().__init__()
        if self.needs_layout is not None and cfg.encoder.layout != self.needs_layout:
            raise ValueError(
                f"{self.name} needs encoder.layout={self.needs_layout}, not {cfg.encoder.layout}"
            )
        self.cfg = cfg
        # (online, target) pairs made by ema_target, in creation order. A plain list: the
        # modules are registered (and checkpointed) under the attributes they are assigned to.
        self._ema_pairs: list[tuple[nn.Module, nn.Module]] = []

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        # The engine calls the module (not training_step) so DistributedDataParallel sees a forward.
        return self.training_step(batch, progress)

    def prepare_batch(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Views / masks for ``x`` ``(B, C, T)``; default: the crops themselves."""
        return {"x": x}

    def training_step(
        self, batch: dict[str, torch.Tensor], progress: float
    ) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        """``(loss, logs)``: the scalar loss, and named numbers to log every ``log_every`` steps.
        Give a monitored quantity as a 0-d tensor, not ``.item()``: the engine reads it when it
        logs, so a CUDA step never waits for the device."""
        raise NotImplementedError

    def ema_target(self, online: nn.Module) -> nn.Module:
        """A target network that follows ``online`` by EMA: a copy without gradients, equal to
        ``online`` at step 0, moved after every optimiser step to
        ``m * target + (1 - m) * online`` with ``m = momentum(progress)``. Assign it to an
        attribute, e.g. ``self.target = self.ema_target(self.encoder)``: its weights are part of
        the checkpoint."""
        target = copy.deepcopy(online).requires_grad_(False)
        self._ema_pairs.append((online, target))
        return target

    def momentum(self, progress: float) -> float:
        """The EMA momentum at ``progress``; a method with an :meth:`ema_target` defines it."""
        raise NotImplementedError(f"{type(self).__name__} has EMA targets but no momentum()")

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        """Per-step bookkeeping after ``optimizer.step()``: moves every EMA target towards its
        online network. A method that overrides it calls ``super().after_optimizer_step``."""
        if not self._ema_pairs:
            return
        from lightly.models.utils import update_momentum  # lightly is slow to import

        m = self.momentum(progress)
        for online, target in self._ema_pairs:
            update_momentum(online, target, m)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Every trainable parameter (EMA targets take no gradient, so they are left out)."""
        return decay_groups(self)

    def benchmark_encoder(self) -> nn.Module:
        """The encoder the downstream protocols evaluate: ``forward(x) -> (B, num_features)``;
        by default ``self.encoder``."""
        return self.encoder

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        """Optuna search space over pre-training hyperparameters, as ``--set`` overrides."""
        return {"optim.lr": trial.suggest_float("optim.lr", 1e-5, 3e-3, log=True)}


@dataclass(frozen=True)
class TwoViewConfig(MethodConfig):
    """The ECG setting of Mehari & Strodthoff 2022 shared by SimCLR and BYOL: 100 Hz, 10 s crops
    from the cache, two augmented 2.5 s views of one window, ViT-S with 50 ms mixed-lead tokens,
    their optimiser."""

    data: DataConfig = field(
        default_factory=lambda: DataConfig(rate=100, crop_seconds=10.0, clip=5.0)
    )
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(size="s", layout="mixed", patch_ms=50, n_registers=0)
    )
    # Their optimiser (SimCLR / BYOL scripts with bolts_config.yaml): Adam, LR 2.29e-3, 40
    # warm-up steps (10 epochs) then cosine to 0, batch 4096, 2000 epochs = 8,000 steps of
    # PTB-XL folds 1-8, constant weight decay 1e-6 (their SimCLR's; BYOL sets its own).
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            steps=8_000,
            batch_size=4096,
            lr=2.29e-3,
            min_lr=0.0,
            warmup_steps=40,
            weight_decay=1e-6,
            weight_decay_end=1e-6,
            betas=(0.9, 0.999),
            eps=1e-8,
        )
    )
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    window_seconds: float = 2.5  # shared window both views come from; also the view length


class TwoViewMethod(SSLMethod):
    """Base of the two-view methods: builds ``self.encoder`` and the view pipeline
    (:class:`bench.augment.TwoViews`); ``prepare_batch`` gives the views ``x1``, ``x2``.
    ``self.window`` is the view length in samples (whole encoder patches)."""

    Config: ClassVar[type[MethodConfig]] = TwoViewConfig

    def __init__(self, cfg: TwoViewConfig):
        super().__init__(cfg)
        self.encoder = encoder_from_config(cfg)
        patch = self.encoder.layout.patch_size
        self.two_views = TwoViews(
            cfg.augment, cfg.data.rate, cfg.window_seconds, cfg.data.crop_samples, patch
        )
        self.window = self.two_views.window

    def prepare_batch(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``x`` ``(B, C, T)`` -> views ``x1``, ``x2`` ``(B, C, window)`` of one shared window."""
        return self.two_views(x, generator)


METHODS: Registry[type[SSLMethod]] = Registry(
    "method", builtin_module="methods", entry_point_group="ecg_bench.methods"
)


def register_method(cls: type[SSLMethod]) -> type[SSLMethod]:
    """Class decorator: register a method under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} must set a name")
    METHODS.register(cls.name, cls)
    return cls
