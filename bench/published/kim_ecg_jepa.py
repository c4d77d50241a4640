"""Importer of Kim's ECG-JEPA checkpoints (github sehunfromdaegu/ECG_JEPA; facts: FACTS.md).

Layout read (``pretrain_ECG_JEPA.py``): ``{"encoder": MaskTransformer.state_dict(), "epoch"}``
(a bare encoder state dict is read too). No config is stored: the architecture comes from the
tensor shapes (width and patch from ``W_P.weight``, depth from the block indices, MLP ratio from
``fc1``, qkv bias from its presence) and from the authors' own construction for what shapes
cannot tell: 16 heads (their encoder is 768 wide, 12 deep, 16 heads), 8 leads (I, II, V1-V6) at
250 Hz, 50 patches of 50 samples. Other values must be given explicitly (``heads=``,
``leads=``).

The paper's encoder adds its fixed 2-D sin-cos table (time half first, then lead) at the input
of every block, uses Cross-Pattern Attention, LayerNorm eps 1e-5 and reads out the mean of the
final-normed tokens. The table is stored (a frozen ``nn.Parameter``) and loaded as stored; a RoPE
checkpoint (a later addition, not the paper's) has none and is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

from bench.encoders.positions import sincos_2d, sincos_2d_time_lead
from bench.encoders.vit import TokenLayout, ViT1D
from bench.errors import BenchError
from bench.published.common import StrictLoader, block_indices, read_checkpoint, table_kind

FMT = "kim-ecg-jepa"
BLOCKS = "encoder_blocks.blocks."
_BLOCK = re.compile(r"^encoder_blocks\.blocks\.(\d+)\.")
LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")  # ecg_data.py: leads 0, 1, 6..11
RATE_HZ = 250
DEFAULT_HEADS = 16  # pretrain_ECG_JEPA.py: encoder_embed_dim=768, depth=12, num_heads=16
EPS = 1e-5  # nn.LayerNorm's default: norm_layer=nn.LayerNorm and self.norm = nn.LayerNorm(dim)
EXPLICIT = ("heads", "n_leads")


def load(path: Path, **explicit: Any) -> tuple[ViT1D, dict[str, Any]]:
    """Build the encoder of an ECG-JEPA checkpoint and load it, strictly.

    Args:
        path: ``.pth`` file.
        explicit: ``heads`` (default 16) and ``n_leads`` (default 8) where the shapes cannot
            tell them.

    Returns:
        ``(encoder, report)``; the encoder maps ``(B, n_leads, n_time * patch)`` to tokens
        ``(B, n_leads * n_time, dim)``, lead-major.
    """
    unknown = set(explicit) - set(EXPLICIT)
    if unknown:
        raise BenchError(f"{FMT}: unknown option(s) {sorted(unknown)}; known: {list(EXPLICIT)}")
    ckpt = read_checkpoint(path, FMT)
    state = ckpt.get("encoder", ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BenchError(f"{FMT} checkpoint {path}: no encoder state dict ('encoder' key)")
    source = dict(state)
    loader = StrictLoader(source, FMT)
    if "W_P.weight" not in source:
        raise BenchError(f"{FMT} checkpoint: missing tensor W_P.weight")
    if "pos_embed" not in source:
        raise BenchError(
            f"{FMT} checkpoint: missing tensor pos_embed (a RoPE checkpoint? RoPE is a later "
            "addition to the repository, not the paper's encoder, and is not supported)"
        )
    dim, patch = source["W_P.weight"].shape
    depth = block_indices(source, lambda k: int(m[1]) if (m := _BLOCK.match(k)) else None)
    if depth == 0:
        raise BenchError(f"{FMT} checkpoint: no tensor under {BLOCKS}")
    fc1 = f"{BLOCKS}0.mlp.fc1.weight"
    if fc1 not in source:
        raise BenchError(f"{FMT} checkpoint: missing tensor {fc1}")
    hidden = source[fc1].shape[0]
    heads = int(explicit.get("heads", DEFAULT_HEADS))
    n_leads = int(explicit.get("n_leads", len(LEADS)))
    rows = source["pos_embed"].shape[0]
    if rows % n_leads:
        raise BenchError(
            f"{FMT} checkpoint: pos_embed has {rows} rows, not a multiple of {n_leads} leads",
            hint="pass n_leads= if the encoder was trained on another lead set",
        )
    n_time = rows // n_leads
    if dim % heads:
        raise BenchError(f"{FMT}: width {dim} is not divisible by {heads} heads", hint="heads=")
    qkv_bias = f"{BLOCKS}0.attn.qkv.bias" in source

    layout = TokenLayout("lead", n_leads, n_time * patch, patch)
    encoder = ViT1D(
        layout,
        dim,
        depth,
        heads,
        mlp_ratio=hidden / dim,
        qkv_bias=qkv_bias,
        pos_embed="table",
        pos_every_block=True,
        cropa=True,
        norm_eps=EPS,
    )
    stored = loader.take("pos_embed", (rows, dim))
    kind = table_kind(
        stored,
        sincos_2d_time_lead(n_leads, n_time, dim),
        FMT,
        wrong={"the sin-cos table in (lead, time) order": sincos_2d(n_leads, n_time, dim)},
    )

    def rule(name: str, shape: tuple[int, ...]) -> tuple[Tensor, str]:
        if name == "pos_grid":
            return stored.reshape(shape), loader.src("pos_embed")
        if name.startswith("patch_embed."):
            key = "W_P." + name.split(".", 1)[1]
        elif name.startswith("blocks."):
            key = "encoder_blocks." + name
        else:
            key = name
        return loader.take(key, shape), loader.src(key)

    loader.load(encoder, rule)
    report = {
        "format": FMT,
        "layout": "encoder state dict ('encoder')" if "encoder" in ckpt else "bare state dict",
        "architecture": {
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "heads_from": "explicit" if "heads" in explicit else "the authors' construction (16)",
            "mlp_ratio": hidden / dim,
            "qkv_bias": qkv_bias,
            "patch_size": patch,
            "n_leads": n_leads,
            "n_time": n_time,
        },
        "options": {
            "layout": "lead (lead-major)",
            "norm_eps": EPS,
            "position_table": f"{kind}, loaded from pos_embed, added before every block",
            "attention": "Cross-Pattern Attention (same lead or same time)",
            "readout": "mean of the final-normed tokens",
        },
        "input": {
            "leads": list(LEADS[:n_leads]) if n_leads == len(LEADS) else f"{n_leads} leads",
            "rate_hz": RATE_HZ,
            "samples": n_time * patch,
            "preprocessing": "raw millivolts, resampled to 250 Hz, no normalisation",
        },
        "mapping": loader.mapping,
    }
    return encoder, report
