"""What the three importers share: reading a checkpoint without pickle, its SHA-256, and a
strict name-by-name mapping of the authors' tensors into our :class:`~bench.encoders.ViT1D`.

Strictness (issue 21, item 1): every tensor the encoder needs must come from the checkpoint with
the shape the architecture implies, and every tensor under the encoder's prefix must be used;
a missing, unexpected or mis-shaped tensor is a :class:`BenchError` that names it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.errors import BenchError

FORMATS = ("weimann-jepa", "kim-ecg-jepa", "st-mem")

# Where a pos table counts as the reference's fixed one: the authors compute it in float32 (JEPA,
# ST-MEM) or float64 then float32 (ECG-JEPA); ours may differ by float32 rounding only.
TABLE_ATOL = 1e-5


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (the provenance of an imported row)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: Path, fmt: str) -> dict[str, Any]:
    """A checkpoint's top-level dict, read with ``weights_only=True`` (no code can run)."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{fmt} checkpoint not found: {path}", hint="pass FORMAT:PATH to a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise BenchError(
            f"cannot read {fmt} checkpoint {path}: {type(exc).__name__}: {exc}",
            hint="only plain tensor/dict checkpoints are read (weights_only=True)",
        ) from None
    if not isinstance(obj, dict):
        raise BenchError(f"{fmt} checkpoint {path} holds a {type(obj).__name__}, not a dict")
    return obj


def require(mapping: dict, key: str, fmt: str, where: str) -> Any:
    """``mapping[key]`` or a BenchError naming the key and where it was expected."""
    if not isinstance(mapping, dict) or key not in mapping:
        raise BenchError(f"{fmt} checkpoint: no {key!r} in {where}")
    return mapping[key]


def split_prefix(
    state: dict[str, Any], prefix: str, ignored: tuple[str, ...], fmt: str
) -> tuple[dict[str, Tensor], list[str]]:
    """Tensors under ``prefix`` (prefix removed) and the names of known non-encoder tensors.

    A key under neither ``prefix`` nor one of ``ignored`` is unexpected: an error naming it.
    """
    inner, skipped, unexpected = {}, [], []
    for key, value in state.items():
        if key.startswith(prefix):
            inner[key[len(prefix) :]] = value
        elif any(key.startswith(p) for p in ignored):
            skipped.append(key)
        else:
            unexpected.append(key)
    if unexpected:
        raise BenchError(
            f"{fmt} checkpoint: unexpected tensor(s) {sorted(unexpected)[:8]} "
            f"(expected keys under {prefix!r})"
        )
    if not inner:
        raise BenchError(f"{fmt} checkpoint: no tensor under {prefix!r}")
    for key, value in inner.items():
        if not isinstance(value, Tensor):
            raise BenchError(f"{fmt} checkpoint: {prefix}{key} is a {type(value).__name__}")
    return inner, skipped


def block_indices(state: dict[str, Tensor], pattern: Callable[[str], int | None]) -> int:
    """Depth: the number of consecutive block indices ``pattern`` finds in the keys (0-based)."""
    found = {i for i in map(pattern, state) if i is not None}
    depth = len(found)
    if found != set(range(depth)):
        raise BenchError(f"block indices are not 0..{depth - 1}: {sorted(found)}")
    return depth


class StrictLoader:
    """Fill every tensor of ``encoder.state_dict()`` from the source, strictly.

    Args:
        source: the authors' encoder tensors, prefix removed.
        fmt: format name for messages.
        prefix: the prefix the source keys carry in the file (messages name the file's keys).
    """

    def __init__(self, source: dict[str, Tensor], fmt: str, prefix: str = ""):
        self.source = source
        self.fmt = fmt
        self.prefix = prefix
        self.used: set[str] = set()
        self.mapping: list[tuple[str, str, tuple[int, ...]]] = []

    def has(self, key: str) -> bool:
        return key in self.source

    def take(self, key: str, shape: tuple[int, ...]) -> Tensor:
        """The source tensor ``key`` of exactly ``shape``; error naming it otherwise."""
        if key not in self.source:
            raise BenchError(f"{self.fmt} checkpoint: missing tensor {self.prefix}{key}")
        value = self.source[key]
        if tuple(value.shape) != tuple(shape):
            raise BenchError(
                f"{self.fmt} checkpoint: tensor {self.prefix}{key} has shape "
                f"{tuple(value.shape)}, expected {tuple(shape)}"
            )
        self.used.add(key)
        return value

    def load(
        self, encoder: nn.Module, rule: Callable[[str, tuple[int, ...]], tuple[Tensor, str]]
    ) -> None:
        """Load ``rule(target_key, target_shape) -> (tensor, source description)`` into every
        tensor of the encoder, record the mapping, then check that no source tensor is left."""
        target = encoder.state_dict()
        filled = {}
        for name, tensor in target.items():
            value, src = rule(name, tuple(tensor.shape))
            self.mapping.append((src, name, tuple(tensor.shape)))
            if tuple(value.shape) != tuple(tensor.shape):  # an importer bug, not the user's
                raise AssertionError(f"{name}: {tuple(value.shape)} != {tuple(tensor.shape)}")
            filled[name] = value.detach().to(tensor.dtype)
        left = sorted(set(self.source) - self.used)
        if left:
            raise BenchError(
                f"{self.fmt} checkpoint: unexpected tensor(s) "
                f"{[self.prefix + k for k in left[:8]]} (not part of the encoder architecture)"
            )
        encoder.load_state_dict(filled, strict=True)

    def src(self, key: str) -> str:
        """The file's name of source tensor ``key`` (for the mapping report)."""
        return self.prefix + key


def table_kind(
    stored: Tensor, reference: Tensor, fmt: str, wrong: dict[str, Tensor] | None = None
) -> str:
    """Name a stored position table of the right shape: the reference's fixed table, or a learned
    one. A table equal to another fixed table (``wrong``: e.g. the other channel order) is
    neither and is refused: the file does not follow the reference's layout."""
    if stored.shape == reference.shape and torch.allclose(
        stored.float(), reference, atol=TABLE_ATOL, rtol=0
    ):
        return "fixed (the reference's sin-cos table)"
    for name, table in (wrong or {}).items():
        if stored.shape == table.shape and torch.allclose(
            stored.float(), table, atol=TABLE_ATOL, rtol=0
        ):
            raise BenchError(
                f"{fmt} checkpoint: its position table is {name}, not the reference's fixed "
                "table nor a learned one"
            )
    return "learned (differs from the reference's fixed table)"
