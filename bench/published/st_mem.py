"""Importer of Na et al.'s ST-MEM checkpoints (github bakqui/ST-MEM; facts: FACTS.md).

Layouts read (``util/misc.py: save_model``: ``{"epoch", "model", "optimizer", "scaler",
"config"}``):

- the encoder checkpoint ``encoder.pth`` (``main_pretrain.py``): ``model`` is
  ``ST_MEM_ViT.state_dict()``, unprefixed;
- the full pre-training checkpoint ``checkpoint-N.pth``: ``model`` is ``ST_MEM.state_dict()``,
  the encoder under ``encoder.``; the decoder's tensors and the shared
  ``to_patch_embedding.*`` alias are not the encoder and are skipped.

Architecture: width, patch, depth, MLP width, leads and patches from the tensor shapes (checked
against ``config["model"]`` where stored); heads = width / 64 (the authors' attention heads are
64 wide: ``dim_head=64``), or explicit ``heads=``. The encoder: LayerNorm (eps 1e-5) over each
raw patch, Linear, LayerNorm; + 1-D sin-cos time positions shared by every lead + a learned lead
embedding; per lead a SEP token on each side (``sep_embedding`` + the table's first / last row +
the lead embedding); unmasked attention (so SEPs are carried as prefix tokens); readout: the
final LayerNorm of the mean of the patch tokens (SEPs removed). Our tokens are the final
LayerNorm of each token, as ST-MEM's ``forward_encoder`` gives them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.encoders.positions import sincos_1d
from bench.encoders.vit import TokenLayout, ViT1D
from bench.errors import BenchError
from bench.published.common import (
    StrictLoader,
    block_indices,
    read_checkpoint,
    require,
    split_prefix,
    table_kind,
)

FMT = "st-mem"
HEAD_WIDTH = 64  # models/encoder/st_mem_vit.py: ST_MEM_ViT(dim_head=64), ST_MEM does not change it
EPS = 1e-5  # the encoder's nn.LayerNorm()s use the default eps
LEADS_12 = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
RATE_HZ = 250
# The full ST_MEM model's non-encoder tensors (the decoder; to_patch_embedding aliases the
# encoder's own module, so its tensors are stored twice).
DECODER_PREFIXES = (
    "to_patch_embedding.", "to_decoder_embedding.", "mask_embedding", "decoder_pos_embed",
    "decoder_blocks.", "decoder_norm.", "decoder_head.",
)  # fmt: skip
_BLOCK = re.compile(r"^block(\d+)\.")
# Our names (after ``blocks.{i}.``) -> ST-MEM's (after ``block{i}.``).
_BLOCK_NAMES = {
    "norm1.": "attn.norm.",
    "attn.qkv.": "attn.fn.to_qkv.",
    "attn.proj.": "attn.fn.to_out.0.",
    "norm2.": "ff.norm.",
    "mlp.fc1.": "ff.fn.net.0.",
    "mlp.fc2.": "ff.fn.net.3.",
}
_TOP_NAMES = {
    "patch_norm_in.": "to_patch_embedding.1.",
    "patch_embed.": "to_patch_embedding.2.",
    "patch_norm_out.": "to_patch_embedding.3.",
    "norm.": "norm.",
}


def load(path: Path, **explicit: Any) -> tuple[ViT1D, dict[str, Any]]:
    """Build the encoder of an ST-MEM checkpoint and load it, strictly.

    Args:
        path: ``.pth`` file (encoder or full pre-training checkpoint).
        explicit: ``heads`` where the width is not 64 per head.

    Returns:
        ``(encoder, report)``; the encoder maps ``(B, leads, seq_len)`` to tokens
        ``(B, leads * seq_len / patch, width)`` and pools to ``(B, width)``.
    """
    unknown = set(explicit) - {"heads"}
    if unknown:
        raise BenchError(f"{FMT}: unknown option(s) {sorted(unknown)}; known: ['heads']")
    ckpt = read_checkpoint(path, FMT)
    state = require(ckpt, "model", FMT, "the checkpoint (its top-level keys)")
    if not isinstance(state, dict):
        raise BenchError(f"{FMT} checkpoint: 'model' is a {type(state).__name__}, not a dict")
    full = any(k.startswith("encoder.") for k in state)
    if full:
        source, skipped = split_prefix(state, "encoder.", DECODER_PREFIXES, FMT)
        prefix = "encoder."
    else:
        source, skipped = split_prefix(state, "", (), FMT)
        prefix = ""
    loader = StrictLoader(source, FMT, prefix)
    for key in ("to_patch_embedding.2.weight", "pos_embedding", "block0.ff.fn.net.0.weight"):
        if key not in source:
            raise BenchError(f"{FMT} checkpoint: missing tensor {prefix}{key}")
    width, patch = source["to_patch_embedding.2.weight"].shape
    n_time = source["pos_embedding"].shape[-2] - 2  # the table has a SEP row at each end
    hidden = source["block0.ff.fn.net.0.weight"].shape[0]
    depth = block_indices(source, lambda k: int(m[1]) if (m := _BLOCK.match(k)) else None)
    n_leads = len([k for k in source if re.fullmatch(r"lead_embeddings\.\d+", k)])
    heads = int(explicit.get("heads", width // HEAD_WIDTH))
    if heads < 1 or heads * HEAD_WIDTH != width and "heads" not in explicit:
        raise BenchError(
            f"{FMT}: width {width} is not 64 per head",
            hint="pass heads= (our blocks need heads * head width == width)",
        )
    if n_leads < 1 or n_time < 1:
        raise BenchError(f"{FMT} checkpoint: no lead embeddings or an empty pos_embedding")
    _check_config(ckpt.get("config"), patch=patch, seq_len=n_time * patch, n_leads=n_leads)

    layout = TokenLayout("lead", n_leads, n_time * patch, patch)
    encoder = ViT1D(
        layout,
        width,
        depth,
        heads,
        mlp_ratio=hidden / width,
        qkv_bias="block0.attn.fn.to_qkv.bias" in source,
        pos_embed="table+lead_embed",
        norm_eps=EPS,
        patch_norm=True,
        readout="norm_of_mean",
        sep_tokens=True,
    )
    table = loader.take("pos_embedding", (1, n_time + 2, width))[0]  # (n_time + 2, width)
    reference = torch.cat([torch.zeros(1, width), sincos_1d(n_time, width), torch.zeros(1, width)])
    kind = table_kind(table, reference, FMT)

    def rule(name: str, shape: tuple[int, ...]) -> tuple[Tensor, str]:
        if name == "pos_grid":
            return table[1:-1][None], loader.src("pos_embedding") + "[0, 1:-1]"
        if name == "sep_pos":
            return table[[0, -1]], loader.src("pos_embedding") + "[0, [0, -1]]"
        if name == "sep_embed":
            return loader.take("sep_embedding", shape), loader.src("sep_embedding")
        if name == "lead_embed":
            keys = [f"lead_embeddings.{i}" for i in range(shape[0])]
            rows = [loader.take(k, shape[1:]) for k in keys]
            return torch.stack(rows), loader.src("lead_embeddings.*")
        if m := re.match(r"^blocks\.(\d+)\.(.*)$", name):
            rest = m[2]
            for ours, theirs in _BLOCK_NAMES.items():
                if rest.startswith(ours):
                    rest = theirs + rest[len(ours) :]
                    break
            key = f"block{m[1]}.{rest}"
        else:
            key = next(
                (t + name[len(o) :] for o, t in _TOP_NAMES.items() if name.startswith(o)), name
            )
        return loader.take(key, shape), loader.src(key)

    loader.load(encoder, rule)
    report = {
        "format": FMT,
        "layout": "full pre-training checkpoint" if full else "encoder checkpoint",
        "source_prefix": prefix,
        "ignored_tensors": len(skipped),
        "architecture": {
            "width": width,
            "depth": depth,
            "heads": heads,
            "mlp_dim": hidden,
            "patch_size": patch,
            "seq_len": n_time * patch,
            "n_leads": n_leads,
        },
        "options": {
            "layout": "lead (lead-major)",
            "norm_eps": EPS,
            "patch_norm": "LayerNorm before and after the patch projection",
            "position_table": f"{kind}, loaded from pos_embedding, + learned lead embeddings",
            "sep_tokens": "2 per lead, carried as prefix tokens (unmasked attention)",
            "readout": "final LayerNorm of the mean of the patch tokens",
        },
        "input": {
            "leads": list(LEADS_12) if n_leads == 12 else f"{n_leads} leads",
            "rate_hz": RATE_HZ,
            "samples": n_time * patch,
            "preprocessing": "0.67 Hz high-pass + 40 Hz low-pass (Butterworth order 5, "
            "zero-phase), z-score over the whole record, 250 Hz",
        },
        "mapping": loader.mapping,
    }
    return encoder, report


def _check_config(config: Any, **shapes: int) -> None:
    """Where the file stores ``config["model"]``, its sizes must agree with the tensors."""
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        return
    names = {"patch": "patch_size", "seq_len": "seq_len", "n_leads": "num_leads"}
    for ours, theirs in names.items():
        if theirs in model and int(model[theirs]) != shapes[ours]:
            raise BenchError(
                f"{FMT} checkpoint: config model.{theirs}={model[theirs]} but the tensors give "
                f"{shapes[ours]}"
            )
