"""The shared 1-D Vision Transformer for ECG (PROTOCOL section 3).

One encoder family serves every method so that a leaderboard row compares objectives, not
backbones. Two token layouts:

- ``mixed``: one token = all leads x ``patch_size`` samples, fixed 1-D sin-cos positions over
  time (JEPA, Weimann & Conrad 2024, arXiv 2410.13867; one register token there).
- ``lead``: one token per lead per time patch, lead-major (``index = lead * n_time + time``);
  fixed 2-D (lead, time) sin-cos positions, optionally added at the input of every block, and
  Cross-Pattern Attention (ECG-JEPA, Kim 2024, arXiv 2410.08559); or shared 1-D time positions
  plus a learned lead embedding (ST-MEM, Na et al., ICLR 2024).

Blocks are timm's pre-norm ``Block`` (fused SDPA attention, or explicit matmuls where they are
faster: :func:`resolve_attention`; either takes a boolean ``attn_mask``,
True = may attend). There is no class token: the pooled representation is the mean over tokens,
and an ``N x N`` CroPA mask covers the sequence exactly. Optional register tokens (Darcet et al.
2024) are prepended inside the encoder, attend to and are attended by every token (also under
CroPA), and never appear in an output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from bench.encoders.masks import cropa_mask, gather_tokens
from bench.encoders.positions import sincos_1d, sincos_2d

__all__ = [
    "ATTENTION_KERNELS",
    "ENCODER_SIZES",
    "POS_EMBEDS",
    "TokenLayout",
    "ViT1D",
    "build_encoder",
    "init_weights",
    "predictor_defaults",
    "resolve_attention",
    "use_attention",
]

LAYOUT_KINDS = ("mixed", "lead")
POS_EMBEDS = ("sincos", "sincos_time+lead_embed", "table", "table+lead_embed")
READOUTS = ("mean", "norm_of_mean")

# "tiny" is for tests only; xs/s/b are the sizes of PROTOCOL 2.1 (ViT-XS, ViT-S, ViT-B).
ENCODER_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(dim=32, depth=2, heads=2),
    "xs": dict(dim=192, depth=8, heads=4),
    "s": dict(dim=384, depth=8, heads=6),
    "b": dict(dim=768, depth=12, heads=12),
}


def predictor_defaults(size: str) -> dict[str, int]:
    """JEPA predictor size for an encoder size (PROTOCOL 2.1): half the width, same depth/heads.

    ``xs`` -> 96/8/4, ``s`` -> 192/8/6, ``b`` -> 384/12/12, ``tiny`` -> 16/2/2.
    """
    enc = _size(size)
    return dict(dim=enc["dim"] // 2, depth=enc["depth"], heads=enc["heads"])


def _size(size: str) -> dict[str, int]:
    if size not in ENCODER_SIZES:
        raise ValueError(f"unknown encoder size {size!r}; choose from {sorted(ENCODER_SIZES)}")
    return dict(ENCODER_SIZES[size])


@dataclass(frozen=True)
class TokenLayout:
    """How a ``(B, C, T)`` ECG becomes tokens.

    Attributes:
        kind: ``"mixed"`` (one token spans all leads) or ``"lead"`` (one token per lead per time
            patch, lead-major).
        n_leads: C.
        n_samples: T the encoder is built for (positions and the CroPA mask cover it); shorter
            inputs whose length is a multiple of ``patch_size`` are accepted too.
        patch_size: samples per time patch.
    """

    kind: str
    n_leads: int
    n_samples: int
    patch_size: int

    def __post_init__(self) -> None:
        if self.kind not in LAYOUT_KINDS:
            raise ValueError(f"unknown layout kind {self.kind!r}; choose from {LAYOUT_KINDS}")
        if min(self.n_leads, self.n_samples, self.patch_size) < 1:
            raise ValueError(f"layout sizes must be positive: {self}")
        if self.n_samples % self.patch_size:
            raise ValueError(
                f"n_samples={self.n_samples} is not a multiple of patch_size={self.patch_size}"
            )

    @property
    def n_time(self) -> int:
        """Time patches P."""
        return self.n_samples // self.patch_size

    @property
    def n_rows(self) -> int:
        """Rows of the token grid: ``n_leads`` for ``lead``, 1 for ``mixed``."""
        return self.n_leads if self.kind == "lead" else 1

    @property
    def n_tokens(self) -> int:
        """N = n_rows * n_time."""
        return self.n_rows * self.n_time

    @property
    def patch_dim(self) -> int:
        """Values per token: ``n_leads * patch_size`` (mixed) or ``patch_size`` (lead)."""
        return self.patch_size * (self.n_leads if self.kind == "mixed" else 1)


def transformer_blocks(
    dim: int,
    depth: int,
    heads: int,
    mlp_ratio: float,
    qkv_bias: bool,
    drop_path: float,
    *,
    norm_eps: float = 1e-6,
    norm_bias: bool = True,
    proj_bias: bool = True,
    layer_scale: float | None = None,
) -> nn.ModuleList:
    """``depth`` pre-norm timm Blocks (boolean ``attn_mask``; kernel: :func:`use_attention`); stochastic depth rises
    linearly from 0 to ``drop_path`` over the blocks. Shared by encoders and predictors.

    ``norm_eps``/``norm_bias``: the LayerNorms' eps and bias; ``proj_bias``: biases of the
    attention output projection and both MLP layers; ``layer_scale``: LayerScale init (None =
    none). The defaults are our methods' blocks; the others exist for imported weights."""
    rates = torch.linspace(0, drop_path, depth).tolist() if depth > 1 else [drop_path] * depth
    return nn.ModuleList(
        Block(
            dim,
            heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path=rate,
            proj_bias=proj_bias,
            init_values=layer_scale,
            norm_layer=_layer_norm(norm_eps, norm_bias),
        )
        for rate in rates
    )


