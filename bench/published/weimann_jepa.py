"""Importer of Weimann & Conrad's JEPA checkpoints (github kweimann/ECG-JEPA; facts: FACTS.md).

Layouts read:

- full (``pretrain.py``): ``{"model": JEPA.state_dict(), "optimizer", "config", "step"}``; the
  model holds ``encoder.*``, ``predictor.*`` and ``target_encoder.*``;
- minified (``scripts/minify_pretrained_checkpoint.py``): ``{"model": {target_encoder.*},
  "config"}``.

The evaluated encoder is ``target_encoder`` (the EMA one, the one the minifier keeps). Its
architecture comes from the stored ``config`` (``dataclasses.asdict(Config)``). LayerNorm biases:
checkpoints saved before the authors passed ``bias=config.bias`` to their LayerNorms hold trained
LayerNorm biases even with ``bias: False``; their presence in the file decides, and they are
loaded. The position table is not stored (a non-persistent buffer) and is recomputed with the
reference's formula and channel order (sin/cos interleaved).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

from bench.encoders.positions import sincos_1d_interleaved
from bench.encoders.vit import TokenLayout, ViT1D
from bench.errors import BenchError
from bench.published.common import (
    StrictLoader,
    block_indices,
    read_checkpoint,
    require,
    split_prefix,
)

FMT = "weimann-jepa"
PREFIX = "target_encoder."
# The JEPA model's other sub-modules: present in a full checkpoint, not part of the encoder.
OTHER_PREFIXES = ("encoder.", "predictor.")
CONFIG_KEYS = (
    "sampling_frequency", "channels", "channel_size", "patch_size", "dim", "depth", "num_heads",
    "mlp_ratio", "qkv_bias", "num_registers", "bias", "norm_eps", "layer_scale_eps",
)  # fmt: skip
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
# Our timm block name -> the reference block's name (the rest of each key is the same).
_RENAMES = {"ls1.gamma": "attn_ls.weight", "ls2.gamma": "mlp_ls.weight"}


def load(path: Path, **explicit: Any) -> tuple[ViT1D, dict[str, Any]]:
    """Build the encoder of a JEPA checkpoint and load its target encoder, strictly.

    Args:
        path: ``.pt`` file (full or minified).
        explicit: unused (the stored config fixes the architecture); any key is an error.

    Returns:
        ``(encoder, report)``; the encoder maps ``(B, C, channel_size)`` to tokens
        ``(B, channel_size / patch_size, dim)``.
    """
    if explicit:
        raise BenchError(f"{FMT}: the checkpoint's config fixes the architecture; got {explicit}")
    ckpt = read_checkpoint(path, FMT)
    cfg = require(ckpt, "config", FMT, "the checkpoint (its top-level keys)")
    arch = {key: require(cfg, key, FMT, "its config") for key in CONFIG_KEYS}
    state = require(ckpt, "model", FMT, "the checkpoint (its top-level keys)")
    source, skipped = _split(state)

    norm_bias = "norm.bias" in source  # see the module docstring: older files hold them
    n_leads = len(arch["channels"])
    layout = TokenLayout("mixed", n_leads, int(arch["channel_size"]), int(arch["patch_size"]))
    encoder = ViT1D(
        layout,
        int(arch["dim"]),
        int(arch["depth"]),
        int(arch["num_heads"]),
        mlp_ratio=float(arch["mlp_ratio"]),
        qkv_bias=bool(arch["qkv_bias"]),
        n_registers=int(arch["num_registers"]),
        pos_embed="table",
        norm_eps=float(arch["norm_eps"]),
        norm_bias=norm_bias,
        proj_bias=bool(arch["bias"]),
        patch_bias=bool(arch["bias"]),
        layer_scale=float(arch["layer_scale_eps"]) or None,
    )
    depth = block_indices(source, lambda k: int(m[1]) if (m := _BLOCK.match(k)) else None)
    if depth != int(arch["depth"]):
        raise BenchError(f"{FMT} checkpoint: {depth} blocks stored, config says {arch['depth']}")

    loader = StrictLoader(source, FMT, PREFIX)
    table = sincos_1d_interleaved(layout.n_time, int(arch["dim"]))[None]  # (1, P, dim)

    def rule(name: str, shape: tuple[int, ...]) -> tuple[Tensor, str]:
        if name == "pos_grid":
            return table, "computed: interleaved sin-cos (models/utils.py get_1d_pos_embed)"
        if name == "patch_embed.weight":  # Conv1d (dim, C, ps) -> Linear over lead-major patch
            conv = loader.take("patch_embed.proj.weight", (shape[0], n_leads, layout.patch_size))
            return conv.reshape(shape), loader.src("patch_embed.proj.weight")
        if name == "patch_embed.bias":
            return loader.take("patch_embed.proj.bias", shape), loader.src("patch_embed.proj.bias")
        key = name
        for ours, theirs in _RENAMES.items():
            if name.endswith(ours):
                key = name[: -len(ours)] + theirs
        return loader.take(key, shape), loader.src(key)

    loader.load(encoder, rule)
    report = {
        "format": FMT,
        "layout": "full" if skipped else "minified",
        "source_prefix": PREFIX,
        "ignored_tensors": len(skipped),
        "architecture": {k: arch[k] for k in CONFIG_KEYS},
        "options": {
            "layout": "mixed",
            "norm_eps": float(arch["norm_eps"]),
            "layernorm_bias": (
                "loaded (trained biases of a file saved before the authors dropped them)"
                if norm_bias and not arch["bias"]
                else ("loaded" if norm_bias else "none")
            ),
            "position_table": "fixed, computed: sin/cos interleaved (the reference's order)",
            "readout": "mean of the final-normed tokens, registers dropped",
        },
        "input": {
            "leads": list(arch["channels"]),
            "rate_hz": int(arch["sampling_frequency"]),
            "samples": int(arch["channel_size"]),
            "preprocessing": "per-lead z-score with training-fold statistics, clip to [-5, 5]",
        },
        "mapping": loader.mapping,
    }
    return encoder, report


def _split(state: Any) -> tuple[dict[str, Tensor], list[str]]:
    if not isinstance(state, dict):
        raise BenchError(f"{FMT} checkpoint: 'model' is a {type(state).__name__}, not a dict")
    return split_prefix(state, PREFIX, OTHER_PREFIXES, FMT)
