"""Time full pre-training steps, one configuration per fresh process.

A configuration (:class:`Case`) is a method, its config (paper token layout by default), a batch
size, a precision and an implementation: ``engine`` (what ``bench pretrain`` runs) or
``straightforward`` (:mod:`bench.perf.reference`). Each runs in its own Python process so that
peak memory, allocator caches and thread pools of one case never leak into the next, and it
reads its batches through the engine's own loader (:func:`bench.train.crop_loader`) from a
prepared cache, so the data-wait fraction is that of a real run.

A step is :func:`bench.train.train_step`: masks or views, forward, backward, AdamW, EMA.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError

IMPLEMENTATIONS = ("engine", "straightforward")
RESULT_PREFIX = "PERF-RESULT "


@dataclass(frozen=True)
class Case:
    """One measured configuration.

    ``overrides`` are ``--set`` items applied after ``preset`` (None: the paper defaults) and
    ``encoder``; the batch size is forced to ``batch_size`` with no gradient accumulation. The
    straightforward implementation always runs in fp32 (``precision`` is then ignored).
    """

    method: str
    encoder: str | None
    precision: str
    impl: str
    batch_size: int
    data_root: str
    cache_root: str
    preset: str | None = None
    overrides: tuple[str, ...] = ()
    steps: int = 5
    warmup: int = 2
    device: str = "auto"
    attention: str = "auto"
    compile: bool = False
    workers: int = 2
    skip_bad: bool = False  # the dataset's --skip-bad (records without this rate are left out)
    profile: bool = False  # also profile two steps (bench.perf.profile) after the timed ones

    def config(self):
        """The method's resolved config for this case."""
        from bench.train import resolve_config

        forced = [f"optim.batch_size={self.batch_size}", "optim.grad_accum=1"]
        return resolve_config(
            self.method, self.preset, [*self.overrides, *forced], encoder=self.encoder
        )


def _peak_memory(device: torch.device) -> tuple[float, str]:
    """Peak memory in bytes and what it is: CUDA allocations, or this process's peak RSS.

    On Linux the RSS peak is ``VmHWM`` of ``/proc/self/status``, which starts afresh with the
    new address space of ``exec`` (``getrusage``'s ``ru_maxrss`` would carry over the parent's
    peak); elsewhere ``ru_maxrss``.
    """
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device)), "cuda max allocated"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024, "process peak RSS"
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale, "process peak RSS"


