"""Mask samplers and the CroPA attention mask, as pure functions on tensors.

Conventions:

- Token indices are positions in the encoder's token sequence. In the ``lead`` layout tokens are
  lead-major: ``index = lead * n_time + time``.
- Samplers return *sorted* index tensors ``(idx_keep, idx_mask)`` (context, targets). They never
  loop over samples; randomness comes from ``torch.rand`` with an optional ``torch.Generator``,
  so a seeded generator reproduces a mask exactly. Index tensors are made on the generator's
  device (CPU when none is given): samplers are meant to run in a collate function.
- Attention masks follow SDPA semantics: boolean, True = may attend.

Samplers:

- :func:`jepa_block_mask`: temporal multi-block mask of JEPA (Weimann & Conrad 2024,
  arXiv 2410.13867), tokens spanning all leads.
- :func:`ecg_jepa_time_mask`: time-column masks of ECG-JEPA (Kim 2024, arXiv 2410.08559), one per
  mini-batch, applied to every lead via :func:`time_to_token_indices`.
- :func:`mae_lead_mask`: per-lead random patch masking of ST-MEM (Na et al., ICLR 2024).
- :func:`cropa_mask`: Cross-Pattern Attention of ECG-JEPA.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import Tensor

__all__ = [
    "cropa_mask",
    "ecg_jepa_time_mask",
    "gather_tokens",
    "jepa_block_mask",
    "lead_rows",
    "mae_lead_mask",
    "time_to_token_indices",
]


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


# A host-side generator per CUDA generator, for the scalars that set tensor shapes (keep
# counts, block sizes): read from the GPU they would cost a device-host sync every step.
_HOST_GENERATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _scalar_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """The generator to draw shape-setting scalars from: ``generator`` itself unless it lives on
    a GPU, else a CPU generator seeded from it once (so a seeded step stays reproducible)."""
    if generator is None or generator.device.type == "cpu":
        return generator
    host = _HOST_GENERATORS.get(generator)
    if host is None:
        host = torch.Generator().manual_seed(generator.initial_seed())
        _HOST_GENERATORS[generator] = host
    return host


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """One draw from U(low, high), on the host (no device sync; see :func:`_scalar_generator`)."""
    u = torch.rand((), generator=_scalar_generator(generator)).item()
    return low + (high - low) * u


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    lo, hi = value
    if not (low <= lo <= hi <= high):
        raise ValueError(f"{name} must satisfy {low} <= lo <= hi <= {high}, got {value}")


def _split_keep_mask(keep: Tensor, n_keep: int | None = None) -> tuple[Tensor, Tensor]:
    """``keep`` (B, N) bool with the same count K per row -> sorted (idx_keep, idx_mask).

    A stable argsort of ``not keep`` lists the kept positions first, each group in ascending order.
    ``n_keep``: K when the caller knows it (counting it on a GPU would sync with the host).
    """
    if n_keep is None:
        n_keep = int(keep[0].sum())
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    return order[:, :n_keep], order[:, n_keep:]


def cropa_mask(n_leads: int, n_time: int, device: torch.device | str | None = None) -> Tensor:
    """Cross-Pattern Attention mask of ECG-JEPA (Kim 2024, arXiv 2410.08559).

    A token at (lead l, time t) may attend to every token of lead l and to every lead's token at
    time t, nothing else: ``n_time + n_leads - 1`` keys per query (57 of 400 for 8 x 50, 14 %).

    Args:
        n_leads, n_time: the lead-major token grid.

    Returns:
        ``(N, N)`` bool, N = n_leads * n_time, True = may attend; symmetric, diagonal True.
    """
    if n_leads < 1 or n_time < 1:
        raise ValueError(f"cropa_mask needs a non-empty grid, got {n_leads} x {n_time}")
    idx = torch.arange(n_leads * n_time, device=device)
    lead, time = idx // n_time, idx % n_time
    return (lead[:, None] == lead[None, :]) | (time[:, None] == time[None, :])


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """Select tokens per sample: ``x`` (B, N, D), ``idx`` (B, K) -> (B, K, D).

    Same semantics as lightly's ``get_at_index`` (a ``torch.gather`` along the token axis), kept
    here so that this module does not import lightly (and through it torchvision).
    """
    if x.ndim != 3 or idx.ndim != 2 or idx.shape[0] != x.shape[0]:
        raise ValueError(
            f"gather_tokens expects x (B, N, D) and idx (B, K), got {tuple(x.shape)} and "
            f"{tuple(idx.shape)}"
        )
    return torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[2]))


def _compositions(
    batch: int, total: int, parts: int, min_part: int, generator: torch.Generator | None
) -> Tensor:
    """Random integer compositions: (B, parts) long, each row sums to ``total``, entries >= min_part.

    Stars and bars: the ``total - parts * min_part`` spare units and ``parts - 1`` bars are laid
    out on a line and the bar positions drawn without replacement (argsort of noise), which makes
    every composition equally likely.
    """
    spare = total - parts * min_part
    assert spare >= 0 and parts >= 1
    device = _device(generator)
    if parts == 1:
        return torch.full((batch, 1), total, dtype=torch.long, device=device)
    slots = spare + parts - 1
    noise = torch.rand(batch, slots, generator=generator, device=device)
    bars = noise.argsort(dim=1)[:, : parts - 1].sort(dim=1).values
    edges = torch.cat(
        [
            torch.full((batch, 1), -1, dtype=torch.long, device=device),
            bars,
            torch.full((batch, 1), slots, dtype=torch.long, device=device),
        ],
        dim=1,
    )
    return edges.diff(dim=1) - 1 + min_part


def jepa_block_mask(
    batch: int,
    n_tokens: int,
    keep_ratio: tuple[float, float] = (0.15, 0.25),
    min_block: int = 10,
    generator: torch.Generator | None = None,
    *,
    max_keep_segments: int = 4,
) -> tuple[Tensor, Tensor]:
    """Temporal multi-block mask of JEPA for ECG (Weimann & Conrad 2024, arXiv 2410.13867).

    ``K = ceil(n_tokens * U(keep_ratio))`` is drawn once per call, so every sample keeps K tokens
    and masks ``M = n_tokens - K``; each sample gets its own mask, whose masked tokens form
    contiguous blocks of at least ``min_block`` tokens.

    Sampling scheme (vectorised over the batch):

    1. On a *circle* of ``n_tokens`` positions lay out ``S`` kept segments alternating with ``S``
       masked gaps, ``S = min(max_keep_segments, K, M // min_block)``. Kept lengths are a uniform
       random composition of K into S parts >= 0 (a zero part merges two gaps, so samples differ
       in their number of kept segments); gap lengths a uniform random composition of M into S
       parts >= ``min_block``.
    2. Cut the circle open at a random valid position: the first token of any kept segment or
       inside one (the sequence then starts with context), the first token of a gap, or a gap
       position leaving at least ``min_block`` masked tokens on both sides of the cut. Any such
       cut keeps every masked run, including the runs at the two edges, >= ``min_block``; edge
       runs are empty or full-size.

    Args:
        batch: B.
        n_tokens: N, tokens per sample (time patches; one token spans all leads).
        keep_ratio: range of the kept fraction.
        min_block: minimum length of a masked run.
        generator: optional torch.Generator (its device is used).
        max_keep_segments: at most this many contiguous kept segments per sample.

    Returns:
        ``idx_keep`` (B, K) and ``idx_mask`` (B, M), long, each sorted ascending, disjoint,
        together ``0..N-1``.

    Note: the official code grows masked blocks of random size one at a time in a per-sample
    Python loop; this batched circular scheme keeps its constraints (count per batch, blocks
    >= ``min_block``, per-sample masks) but not its exact block-length distribution.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if min_block < 1:
        raise ValueError(f"min_block must be >= 1, got {min_block}")
    if max_keep_segments < 1:
        raise ValueError(f"max_keep_segments must be >= 1, got {max_keep_segments}")
    lo, hi = keep_ratio
    if not (0.0 < lo <= hi < 1.0):
        raise ValueError(f"keep_ratio must satisfy 0 < lo <= hi < 1, got {keep_ratio}")
    # The largest keep ratio leaves the fewest masked tokens: they must still fill one block.
    if n_tokens - math.ceil(n_tokens * hi) < min_block:
        raise ValueError(
            f"n_tokens={n_tokens} is too small: keeping up to {hi:.0%} leaves "
            f"{n_tokens - math.ceil(n_tokens * hi)} masked tokens, fewer than min_block={min_block}"
        )

    n_keep = min(max(math.ceil(n_tokens * _uniform(lo, hi, generator)), 1), n_tokens - min_block)
    n_mask = n_tokens - n_keep
    segments = min(max_keep_segments, n_keep, n_mask // min_block)
    keep_len = _compositions(batch, n_keep, segments, 0, generator)  # (B, S)
    gap_len = _compositions(batch, n_mask, segments, min_block, generator)  # (B, S)

    # Circle: kept_1, gap_1, kept_2, gap_2, ...; each position's segment index by searchsorted.
    device = _device(generator)
    lengths = torch.stack([keep_len, gap_len], dim=2).reshape(batch, 2 * segments)
    ends = lengths.cumsum(dim=1)
    pos = torch.arange(n_tokens, device=device).expand(batch, n_tokens).contiguous()
    seg = torch.searchsorted(ends, pos, right=True)  # (B, N) in [0, 2S)
    in_gap = seg % 2 == 1
    offset = pos - (ends - lengths).gather(1, seg)  # position inside its segment
    seg_len = lengths.gather(1, seg)
    valid_cut = ~in_gap | (offset == 0) | ((offset >= min_block) & (seg_len - offset >= min_block))
    score = torch.rand(batch, n_tokens, generator=generator, device=device)
    cut = torch.where(valid_cut, score, torch.full_like(score, -1.0)).argmax(dim=1)  # (B,)

    # Rotate so that the cut becomes position 0.
    keep = (~in_gap).gather(1, (cut[:, None] + pos) % n_tokens)
    return _split_keep_mask(keep, n_keep)


def ecg_jepa_time_mask(
    n_time: int,
    variant: str = "multiblock",
    n_blocks: int = 4,
    block_frac: tuple[float, float] = (0.175, 0.225),
    random_frac: tuple[float, float] = (0.6, 0.7),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Time-column mask of ECG-JEPA (Kim 2024, arXiv 2410.08559), one per mini-batch.

    - ``multiblock`` (paper default): ``n_blocks`` blocks, each ``int(n_time * U(block_frac))``
      contiguous time patches (own size per block) at a uniformly random start; the union is
      masked (blocks may overlap, so the masked fraction varies).
    - ``random``: ``int(n_time * U(random_frac))`` time columns drawn without replacement.

    The same columns are masked in every lead: expand with :func:`time_to_token_indices`.

    Returns:
        ``keep_times`` (Kt,) and ``mask_times`` (Mt,), long, sorted, disjoint, together
        ``0..n_time-1``, on ``generator``'s device.
    """
    # Built on the host (its generator: ``generator`` itself on a CPU, the host twin of a CUDA
    # one) from a few scalars: on a GPU the counts and the all-masked check would each sync.
    device, host = _device(generator), _scalar_generator(generator)
    masked = torch.zeros(n_time, dtype=torch.bool)
    if variant == "multiblock":
        _check_range("block_frac", block_frac, 0.0, 1.0)
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        if int(n_time * block_frac[0]) < 1:
            raise ValueError(
                f"n_time={n_time} is too small for block_frac={block_frac}: blocks would be empty"
            )
        for _ in range(n_blocks):  # at most a handful of blocks
            size = int(n_time * _uniform(*block_frac, generator))
            start = int(torch.randint(0, n_time - size + 1, (), generator=host))
            masked[start : start + size] = True
    elif variant == "random":
        _check_range("random_frac", random_frac, 0.0, 1.0)
        count = int(n_time * _uniform(*random_frac, generator))
        if count < 1:
            raise ValueError(f"n_time={n_time} is too small for random_frac={random_frac}")
        perm = torch.randperm(n_time, generator=host)
        masked[perm[:count]] = True
    else:
        raise ValueError(f"unknown variant {variant!r}; expected 'multiblock' or 'random'")
    if bool(masked.all()):
        raise ValueError(f"the mask covers all {n_time} time patches; reduce the masked fraction")
    keep_times, mask_times = _split_keep_mask(~masked[None, :])
    # pageable host -> device copies are staged by the driver: no wait for the GPU's queue
    return keep_times[0].to(device, non_blocking=True), mask_times[0].to(device, non_blocking=True)


def time_to_token_indices(times: Tensor, n_leads: int, n_time: int) -> Tensor:
    """Lead-major token indices of the given time columns in every lead.

    Args:
        times: (..., k) long time indices in ``[0, n_time)``.
        n_leads, n_time: the token grid.

    Returns:
        (..., n_leads * k) long: ``lead * n_time + times`` for lead 0, 1, ...; sorted when
        ``times`` is.
    """
    offsets = torch.arange(n_leads, device=times.device) * n_time  # (L,)
    tokens = offsets[:, None] + times[..., None, :]  # (..., L, k)
    return tokens.flatten(-2)


def lead_rows(tokens: Tensor, n_leads: int) -> Tensor:
    """One lead per row: lead-major ``(B, L*K, ...)`` -> ``(B*L, K, ...)``.

    For tokens (or token indices) of the ``lead`` layout with the same count ``K`` in every lead,
    each lead's block contiguous (as :func:`mae_lead_mask` and :func:`time_to_token_indices`
    give them), so a reshape is the split: a model run on the rows sees each lead on its own.
    Undo with ``.reshape(B, -1, ...)``.
    """
    return tokens.reshape(tokens.shape[0] * n_leads, -1, *tokens.shape[2:])


def mae_lead_mask(
    batch: int,
    n_leads: int,
    n_time: int,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-lead random masking of ST-MEM (Na et al., ICLR 2024).

    Every lead of every sample masks its own ``round(n_time * mask_ratio)`` time patches (argsort
    of uniform noise per lead), so the counts are equal across leads and samples while the
    positions are independent.

    Returns:
        ``idx_keep`` (B, L * Kp) and ``idx_mask`` (B, L * Mp), long lead-major token indices
        (``lead * n_time + time``), sorted ascending.

    Note: ST-MEM keeps ``int(n_time * (1 - mask_ratio))`` patches; with 30 patches and 0.75 that
    masks 23, this function masks ``round(22.5) = 22``. The harness specification asks for the
    rounded count.
    """
    n_mask = round(n_time * mask_ratio)
    if not 0 < n_mask < n_time:
        raise ValueError(
            f"mask_ratio={mask_ratio} masks {n_mask} of {n_time} patches per lead; "
            "need at least one masked and one visible patch"
        )
    device = _device(generator)
    noise = torch.rand(batch, n_leads, n_time, generator=generator, device=device)
    order = noise.argsort(dim=2)
    keep_t = order[:, :, n_mask:].sort(dim=2).values  # (B, L, Kp)
    mask_t = order[:, :, :n_mask].sort(dim=2).values  # (B, L, Mp)
    offsets = (torch.arange(n_leads, device=device) * n_time)[None, :, None]
    return (keep_t + offsets).flatten(1), (mask_t + offsets).flatten(1)
