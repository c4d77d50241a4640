"""The pre-training engine: one loop for every registered method.

Design choices that make runs trustworthy:

* **Deterministic and resumable by construction.** Every random draw is a function of
  ``(seed, step)`` or ``(seed, epoch, record)``: the data order and crop offsets
  (:mod:`bench.data.loader`), the masks and augmentations (a generator seeded per step and
  rank) and dropout / drop-path (the global RNG re-seeded per step). A run resumed from a
  checkpoint therefore continues exactly as if it had never stopped.
* **Atomic checkpoints** (temporary file + ``os.replace``), loaded with ``weights_only=True`` and
  strict keys; the resolved config, normalisation statistics and data fingerprint travel with
  the weights.
* **Standard distribution**: under ``torchrun`` the model is wrapped in
  DistributedDataParallel (gloo on CPU, NCCL on CUDA) and each rank reads its own shard.

Runs live in ``results/pretrain/<method>-<encoder size>-<config hash>/``: ``config.json``,
``checkpoint.pt`` (latest, for ``--resume``), ``final.pt`` and ``history.jsonl`` (loss curve).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from bench.checkpoint import (  # noqa: F401  (re-exported: where callers always found them)
    CHECKPOINT_FORMAT,
    load_checkpoint,
    save_checkpoint,
)
from bench.config import apply_overrides, config_hash, from_dict, to_dict
from bench.data.cache import SignalCache
from bench.data.loader import (
    CropDataset,  # noqa: F401  (re-exported: the engine's data, where it always was)
    EpochBatchSampler,  # noqa: F401
    crop_loader,
    lead_statistics,
    training_rows,
)
from bench.data.transforms import lead_indices
from bench.encoders import resolve_attention, use_attention
from bench.errors import BenchError
from bench.method import (
    METHODS,
    MethodConfig,
    OptimConfig,
    SSLMethod,
    learning_rate,
    weight_decay,
)
from bench.paths import results_dir
from bench.precision import configure_device, resolve_precision


# --------------------------------------------------------------------------- engine options
@dataclass(frozen=True)
class EngineConfig:
    """How to run (not what to learn): recorded, and the precision is part of the run hash.

    ``precision="auto"`` is resolved per device before anything is hashed or trained
    (:func:`with_resolved_precision`): bf16 where the hardware has it natively, else fp32."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | bf16 (autocast) | fp32 (bench.precision)
    precision_reason: str = ""  # why that precision: filled in when "auto" is resolved
    attention: str = "auto"  # auto | fused | matmul (bench.encoders.resolve_attention)
    compile: bool = False
    workers: int = 2
    checkpoint_every: int = 500
    log_every: int = 10
    mlflow: bool = True
    tracking_uri: str | None = None
    progress: bool = True


def with_resolved_precision(engine: EngineConfig, echo=None) -> EngineConfig:
    """``engine`` with a concrete precision (``bf16`` or ``fp32``) and its reason for its device;
    ``echo`` gets the one line saying what was chosen. An already resolved engine is returned
    as it is."""
    if engine.precision_reason and engine.precision != "auto":
        return engine
    chosen = resolve_precision(engine.precision, resolve_device(engine.device), echo)
    return dataclasses.replace(engine, precision=chosen.name, precision_reason=chosen.reason)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(
            f"device {name!r} requested but CUDA is not available", hint="use --device cpu"
        )
    return device


# --------------------------------------------------------------------------- config
def resolve_config(
    method: str,
    preset: str | None,
    overrides: list[str] | tuple[str, ...] = (),
    encoder: str | None = None,
) -> MethodConfig:
    """Paper defaults, then the preset's overrides, then ``--encoder`` (a size other than the
    config's also resets ``encoder.heads`` to that size's), then ``--set`` items."""
    from bench.presets import preset_overrides

    cls = METHODS.get(method)
    cfg = cls.Config()
    if preset:
        cfg = apply_overrides(cfg, preset_overrides(preset, method))
    if encoder and encoder != cfg.encoder.size:
        # An explicit head count belongs to the size it was published with (ECG-JEPA: 16 heads
        # at ViT-B width); another size takes its own heads unless --set encoder.heads says so.
        cfg = apply_overrides(cfg, {"encoder.size": encoder, "encoder.heads": None})
    return apply_overrides(cfg, list(overrides))


