"""Fixed sine-cosine position tables for 1-D ECG token grids.

The tables follow the Transformer recipe (Vaswani et al. 2017): channel pair ``i`` of position
``p`` holds ``sin(p * w_i), cos(p * w_i)`` with ``w_i = 10000 ** (-2 i / dim)``. They are used by

- JEPA (Weimann & Conrad 2024, arXiv 2410.13867): 1-D positions over time patches of tokens that
  span all leads;
- ECG-JEPA (Kim 2024, arXiv 2410.08559): 2-D positions over (lead, time);
- ST-MEM (Na et al., ICLR 2024): 1-D time positions shared by every lead, plus a learned lead
  embedding (built in :mod:`bench.encoders.vit`).

Imported published weights (:mod:`bench.published`) need the authors' own channel orders:
:func:`sincos_1d_interleaved` (JEPA: sin and cos interleaved, computed in float32 as the
reference does) and :func:`sincos_2d_time_lead` (ECG-JEPA: the time half before the lead half).

Because the frequencies depend only on ``dim``, the first ``m`` rows of ``sincos_1d(n, dim)`` equal
``sincos_1d(m, dim)``: a table built for 10 s also serves a shorter crop by slicing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sincos_1d(n: int, dim: int) -> Tensor:
    """Sine-cosine table over ``n`` positions.

    Args:
        n: number of positions (>= 1).
        dim: channels, even.

    Returns:
        ``(n, dim)`` float32; columns ``[:dim/2]`` are sines, ``[dim/2:]`` the matching cosines.
    """
    if n < 1:
        raise ValueError(f"sincos_1d needs n >= 1, got {n}")
    if dim < 2 or dim % 2:
        raise ValueError(f"sincos_1d needs an even dim >= 2, got {dim}")
    # float64 for the angles: at large p * w the float32 rounding error of the product is visible.
    omega = 1.0 / 10000.0 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = torch.arange(n, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(n_rows: int, n_cols: int, dim: int) -> Tensor:
    """Sine-cosine table over a (row, column) = (lead, time) grid, row-major.

    Args:
        n_rows: rows (leads).
        n_cols: columns (time patches).
        dim: channels, a multiple of 4 (each axis gets ``dim / 2`` sine-cosine channels).

    Returns:
        ``(n_rows * n_cols, dim)`` float32; row ``r * n_cols + c`` is
        ``[sincos_1d(n_rows, dim/2)[r], sincos_1d(n_cols, dim/2)[c]]``: the first half of the
        channels encodes the lead, the second half the time.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4, got {dim}")
    rows = sincos_1d(n_rows, dim // 2)  # (n_rows, dim/2)
    cols = sincos_1d(n_cols, dim // 2)  # (n_cols, dim/2)
    grid = torch.cat(
        [
            rows[:, None, :].expand(n_rows, n_cols, dim // 2),
            cols[None, :, :].expand(n_rows, n_cols, dim // 2),
        ],
        dim=-1,
    )
    return grid.reshape(n_rows * n_cols, dim)


def sincos_1d_interleaved(n: int, dim: int) -> Tensor:
    """JEPA's table (Weimann & Conrad, ``models/utils.py: get_1d_pos_embed``): channel ``2i`` is
    ``sin(p * w_i)``, channel ``2i + 1`` is ``cos(p * w_i)``, ``w_i = exp(-2i ln(10000) / dim)``.

    Computed in float32 with the reference's operations (an exp of a float32 ramp, a float32
    product), so the table is the reference's to float32 rounding of the same ops; the
    reference never stores it (a non-persistent buffer), so it must be recomputed this way.

    Returns:
        ``(n, dim)`` float32.
    """
    if n < 1 or dim < 2 or dim % 2:
        raise ValueError(f"sincos_1d_interleaved needs n >= 1 and an even dim, got {n}, {dim}")
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = torch.arange(n, dtype=torch.float32)[:, None] * freqs[None, :]  # (n, dim/2)
    table = torch.empty(n, dim, dtype=torch.float32)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles.cos()
    return table


def sincos_2d_time_lead(n_leads: int, n_time: int, dim: int) -> Tensor:
    """ECG-JEPA's fixed 2-D table (Kim 2024; MAE's ``get_2d_sincos_pos_embed`` convention with
    grid height = leads, width = time): row ``l * n_time + t`` is
    ``[sincos_1d(n_time, dim/2)[t], sincos_1d(n_leads, dim/2)[l]]``, time half first.

    The mirror of :func:`sincos_2d` (lead half first), which our own ECG-JEPA uses.

    Returns:
        ``(n_leads * n_time, dim)`` float32.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d_time_lead needs dim divisible by 4, got {dim}")
    time = sincos_1d(n_time, dim // 2)
    lead = sincos_1d(n_leads, dim // 2)
    grid = torch.cat(
        [
            time[None, :, :].expand(n_leads, n_time, dim // 2),
            lead[:, None, :].expand(n_leads, n_time, dim // 2),
        ],
        dim=-1,
    )
    return grid.reshape(n_leads * n_time, dim)
