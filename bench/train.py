"""The pre-training engine: one loop for every registered method.

Design choices that make runs trustworthy:

* **Deterministic and resumable by construction.** Every random draw is a function of
  ``(seed, step)`` or ``(seed, epoch, record)``: the data order and crop offsets
  (:class:`EpochBatchSampler`, :class:`CropDataset`), the masks and augmentations (a generator
  seeded per step and rank) and dropout / drop-path (the global RNG re-seeded per step). A run
  resumed from a checkpoint therefore continues exactly as if it had never stopped.
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
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.config import apply_overrides, config_hash, from_dict, to_dict
from bench.data.cache import SignalCache
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
from bench.task import TRAIN_FOLDS

CHECKPOINT_FORMAT = 1


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
    from bench.precision import resolve_precision

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


# --------------------------------------------------------------------------- data
def training_rows(cache: SignalCache, dataset, folds=TRAIN_FOLDS) -> np.ndarray:
    """Cache rows of the records in ``folds`` (pre-training never sees folds 9 and 10)."""
    meta = dataset.metadata
    ids = meta.index[meta["strat_fold"].isin(folds)].to_numpy()
    ids = ids[np.isin(ids, cache.ecg_ids)]
    if len(ids) == 0:
        raise BenchError(f"no cached records in folds {list(folds)} of {dataset.name}")
    return np.sort(cache.rows(ids))


def lead_statistics(
    signals: np.ndarray, rows: np.ndarray, leads: list[int], chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Per-lead mean and std over ``rows`` of a ``[N, C, T]`` array, accumulated in float64.

    Returns:
        ``(mean, std)``, each ``(len(leads),)`` float32; std floored at 1e-6.
    """
    total = np.zeros(len(leads))
    total_sq = np.zeros(len(leads))
    count = 0
    for start in range(0, len(rows), chunk):
        block = np.asarray(signals[rows[start : start + chunk]][:, leads], dtype=np.float64)
        total += block.sum(axis=(0, 2))
        total_sq += (block**2).sum(axis=(0, 2))
        count += block.shape[0] * block.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