def run_id(method: str, cfg: MethodConfig, engine: EngineConfig, data_fingerprint: str) -> str:
    """``<method>-<encoder size>-<hash of config, precision and data>``; ``auto`` precision is
    hashed as what it resolves to, so an auto run and an explicit one of that precision match."""
    precision = engine.precision
    if precision == "auto":
        precision = with_resolved_precision(engine).precision
    digest = config_hash({"config": to_dict(cfg), "precision": precision, "data": data_fingerprint})
    return f"{method}-{cfg.encoder.size}-{digest[:10]}"


def build_method(state_or_cfg: dict | MethodConfig, method: str | None = None) -> SSLMethod:
    """A method from a config, or from a checkpoint dict (weights loaded with strict keys)."""
    if isinstance(state_or_cfg, dict):
        cls = METHODS.get(state_or_cfg["method"])
        model = cls(from_dict(cls.Config, state_or_cfg["config"]))
        model.load_state_dict(state_or_cfg["model"], strict=True)
        return model
    return METHODS.get(method)(state_or_cfg)


# --------------------------------------------------------------------------- the loop
@dataclass
class PretrainResult:
    run_dir: Path
    final_checkpoint: Path
    steps: int
    losses: list[float]
    samples_per_second: float
    wall_seconds: float
    resumed_from: int
    reused: bool = False  # a finished run with the same config, data and precision was found
    train_seconds: float = 0.0  # optimisation time over all attempts (resumes included)


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _data_fingerprint(cache: SignalCache, extra: Sequence[SignalCache]) -> str:
    """What the run reads: the cache's fingerprint, then each extra corpus's."""
    return cache.fingerprint + "".join(f"+{other.fingerprint}" for other in extra)


def pretrain(
    method: str,
    cfg: MethodConfig,
    dataset,
    cache: SignalCache,
    engine: EngineConfig = EngineConfig(),
    *,
    resume: bool = False,
    force: bool = False,
    runs_root: Path | None = None,
    stop_after: int | None = None,
    on_step: Callable[[int, SSLMethod], None] | None = None,
    extra: Sequence[SignalCache] = (),
) -> PretrainResult:
    """Pre-train ``method`` with ``cfg`` on the training folds of ``dataset``.

    Args:
        cache: the prepared cache at ``cfg.data.rate``.
        resume: continue from ``checkpoint.pt`` of the same run (same config hash).
        force: train again even when this run already finished; otherwise a finished run
            (``final.pt`` of the same config, data and precision; training is deterministic, so
            it would be reproduced exactly) is returned as it is and nothing is overwritten.
        stop_after: stop (after checkpointing) once this many steps are done; for tests that
            interrupt a run.
        extra: caches of extra unlabelled corpora (:func:`bench.data.corpus.prepare_corpus`)
            at the same rate, added to the training rows; normalisation statistics stay those of
            the PTB-XL training folds.
        on_step: called as ``on_step(steps_done, model)`` after every optimiser step on every
            rank (checks, custom logging).

    Two processes asking for the same run (two ``bench run`` on one results directory) take
    turns through a file lock beside the run directory: the second waits, then reuses the
    finished run instead of clearing the directory the first is training in.
    """
    engine = with_resolved_precision(engine)  # the run hash holds bf16 or fp32, never "auto"
    args = (method, cfg, dataset, cache, engine)
    kwargs = dict(resume=resume, force=force, runs_root=runs_root, stop_after=stop_after,
                  on_step=on_step, extra=extra)  # fmt: skip
    _, world = _distributed()
    if world > 1:  # the ranks of one torchrun job are one run: no lock between them
        return _pretrain(*args, **kwargs)
    from filelock import FileLock

    root = Path(runs_root or results_dir() / "pretrain")
    root.mkdir(parents=True, exist_ok=True)
    name = run_id(method, cfg, engine, _data_fingerprint(cache, extra))
    with FileLock(str(root / f".{name}.lock")):
        return _pretrain(*args, **kwargs)


