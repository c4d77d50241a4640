"""Run presets: ``smoke`` (seconds, for tests), ``cpu`` (a meaningful run on a 2-core CPU with
the real PTB-XL subset), ``gpu`` (minutes per method on one GPU, same encoders as ``cpu``, 15x
the samples), ``paper`` (the published configuration, for GPUs).

A preset only shrinks width, depth, steps, batch and sampling rate; it never changes the
algorithm (PROTOCOL.md 2). What it changes is recorded in the resolved config of every run.
"""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError

# Shared across methods; per-method entries below win.
_BASE: dict[str, dict[str, Any]] = {
    "smoke": {
        "encoder.size": "tiny",
        "data.rate": 100,
        "optim.steps": 3,
        "optim.batch_size": 8,
        "optim.warmup_steps": 1,
    },
    # 100 Hz: every record of the real subset has it (500 Hz only 488 of 1,987); patches keep
    # their duration in ms, so tokens cover the same time as in the paper.
    "cpu": {
        "encoder.size": "xs",
        "data.rate": 100,
        "optim.steps": 200,
        "optim.batch_size": 64,
        "optim.warmup_steps": 20,
    },
    # One GPU, minutes per method: the cpu preset's encoders and token layouts at the budget
    # that separated JEPA and SimCLR from random init on the real subset (H200, issue 15:
    # superdiagnostic linear 0.829 / 0.846 vs 0.729; 158 s and 71 s of pre-training there).
    "gpu": {
        "encoder.size": "xs",
        "data.rate": 100,
        "optim.steps": 3000,
        "optim.batch_size": 256,
        "optim.warmup_steps": 300,
    },
    "paper": {},
}
_PER_METHOD: dict[str, dict[str, dict[str, Any]]] = {preset: {} for preset in _BASE}

PRESETS = tuple(_BASE)


def register_preset_overrides(preset: str, method: str, overrides: dict[str, Any]) -> None:
    """Let a method file add its own entries to a preset (e.g. a smaller mask block at 100 Hz)."""
    if preset not in _BASE:
        raise ValueError(f"unknown preset {preset!r}")
    _PER_METHOD[preset].setdefault(method, {}).update(overrides)


def preset_overrides(preset: str, method: str) -> dict[str, Any]:
    """The ``--set`` style overrides a preset applies to ``method``."""
    if preset not in _BASE:
        raise BenchError(f"unknown preset {preset!r}", hint=f"valid presets: {', '.join(PRESETS)}")
    return {**_BASE[preset], **_PER_METHOD[preset].get(method, {})}
