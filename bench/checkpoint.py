"""Checkpoint files of the pre-training engine: written atomically, read without pickle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError

CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            writer = _WriteErrors(f)
            try:
                torch.save(state, writer)
            except RuntimeError:
                # torch reports a failed write (full disk) as a RuntimeError: surface the OSError
                if writer.error is not None:
                    raise writer.error from None
                raise
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written temporary
        raise


class _WriteErrors:
    """A binary file wrapper that remembers the OSError of a failed write."""

    def __init__(self, f):
        self.f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` (no pickle execution); bad files are clear errors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise BenchError(
            f"checkpoint {path} is unreadable or corrupt ({exc.__class__.__name__}: {exc})",
            hint="delete it and run again",
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise BenchError(f"{path} is not a checkpoint of this harness (format {CHECKPOINT_FORMAT})")
    return state