def _pretrain(
    method: str,
    cfg: MethodConfig,
    dataset,
    cache: SignalCache,
    engine: EngineConfig,
    *,
    resume: bool,
    force: bool,
    runs_root: Path | None,
    stop_after: int | None,
    on_step: Callable[[int, SSLMethod], None] | None,
    extra: Sequence[SignalCache],
) -> PretrainResult:
    """:func:`pretrain` without the lock: set up, build, resume, loop, finish."""
    from bench.tracking import start_run

    run = _Run(method, cfg, dataset, cache, engine, extra, runs_root)
    if run.final.is_file() and not force:
        return run.reused()
    run.build()
    run.resume(resume)
    batches = run.feed()
    end = cfg.optim.steps if stop_after is None else min(cfg.optim.steps, stop_after)
    started = time.perf_counter()
    with start_run(
        run.name,
        enabled=engine.mlflow and run.rank == 0,
        uri=engine.tracking_uri,
        tags={"kind": "pretrain", "method": method, "dataset": dataset.name},
    ) as tracker:
        if run.start_step == 0:
            tracker.log_params(run.params())
        samples = run.loop(batches, end, started, tracker, on_step)
        wall = time.perf_counter() - started
        if run.rank == 0 and end == cfg.optim.steps:
            run.finish(end, wall, tracker)
    if run.world > 1:
        dist.barrier()
    return PretrainResult(
        run.dir, run.final, end, run.losses, samples / max(wall, 1e-9), wall, run.start_step,
        train_seconds=run.prior_seconds + wall,
    )  # fmt: skip