def _layer_norm(eps: float, bias: bool):
    # bias=True keeps the partial our methods always used (their module tree is unchanged).
    return partial(nn.LayerNorm, eps=eps) if bias else partial(nn.LayerNorm, eps=eps, bias=False)


ATTENTION_KERNELS = ("auto", "fused", "matmul")


def resolve_attention(kernel: str, device: torch.device | str, precision: str) -> str:
    """The attention kernel to use: ``"fused"`` (``F.scaled_dot_product_attention``) or
    ``"matmul"`` (timm's explicit ``softmax(q k^T / sqrt(d)) v``, two batched matmuls).

    ``"auto"`` picks ``matmul`` for bf16 on a CPU with native bf16 (AVX512-BF16 / AMX) and
    ``fused`` everywhere else. Why: on such a CPU (torch 2.14) the fused flash kernel runs
    forward + backward of ECG-sized attention (200 tokens, head width 32-64) at 35-65 GFLOP/s in
    bf16, slower than in fp32, while the explicit matmuls run it 1.5-2.5x faster (``bench perf``
    prints both). In fp32 on CPU, on CUDA, and for bf16 emulated on an AVX2-only CPU (32 x 200
    tokens x 6 heads, forward + backward: fused 0.85 s, matmul 1.18 s), the fused kernel is
    the faster one.
    """
    if kernel not in ATTENTION_KERNELS:
        raise ValueError(f"unknown attention kernel {kernel!r}; choose from {ATTENTION_KERNELS}")
    if kernel != "auto":
        return kernel
    if torch.device(device).type != "cpu" or precision != "bf16":
        return "fused"
    from bench.precision import native_bf16

    return "matmul" if native_bf16(device)[0] else "fused"


