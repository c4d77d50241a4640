"""What a leaderboard row evaluates: a pre-trained SSL encoder or a reference row.

* an SSL method (``jepa``, ``mae`` ...): pre-trained on folds 1-8 by :func:`bench.train.pretrain`
  (a finished run with the same config and data is reused), its benchmarked encoder evaluated;
* ``random``: the same encoder family, randomly initialised, through the frozen probes (the
  floor every SSL method must clear);
* ``supervised``: that random initialisation trained end to end on each task with the
  fine-tune recipe (encoder learning rate not lowered: there is nothing to preserve), the
  ceiling to compare with (PROTOCOL.md 2.6).

The reference rows default to JEPA's paper encoder (mixed layout, 50 ms patches, one register);
``--set encoder.layout=lead ...`` gives the floor / ceiling of another layout.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.config import apply_overrides, config_hash, to_dict
from bench.data.cache import SignalCache
from bench.data.transforms import lead_indices
from bench.errors import BenchError
from bench.method import METHODS, DataConfig, EncoderConfig, MethodConfig, encoder_from_config

REFERENCES = ("random", "supervised")
REFERENCE_PROTOCOLS = {"random": ("linear", "attentive"), "supervised": ("finetune",)}
REFERENCE_EVAL_OVERRIDES = {"supervised": {"finetune.encoder_lr_scale": 1.0}}


@dataclass(frozen=True)
class ReferenceConfig(MethodConfig):
    """Encoder of the reference rows: JEPA's paper encoder (PROTOCOL.md 2.1 / 3)."""

    data: DataConfig = field(default_factory=lambda: DataConfig(rate=500, crop_seconds=10.0))
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(size="s", layout="mixed", patch_ms=50, n_registers=1)
    )


def method_names(selection: str) -> list[str]:
    """``all`` -> every registered method then the reference rows; else a comma list."""
    if selection.strip() == "all":
        return [*METHODS.names(), *REFERENCES]
    names = [s.strip() for s in selection.split(",") if s.strip()]
    if not names:
        raise BenchError("no method given", hint=f"valid: all, {', '.join(known_methods())}")
    for name in names:
        if name not in REFERENCES:
            METHODS.get(name)  # unknown names raise with the valid list
    return list(dict.fromkeys(names))


def known_methods() -> list[str]:
    return [*METHODS.names(), *REFERENCES]


def subject_config(
    name: str, preset: str | None, overrides=(), encoder: str | None = None
) -> MethodConfig:
    """Resolved config of a method or reference row (paper, preset, --encoder, --set)."""
    if name not in REFERENCES:
        from bench.train import resolve_config

        return resolve_config(name, preset, overrides, encoder)
    from bench.presets import preset_overrides

    cfg = ReferenceConfig()
    if preset:
        base = preset_overrides(preset, name)
        cfg = apply_overrides(cfg, {k: v for k, v in base.items() if not k.startswith("optim.")})
    if encoder:
        cfg = apply_overrides(cfg, {"encoder.size": encoder})
    return apply_overrides(cfg, list(overrides))


@dataclass
class Subject:
    """One thing the protocols evaluate.

    Attributes:
        name: method or reference name (the leaderboard row).
        run_id: pre-training run id (``results/pretrain/<run_id>``) or the reference's id; the
            first path segment of its records.
        kind: ``"ssl"`` or ``"reference"``.
        protocols: the protocols this row takes part in.
        norm_mean, norm_std: per-lead statistics of the training folds, ``(C,)``.
        pretrain: provenance of the pre-training (steps, time, loss, checkpoint) or None.
        eval_overrides: ``--eval-set`` items the row imposes (recorded in the eval hash).
        loss_health: :func:`bench.health.loss_curve_health` of the pre-training losses, or None
            (reference rows, subjects built without a loss curve).
        make_init_encoder: the benchmarked encoder at the weights pre-training started from
            (the baseline of the collapse check), or None when :meth:`encoder` is already at
            its initial weights (reference rows).
    """

    name: str
    run_id: str
    kind: str
    config: MethodConfig
    protocols: tuple[str, ...]
    norm_mean: np.ndarray
    norm_std: np.ndarray
    pretrain: dict[str, Any] | None
    make_encoder: Callable[[], nn.Module]
    eval_overrides: dict[str, Any] = field(default_factory=dict)
    loss_health: dict[str, Any] | None = None
    make_init_encoder: Callable[[], nn.Module] | None = None

    @property
    def leads(self) -> list[int]:
        return lead_indices(self.config.data.leads)

    def encoder(self) -> nn.Module:
        """A fresh copy of the encoder (fine-tuning changes its weights)."""
        return self.make_encoder()


