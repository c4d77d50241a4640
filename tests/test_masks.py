"""Position tables, CroPA and the mask samplers (pure functions)."""

from __future__ import annotations

import math

import pytest
import torch

from bench.encoders import (
    cropa_mask,
    ecg_jepa_time_mask,
    gather_tokens,
    jepa_block_mask,
    mae_lead_mask,
    sincos_1d,
    sincos_2d,
    time_to_token_indices,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def runs(flags: list[bool]) -> list[tuple[bool, int]]:
    """Run-length encoding: [(value, length), ...]."""
    out: list[tuple[bool, int]] = []
    for f in flags:
        if out and out[-1][0] == f:
            out[-1] = (f, out[-1][1] + 1)
        else:
            out.append((f, 1))
    return out


def assert_partition(idx_keep: torch.Tensor, idx_mask: torch.Tensor, n: int) -> None:
    assert idx_keep.dtype == idx_mask.dtype == torch.long
    both = torch.cat([idx_keep, idx_mask], dim=-1)
    assert torch.equal(both.sort(dim=-1).values, torch.arange(n).expand_as(both))
    for idx in (idx_keep, idx_mask):
        assert (idx.diff(dim=-1) > 0).all()  # strictly ascending


# ------------------------------------------------------------------ positions
def test_sincos_1d_values():
    table = sincos_1d(50, 32)
    assert table.shape == (50, 32) and table.dtype == torch.float32
    assert table.abs().max() <= 1.0
    assert torch.allclose(table[0], torch.cat([torch.zeros(16), torch.ones(16)]))
    # sin^2 + cos^2 = 1 per frequency; all rows distinct.
    assert torch.allclose(table[:, :16] ** 2 + table[:, 16:] ** 2, torch.ones(50, 16), atol=1e-5)
    assert torch.cdist(table, table).add(torch.eye(50)).min() > 1e-3
    # A prefix of a longer table is the shorter table (used for shorter crops).
    assert torch.allclose(sincos_1d(200, 32)[:50], table)
    with pytest.raises(ValueError):
        sincos_1d(10, 7)


def test_sincos_2d_structure():
    rows, cols, dim = 8, 50, 32
    table = sincos_2d(rows, cols, dim)
    assert table.shape == (rows * cols, dim)
    assert table.abs().max() <= 1.0
    assert torch.cdist(table, table).add(torch.eye(rows * cols)).min() > 1e-3
    grid = table.reshape(rows, cols, dim)
    # First half encodes the lead (constant along time), second half the time (constant along leads).
    assert torch.allclose(grid[:, :, : dim // 2], grid[:, :1, : dim // 2].expand(-1, cols, -1))
    assert torch.allclose(grid[:, :, dim // 2 :], grid[:1, :, dim // 2 :].expand(rows, -1, -1))
    assert torch.allclose(grid[3, 7, : dim // 2], sincos_1d(rows, dim // 2)[3])
    assert torch.allclose(grid[3, 7, dim // 2 :], sincos_1d(cols, dim // 2)[7])
    with pytest.raises(ValueError):
        sincos_2d(2, 3, 30)


# ------------------------------------------------------------------ CroPA
def test_cropa_counts_and_structure():
    mask = cropa_mask(8, 50)
    assert mask.shape == (400, 400) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == 57).all()
    assert int(mask.sum()) == 57 * 400  # about 14 % of all pairs
    assert torch.equal(mask, mask.T)
    assert mask.diagonal().all()
    for lead, time in [(0, 0), (3, 17), (7, 49), (5, 0)]:
        allowed = set(mask[lead * 50 + time].nonzero().flatten().tolist())
        expected = {lead * 50 + t for t in range(50)} | {ld * 50 + time for ld in range(8)}
        assert allowed == expected


# ------------------------------------------------------------------ JEPA
def test_jepa_mask_constraints():
    g = gen(1)
    n, lo, hi, min_block = 200, 0.15, 0.25, 10
    counts = []
    patterns = set()
    for _ in range(100):
        idx_keep, idx_mask = jepa_block_mask(8, n, (lo, hi), min_block, generator=g)
        assert idx_keep.shape[0] == idx_mask.shape[0] == 8
        assert idx_keep.shape[1] + idx_mask.shape[1] == n
        assert_partition(idx_keep, idx_mask, n)
        k = idx_keep.shape[1]
        counts.append(k)
        assert math.ceil(n * lo) <= k <= math.ceil(n * hi)
        keep = torch.zeros(8, n, dtype=torch.bool).scatter_(1, idx_keep, True)
        for row in keep.tolist():
            masked_runs = [length for kept, length in runs(row) if not kept]
            assert masked_runs and min(masked_runs) >= min_block, masked_runs
            patterns.add(tuple(row))
        # Samples of one batch get their own masks.
        assert len({tuple(r) for r in keep.tolist()}) > 1
    # The keep count covers its range over many batches.
    assert min(counts) <= n * (lo + 0.02) and max(counts) >= n * (hi - 0.02)
    assert len(patterns) > 700


def test_jepa_mask_edges_and_segments_vary():
    g = gen(2)
    idx_keep, _ = jepa_block_mask(512, 200, generator=g)
    keep = torch.zeros(512, 200, dtype=torch.bool).scatter_(1, idx_keep, True)
    # Both edges are sometimes context, sometimes masked.
    assert 0 < keep[:, 0].float().mean() < 1 and 0 < keep[:, -1].float().mean() < 1
    n_segments = {sum(1 for kept, _ in runs(r) if kept) for r in keep.tolist()}
    assert len(n_segments) >= 3


def test_jepa_mask_deterministic_and_validates():
    a = jepa_block_mask(4, 200, generator=gen(7))
    b = jepa_block_mask(4, 200, generator=gen(7))
    c = jepa_block_mask(4, 200, generator=gen(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])  # different seed, different mask
    with pytest.raises(ValueError, match="too small"):
        jepa_block_mask(2, 12, (0.15, 0.25), 10)
    with pytest.raises(ValueError):
        jepa_block_mask(2, 200, (0.3, 0.2))
    # Small but feasible: still valid.
    idx_keep, idx_mask = jepa_block_mask(16, 20, (0.2, 0.4), 5, generator=gen(3))
    assert_partition(idx_keep, idx_mask, 20)


# ------------------------------------------------------------------ ECG-JEPA
def test_ecg_jepa_multiblock():
    g = gen(3)
    n_time = 50
    fracs = []
    for _ in range(200):
        keep_t, mask_t = ecg_jepa_time_mask(n_time, generator=g)
        assert_partition(keep_t, mask_t, n_time)
        # Union of 4 blocks of int(50 * U(0.175, 0.225)) in {8..11} patches.
        masked_runs = [
            length
            for kept, length in runs(torch.isin(torch.arange(n_time), keep_t).tolist())
            if not kept
        ]
        assert all(r >= 8 for r in masked_runs)
        assert 1 <= len(masked_runs) <= 4
        assert 8 <= len(mask_t) <= 44
        fracs.append(len(mask_t) / n_time)
    assert max(fracs) > 0.6 and min(fracs) < 0.5  # overlaps make the fraction vary


def test_ecg_jepa_block_size_exact():
    # A single block shows the size rule exactly: int(P * U(0.175, 0.225)).
    sizes = {len(ecg_jepa_time_mask(100, n_blocks=1, generator=gen(s))[1]) for s in range(300)}
    assert sizes <= set(range(17, 23)) and len(sizes) >= 4


def test_ecg_jepa_random_variant():
    g = gen(4)
    for _ in range(100):
        keep_t, mask_t = ecg_jepa_time_mask(50, variant="random", generator=g)
        assert_partition(keep_t, mask_t, 50)
        assert int(50 * 0.6) <= len(mask_t) <= int(50 * 0.7)
    with pytest.raises(ValueError):
        ecg_jepa_time_mask(50, variant="spiral")


def test_time_to_token_indices_shared_across_leads():
    keep_t, mask_t = ecg_jepa_time_mask(50, generator=gen(5))
    tokens = time_to_token_indices(mask_t, 8, 50)
    assert tokens.shape == (8 * len(mask_t),)
    assert (tokens.diff() > 0).all()
    lead, time = tokens // 50, tokens % 50
    for ld in range(8):
        assert torch.equal(time[lead == ld], mask_t)
    keep_tokens = time_to_token_indices(keep_t, 8, 50)
    assert_partition(keep_tokens, tokens, 400)


# ------------------------------------------------------------------ MAE
def test_mae_lead_mask():
    b, leads, n_time = 6, 12, 30
    idx_keep, idx_mask = mae_lead_mask(b, leads, n_time, 0.75, generator=gen(6))
    n_mask = round(n_time * 0.75)
    assert idx_mask.shape == (b, leads * n_mask)
    assert idx_keep.shape == (b, leads * (n_time - n_mask))
    assert_partition(idx_keep, idx_mask, leads * n_time)
    lead = idx_mask // n_time
    for ld in range(leads):  # exact per-lead count
        assert ((lead == ld).sum(dim=1) == n_mask).all()
    per_lead = (idx_mask % n_time).reshape(b, leads, n_mask)
    assert len({tuple(r) for r in per_lead[0].tolist()}) > 1  # leads are independent
    assert not torch.equal(per_lead[0], per_lead[1])  # samples differ
    again = mae_lead_mask(b, leads, n_time, 0.75, generator=gen(6))
    assert torch.equal(again[0], idx_keep)
    with pytest.raises(ValueError):
        mae_lead_mask(2, 12, 2, 0.1)


def test_gather_tokens():
    x = torch.arange(2 * 5 * 3).reshape(2, 5, 3).float()
    idx = torch.tensor([[4, 0], [1, 1]])
    out = gather_tokens(x, idx)
    assert torch.equal(out[0, 0], x[0, 4]) and torch.equal(out[1, 1], x[1, 1])
    assert out.shape == (2, 2, 3)
    with pytest.raises(ValueError):
        gather_tokens(x, idx[0])


def test_masks_on_a_gpu_need_no_host_sync():
    """On CUDA the shape-setting scalars come from a host generator seeded from the device one:
    sampling a JEPA mask never waits for the GPU, and a seed still reproduces the mask."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.cuda.set_sync_debug_mode("error")
    try:
        masks = [
            jepa_block_mask(8, 200, generator=torch.Generator("cuda").manual_seed(3))
            for _ in range(2)
        ]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for a, b in zip(*masks, strict=True):
        assert torch.equal(a, b) and a.device.type == "cuda"