class CropDataset(Dataset):
    """Random crops of cached records, normalised per lead and clipped.

    Index ``k`` encodes ``(epoch, i) = divmod(k, n)`` so the crop offset is a pure function of
    ``(seed, epoch, i)``, whichever worker loads it. Items are ``(C, crop)`` float32 tensors.
    ``extra`` appends ``(cache path, rows)`` of other corpora after the main rows.
    """

    def __init__(
        self,
        cache_path: Path,
        rows: np.ndarray,
        leads: list[int],
        crop: int,
        mean,
        std,
        clip: float,
        seed: int,
        extra: Sequence[tuple[Path, np.ndarray]] = (),
    ):
        self.sources = [(Path(cache_path), np.asarray(rows))]
        self.sources += [(Path(path), np.asarray(r)) for path, r in extra]
        self.bounds = np.cumsum([0] + [len(r) for _, r in self.sources])
        self.leads = leads
        self.crop = crop
        self.mean = np.asarray(mean, dtype=np.float32)[:, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None]
        self.clip = clip
        self.seed = seed
        self._signals: list[np.ndarray | None] = [None] * len(
            self.sources
        )  # memmaps, opened per worker

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def __getitem__(self, k: int) -> torch.Tensor:
        epoch, i = divmod(int(k), len(self))
        source = int(np.searchsorted(self.bounds, i, side="right")) - 1
        if self._signals[source] is None:
            self._signals[source] = np.load(self.sources[source][0] / "signals.npy", mmap_mode="r")
        signals, row = self._signals[source], self.sources[source][1][i - self.bounds[source]]
        length = signals.shape[-1]
        if self.crop > length:
            raise BenchError(f"crop of {self.crop} samples is longer than the records ({length})")
        offset = int(
            np.random.default_rng([self.seed, epoch, i]).integers(0, length - self.crop + 1)
        )
        x = np.asarray(signals[row, self.leads, offset : offset + self.crop], dtype=np.float32)
        x = (x - self.mean) / self.std
        if self.clip > 0:
            np.clip(x, -self.clip, self.clip, out=x)
        return torch.from_numpy(x)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of ``epoch * n + i`` indices: a fresh permutation per epoch from ``(seed, epoch)``,
    sharded over ranks, ``drop_last``. Starts at ``start_batch`` without replaying the past."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
    ):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start_batch = rank, world, start_batch
        self.per_epoch = (n // world) // batch_size
        if self.per_epoch < 1:
            raise BenchError(
                f"batch size {batch_size} x {world} ranks exceeds the {n} training records",
                hint="lower optim.batch_size with --set optim.batch_size=N",
            )

    def __iter__(self) -> Iterator[list[int]]:
        batch = self.start_batch
        while True:
            epoch, b = divmod(batch, self.per_epoch)
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            shard = perm[self.rank :: self.world][: self.per_epoch * self.batch_size]
            for j in range(b, self.per_epoch):
                yield (
                    epoch * self.n + shard[j * self.batch_size : (j + 1) * self.batch_size]
                ).tolist()
                batch += 1


def crop_loader(
    cache: SignalCache,
    rows: np.ndarray,
    leads: list[int],
    mean: np.ndarray,
    std: np.ndarray,
    cfg: MethodConfig,
    micro_batch: int,
    workers: int,
    device: torch.device,
    *,
    rank: int = 0,
    world: int = 1,
    start_batch: int = 0,
    extra: Sequence[SignalCache] = (),
) -> DataLoader:
    """The engine's loader of normalised random crops: ``(micro_batch, C, crop)`` float32
    batches forever, ``workers`` processes with 4 batches prefetched each, pinned memory when
    feeding a GPU."""
    data = CropDataset(
        cache.path, rows, leads, cfg.data.crop_samples, mean, std, cfg.data.clip, cfg.seed,
        extra=[(other.path, np.arange(other.signals.shape[0])) for other in extra],
    )  # fmt: skip
    sampler = EpochBatchSampler(len(data), micro_batch, cfg.seed, rank, world, start_batch)
    return DataLoader(
        data,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


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


# --------------------------------------------------------------------------- checkpoints
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

    fingerprint = cache.fingerprint + "".join(f"+{other.fingerprint}" for other in extra)
    root = Path(runs_root or results_dir() / "pretrain")
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{run_id(method, cfg, engine, fingerprint)}.lock")):
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
    """:func:`pretrain` without the lock."""
    from tqdm import tqdm

    from bench.tracking import start_run

    if cache.rate != cfg.data.rate:
        raise BenchError(f"cache is at {cache.rate} Hz but the config asks for {cfg.data.rate} Hz")
    rank, world = _distributed()
    device = resolve_device(engine.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    for other in extra:
        if other.rate != cfg.data.rate:
            raise BenchError(
                f"extra corpus cache {other.path} is at {other.rate} Hz, not {cfg.data.rate} Hz"
            )
    data_fingerprint = cache.fingerprint + "".join(f"+{other.fingerprint}" for other in extra)
    run_name = run_id(method, cfg, engine, data_fingerprint)
    run_dir = Path(runs_root or results_dir() / "pretrain") / run_name
    ckpt_path, final_path = run_dir / "checkpoint.pt", run_dir / "final.pt"
    if final_path.is_file() and not force:
        done = load_checkpoint(final_path)
        steps = int(done["step"])
        seconds = float(done.get("train_seconds", 0.0))
        return PretrainResult(
            run_dir, final_path, steps, list(done["losses"]),
            steps * cfg.optim.batch_size / max(seconds, 1e-9), 0.0, steps,
            reused=True, train_seconds=seconds,
        )  # fmt: skip

    rows = training_rows(cache, dataset)
    leads = lead_indices(cfg.data.leads)
    mean, std = lead_statistics(cache.signals, rows, leads)

    torch.manual_seed(cfg.seed)
    model = build_method(cfg, method).to(device)
    use_attention(model, resolve_attention(engine.attention, device, engine.precision))
    opt = make_optimizer(model, cfg.optim)
    start_step, losses, prior_seconds = 0, [], 0.0
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        if state["run"] != run_name:
            raise BenchError(f"{ckpt_path} belongs to run {state['run']}, not {run_name}")
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        start_step, losses = int(state["step"]), list(state["losses"])
        prior_seconds = float(state.get("train_seconds", 0.0))
    elif not resume and run_dir.exists() and rank == 0:
        shutil.rmtree(run_dir)  # a fresh start must not mix with an older attempt
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(
            json.dumps(
                {
                    "method": method,
                    "config": to_dict(cfg),
                    "engine": dataclasses.asdict(engine),
                    "dataset": dataset.name,
                    "data_fingerprint": data_fingerprint,
                    "extra_corpora": [other.manifest["dataset_root"] for other in extra],
                },
                indent=1,
            )
        )

    wrapped: torch.nn.Module = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if engine.compile:
        wrapped = torch.compile(wrapped)

    o = cfg.optim
    per_rank = o.batch_size // world
    if per_rank * world != o.batch_size:
        raise BenchError(f"batch size {o.batch_size} is not divisible by {world} ranks")
    micro = per_rank // o.grad_accum
    if micro * o.grad_accum != per_rank:
        raise BenchError(f"per-rank batch {per_rank} is not divisible by grad_accum {o.grad_accum}")
    loader = crop_loader(
        cache, rows, leads, mean, std, cfg, micro, engine.workers, device,
        rank=rank, world=world, start_batch=start_step * o.grad_accum, extra=extra,
    )  # fmt: skip
    batches = iter(loader)

    meta = {
        "format": CHECKPOINT_FORMAT,
        "run": run_name,
        "method": method,
        "config": to_dict(cfg),
        "norm_mean": torch.from_numpy(mean),
        "norm_std": torch.from_numpy(std),
        "dataset": dataset.name,
        "data_fingerprint": data_fingerprint,
        "precision": engine.precision,
        "precision_reason": engine.precision_reason,
    }
    end = o.steps if stop_after is None else min(o.steps, stop_after)
    started, samples, wait = time.perf_counter(), 0, 0.0
    with start_run(
        run_name,
        enabled=engine.mlflow and rank == 0,
        uri=engine.tracking_uri,
        tags={"kind": "pretrain", "method": method, "dataset": dataset.name},
    ) as tracker:
        if start_step == 0:
            tracker.log_params(
                {
                    "method": method,
                    "config": to_dict(cfg),
                    "engine": dataclasses.asdict(engine),
                    "dataset": dataset.name,
                }
            )
        bar = tqdm(
            range(start_step, end),
            initial=start_step,
            total=o.steps,
            desc=f"pretrain {method}",
            disable=not engine.progress or rank != 0,
            unit="step",
        )
        model.train()
        for step in bar:
            step_loss, logs, waited = train_step(
                model, wrapped, opt, batches, step, cfg, engine.precision, device, rank
            )
            wait += waited
            losses.append(step_loss)
            samples += o.batch_size
            done = step + 1
            if on_step is not None:
                on_step(done, model)
            if rank == 0:
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{step_loss:.4f}", samples_s=f"{samples / elapsed:.0f}")
                if done % engine.log_every == 0 or done == end:
                    tracker.log_metrics(
                        {
                            "loss": step_loss,
                            "lr": learning_rate(o, step),
                            "samples_per_s": samples / elapsed,
                            "data_wait_fraction": wait / elapsed,
                            **logs,
                        },
                        step=done,
                    )
                if done % engine.checkpoint_every == 0 or done == end:
                    save_checkpoint(
                        ckpt_path,
                        {
                            **meta,
                            "model": model.state_dict(),
                            "optimizer": opt.state_dict(),
                            "step": done,
                            "losses": losses,
                            "train_seconds": prior_seconds + elapsed,
                        },
                    )
        bar.close()
        wall = time.perf_counter() - started
        if rank == 0 and end == o.steps:
            save_checkpoint(
                final_path,
                {
                    **meta,
                    "model": model.state_dict(),
                    "step": end,
                    "losses": losses,
                    "train_seconds": prior_seconds + wall,
                },
            )
            with open(run_dir / "history.jsonl", "w") as f:
                for i, value in enumerate(losses):
                    f.write(json.dumps({"step": i + 1, "loss": value}) + "\n")
            tracker.log_metrics({"wall_seconds": wall})
            tracker.log_artifact(final_path, "checkpoint")
    if world > 1:
        dist.barrier()
    return PretrainResult(
        run_dir, final_path, end, losses, samples / max(wall, 1e-9), wall, start_step,
        train_seconds=prior_seconds + wall,
    )  # fmt: skip


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
) -> tuple[float, dict[str, Any], float]:
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

    Returns:
        ``(loss, logs, data_wait_seconds)``: the mean loss over the micro-batches, the method's
        logs of the last one, and the time spent waiting for ``batches``.
    """
    o = cfg.optim
    progress = step / o.steps
    for group in opt.param_groups:
        group["lr"] = learning_rate(o, step)
        group["weight_decay"] = weight_decay(o, step) * group["wd_scale"]
    torch.manual_seed(_mix(cfg.seed, step, rank))  # dropout / drop-path: a function of the step
    prepare = prepare or model.prepare_batch
    step_loss, wait, logs = 0.0, 0.0, {}
    for k in range(o.grad_accum):
        t0 = time.perf_counter()
        x = next(batches).to(device, non_blocking=True)
        wait += time.perf_counter() - t0
        gen = torch.Generator(device=device).manual_seed(_mix(cfg.seed, step, rank, k))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            batch = prepare(x, gen)
            loss, logs = wrapped(batch, progress)
        if not torch.isfinite(loss):
            raise BenchError(
                f"{model.name}: non-finite loss at step {step} ({loss.item()})",
                hint="lower optim.lr, or use --precision fp32",
            )
        (loss / o.grad_accum).backward()
        step_loss += loss.item() / o.grad_accum
    if o.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    model.after_optimizer_step(progress)
    return step_loss, logs, wait


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