def _case_peak(device: torch.device, precision: str) -> float | None:
    """The matmul peak around a case, or None for bf16 on a device without native bf16 (no
    share of an emulation's speed is reported, and a 2048-square emulated bf16 product takes
    seconds)."""
    from bench.perf.peak import matmul_peak
    from bench.precision import native_bf16

    if precision == "bf16" and not native_bf16(device)[0]:
        return None

    size = 4096 if device.type == "cuda" else 2048
    return matmul_peak(device, (precision,), sizes=(size,), seconds=0.5)[precision]["flops"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tokens(model, cfg) -> int | None:
    """Tokens of one encoder input: the whole crop, or the view window of two-view methods."""
    layout = getattr(getattr(model, "encoder", None), "layout", None)
    if layout is None:
        return None
    samples = getattr(model, "window", None) or cfg.data.crop_samples
    return samples // layout.patch_size * layout.n_rows


def measure_case(case: Case) -> dict[str, Any]:
    """Run ``case`` in this process: ``warmup`` untimed steps, then ``steps`` timed ones.

    Returns a JSON-able dict: ``samples_per_s``, ``step_seconds``, ``data_wait_fraction``,
    ``peak_memory_bytes`` (+ ``memory_kind``), ``tokens`` (encoder tokens per sample),
    ``attention`` (kernel used), ``prepare`` (what the straightforward masks loop over) and the
    resolved ``encoder`` size.
    """
    from bench.data.cache import open_cache
    from bench.data.ptbxl import PTBXL
    from bench.data.transforms import lead_indices
    from bench.encoders import resolve_attention, use_attention
    from bench.perf.reference import looped_prepare
    from bench.precision import configure_device
    from bench.train import (
        build_method,
        crop_loader,
        lead_statistics,
        make_optimizer,
        resolve_device,
        train_step,
        training_rows,
    )

    if case.impl not in IMPLEMENTATIONS:
        raise BenchError(f"unknown implementation {case.impl!r}; choose from {IMPLEMENTATIONS}")
    cfg = case.config()
    device = resolve_device(case.device)
    straightforward = case.impl == "straightforward"
    precision = "fp32" if straightforward else case.precision
    configure_device(device, precision)

    torch.manual_seed(cfg.seed)
    model = build_method(cfg, case.method).to(device).train()
    kernel = "matmul" if straightforward else resolve_attention(case.attention, device, precision)
    use_attention(model, kernel)
    prepare, prepare_note = looped_prepare(model) if straightforward else (None, "batched")
    wrapped = torch.compile(model) if case.compile and not straightforward else model
    opt = make_optimizer(model, cfg.optim)

    dataset = PTBXL(Path(case.data_root), skip_bad=case.skip_bad)
    cache = open_cache(dataset, cfg.data.rate, Path(case.cache_root), verify=False)
    rows = training_rows(cache, dataset)
    leads = lead_indices(cfg.data.leads)
    mean, std = lead_statistics(cache.signals, rows, leads)
    # Any batch size must run, even above the records at hand (a GPU batch of 256-2048 on a
    # small set): the rows are repeated, so records recur within an epoch (with other crops).
    distinct = len(rows)
    if len(rows) < 2 * case.batch_size:
        rows = np.resize(rows, 2 * case.batch_size)
    loader = crop_loader(cache, rows, leads, mean, std, cfg, case.batch_size, case.workers, device)
    batches = iter(loader)

    def step(i: int) -> float:
        _, _, wait = train_step(
            model, wrapped, opt, batches, i, cfg, precision, device, prepare=prepare,
            sync=device.type != "cuda",  # as the engine: no host sync inside a CUDA step
        )  # fmt: skip
        return wait

    warmup_seconds = []
    for i in range(case.warmup):
        t0 = time.perf_counter()
        step(i)
        _sync(device)
        warmup_seconds.append(time.perf_counter() - t0)
    # The machine's speed drifts (shared hosts, clocks): the peak is measured around each case
    # too, and the higher of the two readings is the case's reference.
    peak_before = _case_peak(device, precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wait, started = 0.0, time.perf_counter()
    for i in range(case.warmup, case.warmup + case.steps):
        wait += step(i)
    _sync(device)
    elapsed = time.perf_counter() - started
    memory, memory_kind = _peak_memory(device)
    peak_after = _case_peak(device, precision)
    case_peak = None if peak_before is None else max(peak_before, peak_after)
    extra: dict[str, Any] = {}
    if case.compile and not straightforward and warmup_seconds:
        # the first call compiles: its time over that of a compiled step
        extra["compile_seconds"] = max(warmup_seconds[0] - elapsed / case.steps, 0.0)
    if case.profile:
        from bench.perf.profile import profile_steps

        first = case.warmup + case.steps
        extra["profile"] = profile_steps(step, first, 2, device)
    return {
        "case_peak_flops": case_peak,
        "samples_per_s": case.steps * case.batch_size / elapsed,
        "step_seconds": elapsed / case.steps,
        "data_wait_fraction": wait / elapsed,
        "peak_memory_bytes": memory,
        "memory_kind": memory_kind,
        "tokens": _tokens(model, cfg),
        "attention": kernel,
        "precision_used": precision,
        "prepare": prepare_note,
        "encoder": cfg.encoder.size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "distinct_records": distinct,
        **extra,
    }


def run_case(case: Case, timeout: float | None = None) -> dict[str, Any]:
    """:func:`measure_case` in a fresh interpreter; its result comes back on one stdout line.

    Raises:
        BenchError: the child failed (its last stderr lines are in the message) or timed out.
    """
    payload = json.dumps(dataclasses.asdict(case))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.perf.measure", payload],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"perf case {case.method}/{case.impl} timed out after {timeout} s"
        ) from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
    raise BenchError(
        f"perf case {case.method} ({case.encoder or 'default'} encoder, {case.impl}, "
        f"{case.precision}) failed with exit code {proc.returncode}:\n{tail}"
    )


def _main(argv: list[str]) -> None:
    fields = json.loads(argv[0])
    fields["overrides"] = tuple(fields.get("overrides", ()))
    result = measure_case(Case(**fields))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