def reference_subject(name: str, cfg: MethodConfig, dataset, cache: SignalCache) -> Subject:
    from bench.train import lead_statistics, training_rows

    rows = training_rows(cache, dataset)
    mean, std = lead_statistics(cache.signals, rows, lead_indices(cfg.data.leads))
    digest = config_hash({"config": to_dict(cfg), "data": cache.fingerprint})

    def make() -> nn.Module:
        torch.manual_seed(cfg.seed)
        return encoder_from_config(cfg)

    return Subject(
        name=name,
        run_id=f"{name}-{cfg.encoder.size}-{digest[:10]}",
        kind="reference",
        config=cfg,
        protocols=REFERENCE_PROTOCOLS[name],
        norm_mean=mean,
        norm_std=std,
        pretrain=None,
        make_encoder=make,
        eval_overrides=REFERENCE_EVAL_OVERRIDES.get(name, {}),
    )


def _run_flops(run_dir, batch_size: int, steps: int) -> float | None:
    """Counted training FLOPs of a run (``flops.json``, counted once), or None when the method
    cannot be counted: the compute column of the leaderboard, never a reason to fail."""
    from bench.flops import pretrain_total_flops, run_flops_per_sample

    try:
        return pretrain_total_flops(run_flops_per_sample(run_dir), batch_size, steps)
    except Exception:  # a plug-in the FLOP counter cannot step must not stop an evaluation
        return None


def pretrained_subject(name: str, result, state: dict[str, Any]) -> Subject:
    """A subject from a finished pre-training run (``result``: :class:`bench.train.PretrainResult`,
    ``state``: its loaded final checkpoint)."""
    from bench.config import from_dict
    from bench.health import loss_curve_health
    from bench.train import build_method

    cls = METHODS.get(name)
    cfg = from_dict(cls.Config, state["config"])
    encoder = build_method(state).benchmark_encoder()
    losses = list(state["losses"])
    tenth = max(1, len(losses) // 10)

    def make_init() -> nn.Module:
        """The benchmarked encoder as pre-training built it at step 0 (the engine seeds torch
        with ``cfg.seed`` and builds the method from its config); the global RNG is left as is."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return build_method(cfg, name).benchmark_encoder()

    return Subject(
        name=name,
        run_id=result.run_dir.name,
        kind="ssl",
        config=cfg,
        protocols=("linear", "attentive", "finetune"),
        norm_mean=state["norm_mean"].numpy(),
        norm_std=state["norm_std"].numpy(),
        pretrain={
            "run_id": result.run_dir.name,
            "checkpoint": str(result.final_checkpoint),
            "steps": int(state["step"]),
            "batch_size": cfg.optim.batch_size,
            "train_seconds": float(state.get("train_seconds", 0.0)),
            "precision": state.get("precision"),
            "loss_first_10pct": float(np.mean(losses[:tenth])),
            "loss_last_10pct": float(np.mean(losses[-tenth:])),
            "reused": bool(result.reused),
            "flops": _run_flops(result.run_dir, cfg.optim.batch_size, int(state["step"])),
        },
        make_encoder=lambda: copy.deepcopy(encoder),
        loss_health=loss_curve_health(losses),
        make_init_encoder=make_init,
    )