class _Run:
    """One pre-training run, step by step, for :func:`_pretrain`.

    ``__init__`` sets up (rank, device, run directory); :meth:`build` reads the training rows
    and their statistics and makes the model and the optimiser; :meth:`resume` continues from
    the latest checkpoint (or clears an older attempt) and writes ``config.json``; :meth:`feed`
    wraps the model (DDP, compile) and starts this rank's loader at the resumed step;
    :meth:`loop` trains; :meth:`finish` writes ``final.pt`` and the loss history.
    """

    def __init__(self, method, cfg, dataset, cache, engine, extra, runs_root) -> None:
        if cache.rate != cfg.data.rate:
            raise BenchError(
                f"cache is at {cache.rate} Hz but the config asks for {cfg.data.rate} Hz"
            )
        self.method, self.cfg, self.dataset, self.cache = method, cfg, dataset, cache
        self.engine, self.extra = engine, extra
        self.rank, self.world = _distributed()
        self.device = resolve_device(engine.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        configure_device(self.device, engine.precision)
        for other in extra:
            if other.rate != cfg.data.rate:
                raise BenchError(
                    f"extra corpus cache {other.path} is at {other.rate} Hz, not {cfg.data.rate} Hz"
                )
        self.data_fingerprint = _data_fingerprint(cache, extra)
        self.name = run_id(method, cfg, engine, self.data_fingerprint)
        self.dir = Path(runs_root or results_dir() / "pretrain") / self.name
        self.checkpoint, self.final = self.dir / "checkpoint.pt", self.dir / "final.pt"
        self.start_step, self.losses, self.prior_seconds = 0, [], 0.0

    def reused(self) -> PretrainResult:
        """The finished run (training is deterministic: it would be reproduced exactly)."""
        done = load_checkpoint(self.final)
        steps = int(done["step"])
        seconds = float(done.get("train_seconds", 0.0))
        return PretrainResult(
            self.dir, self.final, steps, list(done["losses"]),
            steps * self.cfg.optim.batch_size / max(seconds, 1e-9), 0.0, steps,
            reused=True, train_seconds=seconds,
        )  # fmt: skip

    def build(self) -> None:
        """Training rows and per-lead statistics; the model, seeded, and its optimiser."""
        self.rows = training_rows(self.cache, self.dataset)
        self.leads = lead_indices(self.cfg.data.leads)
        self.mean, self.std = lead_statistics(self.cache.signals, self.rows, self.leads)
        torch.manual_seed(self.cfg.seed)
        self.model = build_method(self.cfg, self.method).to(self.device)
        e = self.engine
        use_attention(self.model, resolve_attention(e.attention, self.device, e.precision))
        self.opt = make_optimizer(self.model, self.cfg.optim)

    def resume(self, resume: bool) -> None:
        """Weights, optimiser state, losses and seconds of ``checkpoint.pt`` with ``resume``;
        otherwise a fresh directory. Rank 0 writes ``config.json``."""
        if resume and self.checkpoint.is_file():
            state = load_checkpoint(self.checkpoint)
            if state["run"] != self.name:
                raise BenchError(
                    f"{self.checkpoint} belongs to run {state['run']}, not {self.name}"
                )
            self.model.load_state_dict(state["model"], strict=True)
            self.opt.load_state_dict(state["optimizer"])
            self.start_step, self.losses = int(state["step"]), list(state["losses"])
            self.prior_seconds = float(state.get("train_seconds", 0.0))
        elif not resume and self.dir.exists() and self.rank == 0:
            shutil.rmtree(self.dir)  # a fresh start must not mix with an older attempt
        if self.rank == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            config = {
                **self.params(),
                "data_fingerprint": self.data_fingerprint,
                "data_fingerprint_kind": self.cache.fingerprint_kind,
                "extra_corpora": [other.manifest["dataset_root"] for other in self.extra],
            }
            (self.dir / "config.json").write_text(json.dumps(config, indent=1))

    def params(self) -> dict[str, Any]:
        """What the run is: method, config, engine, dataset (``config.json``, MLflow)."""
        return {
            "method": self.method,
            "config": to_dict(self.cfg),
            "engine": dataclasses.asdict(self.engine),
            "dataset": self.dataset.name,
        }

    def feed(self) -> Iterator[torch.Tensor]:
        """Wrap the model for this rank (after resuming: DDP broadcasts rank 0's weights) and
        start its loader at the resumed step: ``(micro_batch, C, crop)`` batches."""
        self.wrapped: torch.nn.Module = self.model
        if self.world > 1:
            self.wrapped = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if self.engine.compile:
            self.wrapped = torch.compile(self.wrapped)
        o = self.cfg.optim
        per_rank = o.batch_size // self.world
        if per_rank * self.world != o.batch_size:
            raise BenchError(f"batch size {o.batch_size} is not divisible by {self.world} ranks")
        micro = per_rank // o.grad_accum
        if micro * o.grad_accum != per_rank:
            raise BenchError(
                f"per-rank batch {per_rank} is not divisible by grad_accum {o.grad_accum}"
            )
        return iter(crop_loader(
            self.cache, self.rows, self.leads, self.mean, self.std, self.cfg, micro,
            self.engine.workers, self.device, rank=self.rank, world=self.world,
            start_batch=self.start_step * o.grad_accum, extra=self.extra,
        ))  # fmt: skip

    def loop(self, batches, end: int, started: float, tracker, on_step) -> int:
        """Steps ``start_step`` to ``end``; rank 0 shows progress, logs every ``log_every`` steps
        and checkpoints every ``checkpoint_every`` and at ``end``. Returns the samples seen.

        On CUDA the step's loss stays on the device and is read (and checked for NaN/inf) once
        per ``log_every`` steps, before any checkpoint: a ``.item()`` per step would make the
        host wait for the GPU's queue to drain every step. On a CPU there is no queue to wait
        for, so each loss is read and checked as it is made (a non-finite one stops the run
        before its optimiser step)."""
        from bench.progress import progress_bar

        cfg, engine, o = self.cfg, self.engine, self.cfg.optim
        bar = progress_bar(
            range(self.start_step, end), initial=self.start_step, total=o.steps,
            desc=f"pretrain {self.method}", disable=not engine.progress or self.rank != 0,
            unit="step",
        )  # fmt: skip
        defer = defers_host_reads(self.device)
        samples, wait, pending = 0, 0.0, []
        self.model.train()
        for step in bar:
            step_loss, logs, waited = train_step(
                self.model, self.wrapped, self.opt, batches, step, cfg, engine.precision,
                self.device, self.rank, sync=not defer,
            )  # fmt: skip
            wait += waited
            pending.append(step_loss)
            samples += o.batch_size
            done = step + 1
            if on_step is not None:
                on_step(done, self.model)
            log = done % engine.log_every == 0 or done == end
            save = done % engine.checkpoint_every == 0 or done == end
            if not (log or save or not defer):
                continue
            self.losses.extend(_read_losses(pending, done, self.method))
            pending = []
            if self.rank != 0:
                continue
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{self.losses[-1]:.4f}", samples_s=f"{samples / elapsed:.0f}")
            if log:
                rates = {"samples_per_s": samples / elapsed, "data_wait_fraction": wait / elapsed}
                logs = {k: float(v) for k, v in logs.items()}  # device scalars: read here
                metrics = {"loss": self.losses[-1], "lr": learning_rate(o, step), **rates, **logs}
                tracker.log_metrics(metrics, step=done)
            if save:
                self.save(self.checkpoint, done, self.prior_seconds + elapsed, optimizer=True)
        bar.close()
        return samples

    def finish(self, end: int, wall: float, tracker) -> None:
        """``final.pt`` (weights only), ``history.jsonl`` and the MLflow artifact (rank 0);
        ``wall``: seconds of this attempt."""
        self.save(self.final, end, self.prior_seconds + wall, optimizer=False)
        with open(self.dir / "history.jsonl", "w") as f:
            for i, value in enumerate(self.losses):
                f.write(json.dumps({"step": i + 1, "loss": value}) + "\n")
        tracker.log_metrics({"wall_seconds": wall})
        tracker.log_artifact(self.final, "checkpoint")

    def save(self, path: Path, step: int, train_seconds: float, optimizer: bool) -> None:
        """A checkpoint: weights (and the optimiser state to resume from) with what they are."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "run": self.name,
            "method": self.method,
            "config": to_dict(self.cfg),
            "norm_mean": torch.from_numpy(self.mean),
            "norm_std": torch.from_numpy(self.std),
            "dataset": self.dataset.name,
            "data_fingerprint": self.data_fingerprint,
            "precision": self.engine.precision,
            "precision_reason": self.engine.precision_reason,
            "model": self.model.state_dict(),
        }
        if optimizer:
            state["optimizer"] = self.opt.state_dict()
        save_checkpoint(path, {**state, "step": step, "losses": self.losses,
                               "train_seconds": train_seconds})  # fmt: skip


def make_optimizer(model: SSLMethod, o: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over the method's parameter groups; LR and weight decay are set every step by
    :func:`train_step` from the schedules (each group's ``wd_scale`` exempts norms and biases).

    The fused kernel (one pass per parameter, no per-tensor Python) where torch has it for the
    parameters' device, CUDA and CPU: on the 2-core CPU it cuts the optimiser step of JEPA-s or
    ECG-JEPA-s (17-18 M parameters) from 61-68 to 12-16 ms; elsewhere torch's default (foreach)
    implementation."""
    groups = [dict(g, lr=o.lr, weight_decay=0.0) for g in model.parameter_groups()]
    devices = {p.device.type for g in groups for p in g["params"]}
    fused = len(devices) == 1 and devices <= {"cuda", "cpu"}
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps, fused=fused or None)