def use_attention(module: nn.Module, kernel: str) -> int:
    """Route every timm ``Attention`` inside ``module`` to ``kernel`` (``fused`` or ``matmul``,
    see :func:`resolve_attention`); the weights and the maths are the same. Returns the number
    of attention layers switched."""
    if kernel not in ("fused", "matmul"):
        raise ValueError(f"kernel must be 'fused' or 'matmul', got {kernel!r}")
    layers = [m for m in module.modules() if isinstance(m, Attention)]
    for layer in layers:
        layer.fused_attn = kernel == "fused"  # timm's own switch between the two paths
    return len(layers)


def init_weights(module: nn.Module) -> None:
    """trunc_normal(0.02) Linear weights, zero biases; LayerNorm ones/zeros (ViT/MAE recipe)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _mask_4d(attn_mask: Tensor, n: int) -> Tensor:
    """Caller's bool mask (N, N), (B, N, N) or (B|1, 1|H, N, N) -> 4-D for SDPA's (B, H, N, N)."""
    if attn_mask.dtype != torch.bool:
        raise TypeError(f"attn_mask must be bool (True = may attend), got {attn_mask.dtype}")
    if attn_mask.ndim == 2:
        attn_mask = attn_mask[None, None]
    elif attn_mask.ndim == 3:
        attn_mask = attn_mask[:, None]  # per sample; without this SDPA would read B as heads
    if attn_mask.ndim != 4 or attn_mask.shape[-2:] != (n, n):
        raise ValueError(
            f"attn_mask must be (N, N), (B, N, N) or (B, 1, N, N) over the {n} visible tokens, "
            f"got {tuple(attn_mask.shape)}"
        )
    return attn_mask


class ViT1D(nn.Module):
    """1-D ViT over ECG patches.

    Args:
        layout: token layout.
        dim, depth, heads: width, blocks, attention heads.
        mlp_ratio, qkv_bias: timm ``Block`` options (ECG-JEPA uses ``qkv_bias=False``).
        drop_path: stochastic depth, rising linearly from 0 to this value over the blocks.
        n_registers: learned register tokens prepended inside the encoder (JEPA uses 1).
        pos_embed: ``"sincos"`` (1-D over time for ``mixed``, 2-D over (lead, time) for ``lead``)
            or ``"sincos_time+lead_embed"`` (``lead`` only: shared 1-D time positions plus a
            learned per-lead embedding, ST-MEM).
        pos_every_block: add the positions at the input of every block (ECG-JEPA), not only once.
        cropa: Cross-Pattern Attention in every block (``lead`` layout only).

    Options for imported published weights (:mod:`bench.published`); their defaults are our
    methods' encoder, whose parameters, buffers and outputs they leave unchanged:

        pos_embed ``"table"`` / ``"table+lead_embed"``: a fixed table held as a *persistent*
            buffer ``pos_grid`` of shape ``(n_rows, n_time, dim)`` / ``(1, n_time, dim)`` (plus
            the learned lead embedding), filled by the importer from the checkpoint or from the
            reference's formula in the reference's channel order; zeros until then.
        norm_eps, norm_bias: every LayerNorm's eps and bias (ECG-JEPA, ST-MEM: 1e-5).
        proj_bias, patch_bias: biases of attention output / MLP layers, of the patch projection
            (JEPA's ``bias: False``).
        layer_scale: LayerScale init of every block (JEPA's ``layer_scale_eps``); None = none.
        patch_norm: LayerNorm over each raw patch before the projection and over the projected
            token after it (ST-MEM).
        readout: pooled feature = ``"mean"`` of the final-normed tokens, or ``"norm_of_mean"``
            = the final LayerNorm of the mean of the un-normed tokens (ST-MEM).
        sep_tokens: ST-MEM's SEP tokens: per lead a left and a right token
            ``sep_embed + sep_pos[side] + lead_embed[lead]`` (``sep_pos``: persistent buffer
            ``(2, dim)``, the table's first and last rows), prepended like registers; exact
            because ST-MEM attends without a mask, so token order is immaterial.

    Shapes: input ``(B, C, T)``; tokens ``(B, N, dim)``; pooled ``(B, dim)``.
    """

    def __init__(
        self,
        layout: TokenLayout,
        dim: int,
        depth: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        n_registers: int = 0,
        pos_embed: str = "sincos",
        pos_every_block: bool = False,
        cropa: bool = False,
        norm_eps: float = 1e-6,
        norm_bias: bool = True,
        proj_bias: bool = True,
        patch_bias: bool = True,
        layer_scale: float | None = None,
        patch_norm: bool = False,
        readout: str = "mean",
        sep_tokens: bool = False,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f"unknown pos_embed {pos_embed!r}; choose from {POS_EMBEDS}")
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose from {READOUTS}")
        lead_embed = pos_embed in ("sincos_time+lead_embed", "table+lead_embed")
        if sep_tokens and (not lead_embed or cropa or n_registers):
            raise ValueError(
                "sep_tokens (ST-MEM) need a lead embedding, no CroPA and no other registers"
            )
        if layout.kind == "mixed" and lead_embed:
            raise ValueError(
                "a lead embedding needs the 'lead' layout (mixed tokens span all leads)"
            )
        if layout.kind == "mixed" and cropa:
            raise ValueError("CroPA needs the 'lead' layout (mixed tokens span all leads)")
        if n_registers < 0:
            raise ValueError(f"n_registers must be >= 0, got {n_registers}")
        self.layout = layout
        self.dim = self.num_features = dim
        self.depth = depth
        self.n_registers = n_registers
        self.pos_embed = pos_embed
        self.pos_every_block = pos_every_block
        self.cropa = cropa
        self.readout = readout
        self.sep_tokens = sep_tokens
        # Tokens prepended before the patch tokens: registers, or ST-MEM's two SEPs per lead.
        self.n_prefix = 2 * layout.n_leads if sep_tokens else n_registers

        norm = _layer_norm(norm_eps, norm_bias)
        self.patch_norm_in = norm(layout.patch_dim) if patch_norm else None
        self.patch_embed = nn.Linear(layout.patch_dim, dim, bias=patch_bias)
        self.patch_norm_out = norm(dim) if patch_norm else None
        # Fixed positions on the (rows, time) grid so a shorter input can slice its time axis.
        if pos_embed == "table":  # filled by an importer; persistent: a checkpoint carries it
            grid = torch.zeros(layout.n_rows, layout.n_time, dim)
        elif pos_embed == "table+lead_embed":
            grid = torch.zeros(1, layout.n_time, dim)
        elif layout.kind == "mixed":
            grid = sincos_1d(layout.n_time, dim)[None]  # (1, P, dim)
        elif pos_embed == "sincos":
            grid = sincos_2d(layout.n_leads, layout.n_time, dim).reshape(
                layout.n_leads, layout.n_time, dim
            )
        else:
            grid = sincos_1d(layout.n_time, dim)[None]  # shared by all leads
        self.register_buffer("pos_grid", grid, persistent=pos_embed.startswith("table"))
        self.lead_embed = nn.Parameter(torch.zeros(layout.n_leads, dim)) if lead_embed else None
        self.registers = nn.Parameter(torch.zeros(1, n_registers, dim)) if n_registers else None
        if sep_tokens:
            self.sep_embed = nn.Parameter(torch.zeros(dim))
            self.register_buffer("sep_pos", torch.zeros(2, dim))
        if cropa:
            self.register_buffer(
                "cropa_full", cropa_mask(layout.n_leads, layout.n_time), persistent=False
            )
        self.blocks = transformer_blocks(
            dim,
            depth,
            heads,
            mlp_ratio,
            qkv_bias,
            drop_path,
            norm_eps=norm_eps,
            norm_bias=norm_bias,
            proj_bias=proj_bias,
            layer_scale=layer_scale,
        )
        self.norm = norm(dim)
        self._init_weights()

    def _init_weights(self) -> None:
        self.apply(init_weights)
        for param in (self.lead_embed, self.registers, getattr(self, "sep_embed", None)):
            if param is not None:
                nn.init.trunc_normal_(param, std=0.02)

    # ------------------------------------------------------------------ shapes and positions
    def _n_time(self, x: Tensor) -> int:
        """Validate ``x`` (B, C, T) against the layout; return its number of time patches."""
        lay = self.layout
        if x.ndim != 3:
            raise ValueError(f"expected input (B, C, T), got shape {tuple(x.shape)}")
        _, c, t = x.shape
        if c != lay.n_leads:
            raise ValueError(f"expected {lay.n_leads} leads (layout {lay}), got C={c}")
        if t % lay.patch_size or t < lay.patch_size or t > lay.n_samples:
            raise ValueError(
                f"expected T a multiple of patch_size={lay.patch_size} and at most "
                f"n_samples={lay.n_samples} (layout {lay}), got T={t}"
            )
        return t // lay.patch_size

    def patchify(self, x: Tensor) -> Tensor:
        """Raw patches in token order: ``(B, C, T)`` -> ``(B, N, patch_dim)``.

        ``mixed``: token p holds ``x[:, :, p*ps:(p+1)*ps]`` flattened lead-major (C * ps values).
        ``lead``: token ``l * P + p`` holds ``x[:, l, p*ps:(p+1)*ps]``. Used as MAE targets.
        """
        n_time = self._n_time(x)
        b, c, _ = x.shape
        patches = x.reshape(b, c, n_time, self.layout.patch_size)
        if self.layout.kind == "mixed":
            return patches.permute(0, 2, 1, 3).reshape(b, n_time, -1)
        return patches.reshape(b, c * n_time, -1)

    def position_table(self, n_time: int | None = None) -> Tensor:
        """Positions added to the tokens: ``(N, dim)`` in token order.

        Args:
            n_time: time patches of the input (default: the layout's); smaller values give the
                table of a shorter crop.

        Includes the learned lead embedding when there is one (then it carries gradients).
        """
        n_time = self.layout.n_time if n_time is None else n_time
        grid = self.pos_grid[:, :n_time]  # (rows or 1, n_time, dim)
        if self.lead_embed is not None:
            grid = grid + self.lead_embed[:, None, :]
        return grid.reshape(-1, self.dim)

    def _cropa(self, n_time: int) -> Tensor:
        if n_time == self.layout.n_time:
            return self.cropa_full
        return cropa_mask(self.layout.n_leads, n_time, device=self.cropa_full.device)

    def _attention_mask(
        self, batch: int, n: int, n_time: int, idx_keep: Tensor | None, attn_mask: Tensor | None
    ) -> Tensor | None:
        """Combined bool mask ``(B|1, 1, R+n, R+n)`` for the blocks, or None for full attention."""
        mask = None
        if self.cropa:
            full = self._cropa(n_time)  # (N, N)
            if idx_keep is None:
                mask = full[None, None]
            else:  # each sample's visible tokens: (B, 1, K, K)
                mask = full[idx_keep[:, :, None], idx_keep[:, None, :]][:, None]
        if attn_mask is not None:
            caller = _mask_4d(attn_mask.to(device=self.patch_embed.weight.device), n)
            mask = caller if mask is None else mask & caller
        if mask is None:
            return None
        # A token always sees itself: a row with nothing allowed gives NaN (timm's non-fused path).
        mask = mask | torch.eye(n, dtype=torch.bool, device=mask.device)
        if self.n_prefix:
            r = self.n_prefix
            padded = torch.ones(
                (*mask.shape[:2], r + n, r + n), dtype=torch.bool, device=mask.device
            )
            padded[..., r:, r:] = mask  # registers attend and are attended without restriction
            mask = padded
        return mask

    # ------------------------------------------------------------------ forward
    def _prefix(self, batch: int, dtype: torch.dtype) -> Tensor | None:
        """Tokens prepended to the sequence, ``(B, R, dim)`` with their positions included
        (registers carry none), or None."""
        if self.sep_tokens:  # ST-MEM: per lead l, SEP + pos(left|right) + lead embedding l
            sep = self.sep_embed[None, None, :] + self.sep_pos[:, None, :]  # (2, 1, dim)
            tokens = (sep + self.lead_embed[None, :, :]).reshape(-1, self.dim)  # (2C, dim)
            return tokens[None].expand(batch, -1, -1).to(dtype)
        if self.registers is not None:
            return self.registers.expand(batch, -1, -1).to(dtype)
        return None

    def _encode(self, x: Tensor, idx_keep: Tensor | None, attn_mask: Tensor | None) -> Tensor:
        """Un-normed outputs of the last block, ``(B, R + K, dim)``, prefix tokens first."""
        n_time = self._n_time(x)
        patches = self.patchify(x)
        if self.patch_norm_in is not None:
            patches = self.patch_norm_in(patches)
        tokens = self.patch_embed(patches)  # (B, N, dim)
        if self.patch_norm_out is not None:
            tokens = self.patch_norm_out(tokens)
        pos = self.position_table(n_time)[None].expand(x.shape[0], -1, -1)  # (B, N, dim)
        if idx_keep is not None:
            if idx_keep.ndim != 2 or idx_keep.shape[0] != x.shape[0]:
                raise ValueError(f"idx_keep must be (B, K), got {tuple(idx_keep.shape)}")
            tokens = gather_tokens(tokens, idx_keep)
            pos = gather_tokens(pos, idx_keep)
        b, n, _ = tokens.shape
        mask = self._attention_mask(b, n, n_time, idx_keep, attn_mask)

        prefix = self._prefix(b, tokens.dtype)
        if prefix is not None:
            tokens = torch.cat([prefix, tokens], dim=1)
            pos = torch.cat([pos.new_zeros(b, prefix.shape[1], self.dim), pos], dim=1)
        x = tokens
        for i, block in enumerate(self.blocks):
            if i == 0 or self.pos_every_block:
                x = x + pos
            x = block(x, attn_mask=mask)
        return x

    def forward_tokens(
        self, x: Tensor, idx_keep: Tensor | None = None, attn_mask: Tensor | None = None
    ) -> Tensor:
        """Token features after the final LayerNorm.

        Args:
            x: ``(B, C, T)`` float.
            idx_keep: ``(B, K)`` long token indices to encode (context encoder); None = all N.
            attn_mask: optional bool mask over the visible tokens, ``(K, K)``, ``(B, K, K)`` or
                ``(B, 1, K, K)``, True = may attend; ANDed with CroPA when enabled. The diagonal
                is always allowed.

        Returns:
            ``(B, K, dim)`` (or ``(B, N, dim)``), in the order of ``idx_keep``; registers and
            SEP tokens removed.
        """
        return self.norm(self._encode(x, idx_keep, attn_mask))[:, self.n_prefix :]

    def forward(self, x: Tensor) -> Tensor:
        """Pooled representation ``(B, num_features)``: the mean over all patch tokens (no class
        token) of the normed tokens, or (``readout="norm_of_mean"``) the final LayerNorm of the
        mean of the un-normed ones."""
        if self.readout == "norm_of_mean":
            return self.norm(self._encode(x, None, None)[:, self.n_prefix :].mean(dim=1))
        return self.forward_tokens(x).mean(dim=1)


def build_encoder(size: str, layout: TokenLayout, **overrides) -> ViT1D:
    """A :class:`ViT1D` of a named size; ``overrides`` replace size fields or pass options.

    >>> build_encoder("xs", TokenLayout("mixed", 12, 5000, 25), n_registers=1)  # doctest: +SKIP
    """
    return ViT1D(layout, **{**_size(size), **overrides})
