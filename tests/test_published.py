"""Imported published weights reproduce the authors' encoders exactly (issue 21, item 6).

For each checkpoint layout a tiny reference architecture is written down from the documented
facts (bench/published/FACTS.md) with every parameter random (LayerNorm weights and biases,
registers, SEP and lead embeddings included), saved with the reference's key names, nesting and
stored config, imported, and compared with an independent forward pass written here from the
papers' equations: float64 to 1e-10 and float32 to 1e-5, on ordinary inputs and on inputs with a
small per-token variance. Negative tests prove the comparison notices a wrong position-table
order, a wrong LayerNorm eps and a wrong readout; strictness tests prove a missing, unexpected or
mis-shaped tensor is an error naming it. No weights are downloaded.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from bench.encoders.positions import sincos_2d
from bench.errors import BenchError
from bench.published import load_published

F64_TOL, F32_TOL = 1e-10, 1e-5


# --------------------------------------------------------------------------- equations
def layer_norm(x: Tensor, w: Tensor, b: Tensor | None, eps: float) -> Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased, as LayerNorm
    y = (x - mu) / torch.sqrt(var + eps) * w
    return y if b is None else y + b


def linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    y = x @ w.T
    return y if b is None else y + b


def gelu(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def attention(x, w_qkv, b_qkv, w_out, b_out, heads, allowed=None):
    """softmax(q k^T / sqrt(d)) v per head; qkv channels are (q|k|v, head, d)."""
    bsz, n, _ = x.shape
    q, k, v = linear(x, w_qkv, b_qkv).reshape(bsz, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(bsz, n, -1)
    return linear(out, w_out, b_out)


def rand(*shape, scale=0.3, gen):
    return torch.randn(*shape, generator=gen) * scale


def ln_params(prefix, dim, gen, bias=True):
    out = {f"{prefix}weight": 1.0 + rand(dim, scale=0.2, gen=gen)}
    if bias:
        out[f"{prefix}bias"] = rand(dim, scale=0.2, gen=gen)
    return out


def inputs(c: int, t: int, small: bool) -> Tensor:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, c, t, generator=gen, dtype=torch.float64)
    # small per-token variance (1e-6): a LayerNorm eps is no longer negligible against it; no
    # offset, which float32 would round to a visible share of so small a spread
    return 1e-3 * x if small else x


def max_diff(a: Tensor, b: Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# --------------------------------------------------------------------------- JEPA (Weimann)
JEPA_CFG = dict(
    sampling_frequency=500, channels=["I", "II", "V1", "V2"], channel_size=40, patch_size=5,
    min_block_size=2, min_keep_ratio=0.15, max_keep_ratio=0.25, datasets={"ptb-xl": 1.0},
    dim=32, depth=2, num_heads=4, pred_dim=16, pred_depth=1, pred_num_heads=2, mlp_ratio=2.0,
    qkv_bias=False, dropout=0.0, attn_dropout=0.0, num_registers=1, bias=False, norm_eps=1e-6,
    layer_scale_eps=0.0, steps=10, batch_size=2,
)  # fmt: skip


def jepa_encoder_state(cfg: dict, gen, ln_bias: bool) -> dict[str, Tensor]:
    """models/vision_transformer.py VisionTransformer: Conv1d patch embedding, registers,
    blocks (norm1, attn.qkv, attn.proj, [attn_ls], norm2, mlp.fc1, mlp.fc2, [mlp_ls]), norm."""
    d, c, ps, bias = cfg["dim"], len(cfg["channels"]), cfg["patch_size"], cfg["bias"]
    hidden = int(d * cfg["mlp_ratio"])
    s = {"patch_embed.proj.weight": rand(d, c, ps, gen=gen)}
    if bias:
        s["patch_embed.proj.bias"] = rand(d, gen=gen)
    if cfg["num_registers"]:
        s["registers"] = rand(1, cfg["num_registers"], d, scale=1.0, gen=gen)
    for i in range(cfg["depth"]):
        p = f"blocks.{i}."
        s |= ln_params(p + "norm1.", d, gen, ln_bias)
        s[p + "attn.qkv.weight"] = rand(3 * d, d, gen=gen)
        if cfg["qkv_bias"]:
            s[p + "attn.qkv.bias"] = rand(3 * d, gen=gen)
        s[p + "attn.proj.weight"] = rand(d, d, gen=gen)
        if bias:
            s[p + "attn.proj.bias"] = rand(d, gen=gen)
        if cfg["layer_scale_eps"]:
            s[p + "attn_ls.weight"] = rand(d, gen=gen)
        s |= ln_params(p + "norm2.", d, gen, ln_bias)
        s[p + "mlp.fc1.weight"] = rand(hidden, d, gen=gen)
        s[p + "mlp.fc2.weight"] = rand(d, hidden, gen=gen)
        if bias:
            s[p + "mlp.fc1.bias"] = rand(hidden, gen=gen)
            s[p + "mlp.fc2.bias"] = rand(d, gen=gen)
        if cfg["layer_scale_eps"]:
            s[p + "mlp_ls.weight"] = rand(d, gen=gen)
    s |= ln_params("norm.", d, gen, ln_bias)
    return s


def jepa_table(n: int, dim: int) -> Tensor:
    """models/utils.py get_1d_pos_embed: pe[p, 2i] = sin(p w_i), pe[p, 2i+1] = cos(p w_i),
    w_i = exp(2i * -ln(10000) / dim), in float32 as the reference computes it."""
    w = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    angle = torch.arange(n)[:, None] * w[None, :]
    pe = torch.zeros(n, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return pe


def jepa_forward(s: dict, cfg: dict, x: Tensor, table: Tensor | None = None):
    """Tokens (B, P, D) and pooled (B, D) of the reference, from its equations."""
    s = {k: v.double() for k, v in s.items()}
    d, ps, eps = cfg["dim"], cfg["patch_size"], cfg["norm_eps"]
    b, c, t = x.shape
    patches = x.reshape(b, c, t // ps, ps)  # conv with stride = kernel = ps
    h = torch.einsum("bcpk,dck->bpd", patches, s["patch_embed.proj.weight"])
    if "patch_embed.proj.bias" in s:
        h = h + s["patch_embed.proj.bias"]
    pe = jepa_table(t // ps, d) if table is None else table
    h = h + pe.double()
    r = cfg["num_registers"]
    if r:
        h = torch.cat([s["registers"].expand(b, -1, -1), h], dim=1)
    for i in range(cfg["depth"]):
        p = f"blocks.{i}."
        a = attention(
            layer_norm(h, s[p + "norm1.weight"], s.get(p + "norm1.bias"), eps),
            s[p + "attn.qkv.weight"], s.get(p + "attn.qkv.bias"),
            s[p + "attn.proj.weight"], s.get(p + "attn.proj.bias"), cfg["num_heads"],
        )  # fmt: skip
        h = h + a * s.get(p + "attn_ls.weight", 1.0)
        m = layer_norm(h, s[p + "norm2.weight"], s.get(p + "norm2.bias"), eps)
        m = linear(gelu(linear(m, s[p + "mlp.fc1.weight"], s.get(p + "mlp.fc1.bias"))),
                   s[p + "mlp.fc2.weight"], s.get(p + "mlp.fc2.bias"))  # fmt: skip
        h = h + m * s.get(p + "mlp_ls.weight", 1.0)
    h = layer_norm(h, s["norm.weight"], s.get("norm.bias"), eps)[:, r:]
    return h, h.mean(1)


def write_jepa(tmp_path, gen, *, full: bool, ln_bias: bool, **cfg_changes):
    cfg = {**JEPA_CFG, **cfg_changes}
    enc = jepa_encoder_state(cfg, gen, ln_bias)
    model = {f"target_encoder.{k}": v for k, v in enc.items()}
    if full:  # pretrain.py: the whole JEPA state dict, optimiser and step
        model |= {f"encoder.{k}": v + 1.0 for k, v in enc.items()}
        model["predictor.predictor_embed.weight"] = rand(16, 32, gen=gen)
        ckpt = {"model": model, "optimizer": {"state": {}, "param_groups": []},
                "config": cfg, "step": 10}  # fmt: skip
    else:  # scripts/minify_pretrained_checkpoint.py
        ckpt = {"model": model, "config": cfg}
    path = tmp_path / ("jepa_full.pt" if full else "jepa.min.pt")
    torch.save(ckpt, path)
    return path, enc, cfg


# --------------------------------------------------------------------------- ECG-JEPA (Kim)
KIM = dict(dim=32, depth=2, heads=4, hidden=64, leads=3, n_time=4, patch=5)


def kim_table(n_leads: int, n_time: int, dim: int) -> Tensor:
    """MAE's 2-D sin-cos with grid height = leads, width = time: row l * P + t holds
    [1-D(t) over dim/2, 1-D(l) over dim/2]; 1-D(p) = [sin(p w_i), cos(p w_i)],
    w_i = 10000^(-i / (dim/4)), computed in float64 then stored as float32."""

    def one(pos, half):
        w = 1.0 / 10000 ** (torch.arange(half // 2, dtype=torch.float64) / (half / 2))
        a = pos[:, None] * w[None]
        return torch.cat([a.sin(), a.cos()], 1)

    lead, time = torch.meshgrid(
        torch.arange(n_leads, dtype=torch.float64), torch.arange(n_time, dtype=torch.float64),
        indexing="ij",
    )  # fmt: skip
    return torch.cat([one(time.flatten(), dim // 2), one(lead.flatten(), dim // 2)], 1).float()


def kim_state(gen, small_table: bool = False) -> dict[str, Tensor]:
    """ecg_jepa.py MaskTransformer: W_P, pos_embed, encoder_blocks.blocks.*, norm; qkv_bias
    False, every other Linear and LayerNorm with bias."""
    d, h = KIM["dim"], KIM["hidden"]
    s = {"W_P.weight": rand(d, KIM["patch"], gen=gen), "W_P.bias": rand(d, gen=gen)}
    n = KIM["leads"] * KIM["n_time"]
    # pos_type='learnable' initialises uniform(-0.02, 0.02): a small table, small variance
    s["pos_embed"] = (
        rand(n, d, scale=0.01, gen=gen)
        if small_table
        else kim_table(KIM["leads"], KIM["n_time"], d)
    )
    for i in range(KIM["depth"]):
        p = f"encoder_blocks.blocks.{i}."
        s |= ln_params(p + "norm1.", d, gen)
        s[p + "attn.qkv.weight"] = rand(3 * d, d, gen=gen)
        s[p + "attn.proj.weight"], s[p + "attn.proj.bias"] = rand(d, d, gen=gen), rand(d, gen=gen)
        s |= ln_params(p + "norm2.", d, gen)
        s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"] = rand(h, d, gen=gen), rand(h, gen=gen)
        s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"] = rand(d, h, gen=gen), rand(d, gen=gen)
    s |= ln_params("norm.", d, gen)
    return s


def kim_forward(s: dict, x: Tensor, table: Tensor | None = None):
    """Tokens (B, C*P, D) and pooled (B, D): positions added before every block, CroPA mask
    (same lead or same time), LayerNorm eps 1e-5, mean of the normed tokens."""
    s = {k: v.double() for k, v in s.items()}
    b, c, t = x.shape
    p = t // KIM["patch"]
    h = linear(x.reshape(b, c * p, KIM["patch"]), s["W_P.weight"], s["W_P.bias"])
    pos = s["pos_embed"] if table is None else table.double()
    idx = torch.arange(c * p)
    allowed = (idx[:, None] // p == idx[None] // p) | (idx[:, None] % p == idx[None] % p)
    for i in range(KIM["depth"]):
        q = f"encoder_blocks.blocks.{i}."
        h = h + pos
        h = h + attention(
            layer_norm(h, s[q + "norm1.weight"], s[q + "norm1.bias"], 1e-5),
            s[q + "attn.qkv.weight"], None, s[q + "attn.proj.weight"], s[q + "attn.proj.bias"],
            KIM["heads"], allowed,
        )  # fmt: skip
        m = layer_norm(h, s[q + "norm2.weight"], s[q + "norm2.bias"], 1e-5)
        h = h + linear(gelu(linear(m, s[q + "mlp.fc1.weight"], s[q + "mlp.fc1.bias"])),
                       s[q + "mlp.fc2.weight"], s[q + "mlp.fc2.bias"])  # fmt: skip
    h = layer_norm(h, s["norm.weight"], s["norm.bias"], 1e-5)
    return h, h.mean(1)


def write_kim(tmp_path, gen, small_table=False, state=None):
    state = kim_state(gen, small_table) if state is None else state
    path = tmp_path / "epoch100.pth"
    torch.save({"encoder": state, "epoch": 99}, path)  # pretrain_ECG_JEPA.py
    return path, state


def load_kim(path):
    return load_published("kim-ecg-jepa", path, heads=KIM["heads"], n_leads=KIM["leads"])


# --------------------------------------------------------------------------- ST-MEM (Na et al.)
STM = dict(width=128, depth=2, heads=2, mlp=256, leads=3, n_time=4, patch=5)


def stmem_table(n: int, dim: int) -> Tensor:
    """models/st_mem.py get_1d_sincos_pos_embed(sep_embed=True): a zero row, then
    [sin(p w_i), cos(p w_i)] with w_i = 1 / 10000^(i / (dim/2)) in float32, then a zero row."""
    w = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32) / (dim / 2.0))
    a = torch.arange(n, dtype=torch.float32)[:, None] * w[None]
    return torch.cat([torch.zeros(1, dim), torch.cat([a.sin(), a.cos()], 1), torch.zeros(1, dim)])


def stmem_state(gen) -> dict[str, Tensor]:
    """models/encoder/st_mem_vit.py ST_MEM_ViT: to_patch_embedding.{1: LN(patch), 2: Linear,
    3: LN(width)}, pos_embedding (1, n+2, w), sep_embedding, lead_embeddings.i, block{i}.{attn.norm,
    attn.fn.to_qkv, attn.fn.to_out.0, ff.norm, ff.fn.net.0, ff.fn.net.3}, norm."""
    w, h, ps = STM["width"], STM["mlp"], STM["patch"]
    s = ln_params("to_patch_embedding.1.", ps, gen)
    s["to_patch_embedding.2.weight"] = rand(w, ps, gen=gen)
    s["to_patch_embedding.2.bias"] = rand(w, gen=gen)
    s |= ln_params("to_patch_embedding.3.", w, gen)
    s["pos_embedding"] = stmem_table(STM["n_time"], w)[None]
    s["sep_embedding"] = rand(w, scale=1.0, gen=gen)
    for i in range(STM["leads"]):
        s[f"lead_embeddings.{i}"] = rand(w, scale=1.0, gen=gen)
    for i in range(STM["depth"]):
        p = f"block{i}."
        s |= ln_params(p + "attn.norm.", w, gen)
        s[p + "attn.fn.to_qkv.weight"] = rand(3 * w, w, scale=0.1, gen=gen)
        s[p + "attn.fn.to_qkv.bias"] = rand(3 * w, gen=gen)
        s[p + "attn.fn.to_out.0.weight"] = rand(w, w, scale=0.1, gen=gen)
        s[p + "attn.fn.to_out.0.bias"] = rand(w, gen=gen)
        s |= ln_params(p + "ff.norm.", w, gen)
        s[p + "ff.fn.net.0.weight"], s[p + "ff.fn.net.0.bias"] = (
            rand(h, w, scale=0.1, gen=gen), rand(h, gen=gen))  # fmt: skip
        s[p + "ff.fn.net.3.weight"], s[p + "ff.fn.net.3.bias"] = (
            rand(w, h, scale=0.1, gen=gen), rand(w, gen=gen))  # fmt: skip
    s |= ln_params("norm.", w, gen)
    return s


def stmem_forward(s: dict, x: Tensor):
    """Tokens (B, C*n, w): the final LayerNorm of each patch token (forward_encoder), SEPs
    removed; pooled (B, w): LayerNorm of the mean of the un-normed patch tokens
    (forward_encoding). LayerNorm eps 1e-5 everywhere; heads 64 wide."""
    s = {k: v.double() for k, v in s.items()}
    b, c, t = x.shape
    ps, w = STM["patch"], STM["width"]
    n = t // ps
    e = "to_patch_embedding."
    h = layer_norm(x.reshape(b, c, n, ps), s[e + "1.weight"], s[e + "1.bias"], 1e-5)
    h = layer_norm(linear(h, s[e + "2.weight"], s[e + "2.bias"]),
                   s[e + "3.weight"], s[e + "3.bias"], 1e-5)  # fmt: skip
    pos = s["pos_embedding"][0]
    h = h + pos[1 : n + 1]
    left = (s["sep_embedding"] + pos[0]).expand(b, c, 1, w)
    right = (s["sep_embedding"] + pos[-1]).expand(b, c, 1, w)
    lead = torch.stack([s[f"lead_embeddings.{i}"] for i in range(c)])[None, :, None, :]
    h = (torch.cat([left, h, right], dim=2) + lead).reshape(b, c * (n + 2), w)
    for i in range(STM["depth"]):
        p = f"block{i}."
        h = attention(
            layer_norm(h, s[p + "attn.norm.weight"], s[p + "attn.norm.bias"], 1e-5),
            s[p + "attn.fn.to_qkv.weight"], s[p + "attn.fn.to_qkv.bias"],
            s[p + "attn.fn.to_out.0.weight"], s[p + "attn.fn.to_out.0.bias"], w // 64,
        ) + h  # fmt: skip
        m = layer_norm(h, s[p + "ff.norm.weight"], s[p + "ff.norm.bias"], 1e-5)
        h = linear(gelu(linear(m, s[p + "ff.fn.net.0.weight"], s[p + "ff.fn.net.0.bias"])),
                   s[p + "ff.fn.net.3.weight"], s[p + "ff.fn.net.3.bias"]) + h  # fmt: skip
    h = h.reshape(b, c, n + 2, w)[:, :, 1:-1]
    tokens = layer_norm(h, s["norm.weight"], s["norm.bias"], 1e-5).reshape(b, c * n, w)
    pooled = layer_norm(h.mean(dim=(1, 2)), s["norm.weight"], s["norm.bias"], 1e-5)
    return tokens, pooled


STMEM_CONFIG = {"model_name": "st_mem_vit_base_dec256d4b",
                "model": {"seq_len": 20, "patch_size": 5, "num_leads": 3, "norm_pix_loss": True}}  # fmt: skip


def write_stmem(tmp_path, gen, full: bool, state=None):
    state = stmem_state(gen) if state is None else state
    if full:  # ST_MEM.state_dict(): encoder.*, the to_patch_embedding alias, the decoder
        model = {f"encoder.{k}": v for k, v in state.items()}
        model |= {k: v for k, v in state.items() if k.startswith("to_patch_embedding.")}
        model |= {"to_decoder_embedding.weight": rand(8, STM["width"], gen=gen),
                  "mask_embedding": rand(1, 1, 8, gen=gen),
                  "decoder_pos_embed": torch.zeros(1, STM["n_time"] + 2, 8),
                  "decoder_blocks.0.attn.norm.weight": torch.ones(8),
                  "decoder_norm.weight": torch.ones(8), "decoder_head.weight": rand(5, 8, gen=gen)}  # fmt: skip
    else:
        model = state
    path = tmp_path / ("checkpoint-10.pth" if full else "encoder.pth")
    torch.save({"epoch": 10, "model": model, "optimizer": None, "scaler": None,
                "config": STMEM_CONFIG}, path)  # fmt: skip
    return path, state


# --------------------------------------------------------------------------- equivalence
def check(encoder, reference, x: Tensor) -> None:
    """Tokens and pooled features: float64 to 1e-10, float32 to 1e-5."""
    ref_tokens, ref_pooled = reference(x)
    enc64 = encoder.double()
    with torch.no_grad():
        tokens, pooled = enc64.forward_tokens(x), enc64(x)
    assert tokens.shape == ref_tokens.shape and pooled.shape == ref_pooled.shape
    assert max_diff(tokens, ref_tokens) < F64_TOL
    assert max_diff(pooled, ref_pooled) < F64_TOL
    enc32 = encoder.float()
    with torch.no_grad():
        tokens, pooled = enc32.forward_tokens(x.float()), enc32(x.float())
    assert max_diff(tokens, ref_tokens) < F32_TOL
    assert max_diff(pooled, ref_pooled) < F32_TOL


@pytest.mark.parametrize("small", [False, True], ids=["unit", "small-variance"])
@pytest.mark.parametrize(
    "full,ln_bias,changes",
    [
        (False, False, {}),  # minified, LayerNorms without bias (the authors' current code)
        (True, True, {}),  # full, LayerNorm biases saved before the authors dropped them
        (False, True, dict(bias=True, qkv_bias=True, num_registers=2, layer_scale_eps=0.1)),
    ],
    ids=["minified-nobias", "full-old-lnbias", "biases-registers-layerscale"],
)
def test_weimann_jepa_equivalence(tmp_path, full, ln_bias, changes, small):
    gen = torch.Generator().manual_seed(1)
    path, enc, cfg = write_jepa(tmp_path, gen, full=full, ln_bias=ln_bias, **changes)
    encoder, report = load_published("weimann-jepa", path)
    assert report["layout"] == ("full" if full else "minified")
    assert (encoder.norm.bias is not None) == ln_bias  # old files' trained biases are loaded
    x = inputs(len(cfg["channels"]), cfg["channel_size"], small)
    check(encoder, lambda x: jepa_forward(enc, cfg, x), x)


@pytest.mark.parametrize("small", [False, True], ids=["unit", "small-variance"])
@pytest.mark.parametrize("small_table", [False, True], ids=["fixed-table", "learned-table"])
def test_kim_ecg_jepa_equivalence(tmp_path, small, small_table):
    gen = torch.Generator().manual_seed(2)
    path, state = write_kim(tmp_path, gen, small_table)
    encoder, report = load_kim(path)
    kind = report["options"]["position_table"]
    assert kind.startswith("learned" if small_table else "fixed")
    x = inputs(KIM["leads"], KIM["n_time"] * KIM["patch"], small)
    check(encoder, lambda x: kim_forward(state, x), x)


@pytest.mark.parametrize("small", [False, True], ids=["unit", "small-variance"])
@pytest.mark.parametrize("full", [False, True], ids=["encoder", "full"])
def test_st_mem_equivalence(tmp_path, full, small):
    gen = torch.Generator().manual_seed(3)
    path, state = write_stmem(tmp_path, gen, full)
    encoder, report = load_published("st-mem", path)
    assert report["architecture"]["heads"] == STM["width"] // 64
    assert report["ignored_tensors"] == (12 if full else 0)
    x = inputs(STM["leads"], STM["n_time"] * STM["patch"], small)
    check(encoder, lambda x: stmem_forward(state, x), x)


def test_report_carries_provenance(tmp_path):
    gen = torch.Generator().manual_seed(4)
    path, _ = write_stmem(tmp_path, gen, full=False)
    _, report = load_published("st-mem", path)
    import hashlib

    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["format"] == "st-mem" and report["input"]["rate_hz"] == 250
    assert ["sep_embedding", "sep_embed", [STM["width"]]] in report["mapping"]


# --------------------------------------------------------------------------- the tests can tell
def _mismatch(encoder, reference, x) -> float:
    enc = encoder.double()
    with torch.no_grad():
        return max(
            max_diff(enc.forward_tokens(x), reference(x)[0]), max_diff(enc(x), reference(x)[1])
        )


def _set_eps(encoder, eps):
    for m in encoder.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = eps


@pytest.mark.parametrize("small", [False, True], ids=["unit", "small-variance"])
def test_wrong_table_order_eps_or_readout_is_detected(tmp_path, small):
    gen = torch.Generator().manual_seed(5)
    # JEPA: sin/cos halves instead of interleaved; eps 1e-5 instead of 1e-6; registers pooled
    path, enc, cfg = write_jepa(tmp_path, gen, full=False, ln_bias=True)
    x = inputs(len(cfg["channels"]), cfg["channel_size"], small)
    ref = lambda x: jepa_forward(enc, cfg, x)  # noqa: E731
    encoder, _ = load_published("weimann-jepa", path)
    assert _mismatch(encoder, ref, x) < F64_TOL
    from bench.encoders.positions import sincos_1d

    halves = encoder.pos_grid.clone()
    encoder.pos_grid.copy_(sincos_1d(halves.shape[1], halves.shape[2])[None])
    assert _mismatch(encoder, ref, x) > 1e3 * F32_TOL
    encoder.pos_grid.copy_(halves)
    _set_eps(encoder, 1e-5)
    assert _mismatch(encoder, ref, x) > 1e3 * F64_TOL
    _set_eps(encoder, 1e-6)
    encoder.n_prefix = 0  # registers treated as tokens: they enter the pooled mean
    with torch.no_grad():
        assert max_diff(encoder.double()(x)[:, :], ref(x)[1]) > 1e3 * F32_TOL

    # ECG-JEPA: (lead, time) order instead of (time, lead); eps 1e-6 instead of 1e-5
    path, state = write_kim(tmp_path, gen)
    x = inputs(KIM["leads"], KIM["n_time"] * KIM["patch"], small)
    ref = lambda x: kim_forward(state, x)  # noqa: E731
    encoder, _ = load_kim(path)
    grid = encoder.pos_grid.clone()
    encoder.pos_grid.copy_(sincos_2d(KIM["leads"], KIM["n_time"], KIM["dim"]).reshape(grid.shape))
    assert _mismatch(encoder, ref, x) > 1e3 * F32_TOL
    encoder.pos_grid.copy_(grid)
    _set_eps(encoder, 1e-6)
    assert _mismatch(encoder, ref, x) > 1e3 * F64_TOL

    # ST-MEM: eps 1e-6; the mean of normed tokens instead of the norm of the mean
    path, state = write_stmem(tmp_path, gen, full=False)
    x = inputs(STM["leads"], STM["n_time"] * STM["patch"], small)
    ref = lambda x: stmem_forward(state, x)  # noqa: E731
    encoder, _ = load_published("st-mem", path)
    _set_eps(encoder, 1e-6)
    assert _mismatch(encoder, ref, x) > (1e3 * F32_TOL if small else 1e3 * F64_TOL)
    _set_eps(encoder, 1e-5)
    encoder.readout = "mean"
    assert _mismatch(encoder, ref, x) > 1e3 * F32_TOL


# --------------------------------------------------------------------------- strictness
def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path):
    gen = torch.Generator().manual_seed(6)
    state = stmem_state(gen)
    bad = {k: v for k, v in state.items() if k != "block1.ff.norm.bias"}
    path, _ = write_stmem(tmp_path, gen, full=False, state=bad)
    with pytest.raises(BenchError, match=r"missing tensor block1\.ff\.norm\.bias"):
        load_published("st-mem", path)
    path, _ = write_stmem(
        tmp_path, gen, full=True, state={**state, "head.weight": rand(3, 128, gen=gen)}
    )
    with pytest.raises(BenchError, match=r"unexpected tensor.*encoder\.head\.weight"):
        load_published("st-mem", path)
    path, _ = write_stmem(tmp_path, gen, False, state={**state, "sep_embedding": rand(64, gen=gen)})
    with pytest.raises(BenchError, match=r"sep_embedding has shape \(64,\), expected \(128,\)"):
        load_published("st-mem", path)

    kim = kim_state(gen)
    path, _ = write_kim(tmp_path, gen, state={**kim, "W_P.bias": rand(31, gen=gen)})
    with pytest.raises(BenchError, match=r"W_P\.bias has shape"):
        load_kim(path)
    wrong = sincos_2d(KIM["leads"], KIM["n_time"], KIM["dim"])
    path, _ = write_kim(tmp_path, gen, state={**kim, "pos_embed": wrong})
    with pytest.raises(BenchError, match="lead, time"):
        load_kim(path)
    path, _ = write_kim(tmp_path, gen, state={**kim, "pos_embed": rand(13, KIM["dim"], gen=gen)})
    with pytest.raises(BenchError, match="pos_embed"):
        load_kim(path)
    no_pos = {k: v for k, v in kim.items() if k != "pos_embed"}
    path, _ = write_kim(tmp_path, gen, state=no_pos)
    with pytest.raises(BenchError, match="RoPE"):
        load_kim(path)

    path, enc, cfg = write_jepa(tmp_path, gen, full=True, ln_bias=False)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["target_encoder.extra.weight"] = torch.zeros(2)
    ckpt["model"]["decoder.weight"] = torch.zeros(2)
    torch.save(ckpt, path)
    with pytest.raises(BenchError, match=r"unexpected tensor.*decoder\.weight"):
        load_published("weimann-jepa", path)
    del ckpt["model"]["decoder.weight"]
    torch.save(ckpt, path)
    with pytest.raises(BenchError, match=r"target_encoder\.extra\.weight"):
        load_published("weimann-jepa", path)
    del ckpt["config"]["norm_eps"]
    torch.save(ckpt, path)
    with pytest.raises(BenchError, match="norm_eps"):
        load_published("weimann-jepa", path)


def test_unknown_format_and_options_are_refused(tmp_path):
    with pytest.raises(BenchError, match="unknown checkpoint format"):
        load_published("timm", tmp_path / "x.pt")
    gen = torch.Generator().manual_seed(8)
    path, *_ = write_jepa(tmp_path, gen, full=False, ln_bias=False)
    with pytest.raises(BenchError, match="fixes the architecture"):
        load_published("weimann-jepa", path, heads=2)
    with pytest.raises(BenchError, match="not found"):
        load_published("st-mem", tmp_path / "missing.pth")


def test_default_encoder_is_unchanged():
    """The options' defaults leave our methods' encoder as it was: no new tensor, none
    persistent that was not, and a forward that matches a build without the options."""
    from bench.encoders.vit import TokenLayout, ViT1D

    lay = TokenLayout("lead", 3, 20, 5)
    torch.manual_seed(0)
    plain = ViT1D(lay, 32, 2, 2, n_registers=1, cropa=True, pos_every_block=True)
    torch.manual_seed(0)
    explicit = ViT1D(lay, 32, 2, 2, n_registers=1, cropa=True, pos_every_block=True,
                     norm_eps=1e-6, norm_bias=True, proj_bias=True, patch_bias=True,
                     readout="mean")  # fmt: skip
    assert "pos_grid" not in plain.state_dict()
    assert list(plain.state_dict()) == list(explicit.state_dict())
    x = torch.randn(2, 3, 20)
    with torch.no_grad():
        assert torch.equal(plain(x), explicit(x))


# --------------------------------------------------------------------------- preprocessing
def test_reference_preprocessing():
    import numpy as np

    from bench.published.preprocess import kim_ecg_jepa_input, st_mem_input

    t = np.arange(5000) / 500.0
    x = np.stack([np.sin(2 * np.pi * (1 + i) * t) + 0.1 * i for i in range(12)])
    kim = kim_ecg_jepa_input(x, 500)
    assert kim.shape == (8, 2500)
    # raw millivolts: lead V1 (index 6) keeps its 0.6 mV offset and its amplitude
    assert abs(kim[2].mean() - 0.6) < 1e-3 and abs(kim[2].max() - 1.6) < 1e-2
    stm = st_mem_input(x, 500)
    assert stm.shape == (12, 2500)
    assert abs(stm.mean()) < 1e-6 and abs(stm.std() - 1.0) < 1e-5  # z-score of the record
    # the high-pass removes the per-lead offsets: every lead is centred
    assert np.abs(stm.mean(axis=1)).max() < 0.05
    assert not st_mem_input(np.zeros((12, 500)), 250).any()  # a flat record becomes zeros