def train_step(
    model: SSLMethod,
    wrapped: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batches: Iterator[torch.Tensor],
    step: int,
    cfg: MethodConfig,
    precision: str,
    device: torch.device,
    rank: int = 0,
    prepare: Callable[[torch.Tensor, torch.Generator], dict] | None = None,
    sync: bool = True,
) -> tuple[float | torch.Tensor, dict[str, Any], float]:
    """One optimiser step of the engine: schedules, ``grad_accum`` micro-batches (masks or views,
    forward under autocast, backward), clipping, AdamW, then the method's post-step hook (EMA).

    Args:
        model: the method; ``wrapped`` is what the forward goes through (the method itself, or
            its DistributedDataParallel / ``torch.compile`` wrapper).
        batches: yields ``(micro_batch, C, crop)`` float tensors (the DataLoader's iterator).
        step: 0-based optimiser step; seeds dropout, masks and augmentations with ``cfg.seed``
            and ``rank``, so the step is a pure function of its inputs.
        precision: ``bf16`` (autocast) or ``fp32``.
        prepare: replaces ``model.prepare_batch`` (``bench perf`` times a per-sample reference).
        sync: read the loss on the host and stop on a non-finite one before the optimiser
            step; with ``False`` the step never waits for the device and the loss comes back
            as a 0-d device tensor for the caller to read and check later (:func:`_read_losses`).

    Returns:
        ``(loss, logs, data_wait_seconds)``: the mean loss over the micro-batches, the method's
        logs of the last one (numbers or 0-d tensors), and the time spent waiting for
        ``batches``.
    """
    o = cfg.optim
    progress = step / o.steps
    for group in opt.param_groups:
        group["lr"] = learning_rate(o, step)
        group["weight_decay"] = weight_decay(o, step) * group["wd_scale"]
    torch.manual_seed(_mix(cfg.seed, step, rank))  # dropout / drop-path: a function of the step
    prepare = prepare or model.prepare_batch
    step_loss: float | torch.Tensor = 0.0
    wait, logs = 0.0, {}
    for k in range(o.grad_accum):
        t0 = time.perf_counter()
        x = next(batches).to(device, non_blocking=True)
        wait += time.perf_counter() - t0
        gen = torch.Generator(device=device).manual_seed(_mix(cfg.seed, step, rank, k))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            batch = prepare(x, gen)
            loss, logs = wrapped(batch, progress)
        if sync:
            _read_losses([loss], step + 1, model.name)
        (loss / o.grad_accum).backward()
        step_loss += (loss.item() if sync else loss.detach().float()) / o.grad_accum
    if o.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    model.after_optimizer_step(progress)
    return step_loss, logs, wait


def defers_host_reads(device: torch.device) -> bool:
    """Whether the loop leaves each step's loss on ``device`` and reads it every ``log_every``
    steps: on CUDA, where reading it stalls the GPU's queue; not on a CPU (nothing to stall)."""
    return device.type == "cuda"


def _read_losses(losses: list, last_step: int, method: str) -> list[float]:
    """The losses of steps ``last_step - len(losses) + 1 .. last_step`` as floats (one host sync
    for device tensors); a non-finite one stops the run, naming its step (1-based)."""
    if not losses:
        return []
    tensors = [v for v in losses if isinstance(v, torch.Tensor)]
    read = iter(torch.stack(tensors).tolist() if tensors else [])
    values = [next(read) if isinstance(v, torch.Tensor) else v for v in losses]
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise BenchError(
                f"{method}: non-finite loss at step {last_step - len(values) + i + 1} ({value})",
                hint="lower optim.lr, or use --precision fp32",
            )
    return values


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence mixing, so nearby steps decorrelate)."""
    return int(
        np.random.SeedSequence([abs(int(v)) for v in values]).generate_state(1, dtype=np.uint64)[0]
        >> 1
    )


def pretrained_encoder(checkpoint: Path) -> tuple[torch.nn.Module, dict]:
    """The benchmarked encoder of a checkpoint plus its metadata (config, normalisation)."""
    state = load_checkpoint(checkpoint)
    model = build_method(state)
    return model.benchmark_encoder(), {
        k: v for k, v in state.items() if k not in ("model", "optimizer")
    }
