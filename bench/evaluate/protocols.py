"""The downstream protocols (PROTOCOL.md 1.3): linear probe, attentive probe, fine-tuning.

Each ``fit_*`` function sees the training and validation splits only (fold 10 is not an
argument), trains on random 2.5 s crops, evaluates the validation split every epoch on 2.5 s
windows with a 1.25 s stride aggregated per record, and keeps the epoch with the best validation
macro AUROC (early stopping with ``patience``). :func:`predict_windows` then scores any split
with the selected model.

Every random draw (head initialisation, crop offsets, batch order, dropout) is a function of the
downstream ``seed`` and the epoch, so a record is reproduced exactly on the same machine.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError
from bench.evaluate.config import AttentiveConfig, FinetuneConfig, LinearConfig
from bench.evaluate.metrics import aggregate_windows, macro_auroc
from bench.evaluate.signals import SignalSource, crop, to_device
from bench.method import cosine, decay_groups

# on_epoch(epoch, {"train_loss": .., "val_macro_auroc": ..}); may raise to stop (Optuna pruning).
EpochCallback = Callable[[int, dict[str, float]], None]
TRAIN_CROP_SEED = 0  # the cached training crops of the linear probe are shared by all seeds


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _seed(*values: int) -> int:
    return int(np.random.SeedSequence([abs(int(v)) for v in values]).generate_state(1)[0])


# --------------------------------------------------------------------------- heads
class AttentiveHead(nn.Module):
    """One learned query cross-attending over the tokens, then a linear layer.

    Shapes: tokens ``(B, N, D)`` -> logits ``(B, k)``. Built from timm's ``AttentionPoolLatent``
    (query projection, multi-head cross-attention, residual MLP), as the attentive probes of
    I-JEPA and Weimann & Conrad.
    """

    def __init__(self, dim: int, n_classes: int, heads: int):
        super().__init__()
        from timm.layers import AttentionPoolLatent

        self.pool = AttentionPoolLatent(dim, num_heads=heads, mlp_ratio=4.0, latent_len=1)
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(tokens))


class Classifier(nn.Module):
    """Encoder + linear head on the mean-pooled tokens: ``(B, C, T)`` -> ``(B, k)``."""

    def __init__(self, encoder: nn.Module, head: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@dataclass
class FitResult:
    """A selected downstream model and how it was selected (never with fold 10)."""

    model: nn.Module  # linear: nn.Linear on pooled features; attentive: AttentiveHead;
    # finetune: Classifier
    history: list[dict[str, float]]
    best_epoch: int
    val_macro_auroc: float
    seconds: float
    head_init: dict | None = None  # finetune: the linear probe it started from
    extra: dict = field(default_factory=dict)


class EarlyStopping:
    """Tracks the best validation score; ``stop`` after ``patience`` epochs without a gain."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = -1
        self.best_state: dict | None = None
        self.bad = 0
        self.history: list[dict[str, float]] = []

    def end_epoch(
        self,
        epoch: int,
        train_loss: float,
        score: float,
        module: nn.Module,
        on_epoch: EpochCallback | None,
    ) -> bool:
        """Record an epoch's train loss and validation score; True when training should stop."""
        logs = {"train_loss": train_loss, "val_macro_auroc": score}
        self.history.append({"epoch": epoch, **logs})
        self.update(epoch, score, module)
        if on_epoch is not None:
            on_epoch(epoch, logs)
        return self.stop

    def update(self, epoch: int, score: float, module: nn.Module) -> None:
        if score > self.best:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            self.bad += 1

    @property
    def stop(self) -> bool:
        return self.bad >= self.patience


def validation_auroc(y: np.ndarray, window_logits: np.ndarray, aggregation: str) -> float:
    """Macro AUROC of per-record aggregated window logits ``(n, W, k)`` on the validation split."""
    return macro_auroc(y, aggregate_windows(window_logits, aggregation))


# --------------------------------------------------------------------------- encoding
@torch.no_grad()
def encode(
    encoder: nn.Module,
    source: SignalSource,
    offsets: np.ndarray,
    window: int,
    batch_size: int,
    device: torch.device,
    precision: str,
) -> np.ndarray:
    """Pooled features of crops: ``offsets`` ``(n, K)`` start samples per record -> ``(n, K, D)``."""
    encoder.eval()
    n, k = offsets.shape
    out: np.ndarray | None = None
    per_chunk = max(1, batch_size // k)
    for start in range(0, n, per_chunk):
        index = np.arange(start, min(start + per_chunk, n))
        x = source.read(index)  # (b, C, T)
        crops = crop(np.repeat(x, k, axis=0), offsets[index].reshape(-1), window)
        with autocast(device, precision):
            feats = encoder(to_device(crops, device)).float().cpu().numpy()
        if out is None:
            out = np.empty((n, k, feats.shape[-1]), dtype=np.float32)
        out[index] = feats.reshape(len(index), k, -1)
    assert out is not None
    return out


@torch.no_grad()
def predict_windows(
    model: Callable[[torch.Tensor], torch.Tensor],
    source: SignalSource,
    offsets: np.ndarray,
    window: int,
    batch_size: int,
    device: torch.device,
    precision: str,
) -> np.ndarray:
    """Logits of every evaluation window: ``offsets`` ``(W,)`` -> ``(n, W, k)`` float32.

    ``model`` maps ``(b, C, window)`` crops to ``(b, k)`` logits; all windows of a chunk of
    records go through it in one batch.
    """
    w = len(offsets)
    per_chunk = max(1, batch_size // w)
    out: np.ndarray | None = None
    for start in range(0, len(source), per_chunk):
        index = np.arange(start, min(start + per_chunk, len(source)))
        x = source.read(index)
        crops = crop(np.repeat(x, w, axis=0), np.tile(offsets, len(index)), window)
        with autocast(device, precision):
            logits = model(to_device(crops, device)).float().cpu().numpy()
        if out is None:
            out = np.empty((len(source), w, logits.shape[-1]), dtype=np.float32)
        out[index] = logits.reshape(len(index), w, -1)
    assert out is not None
    return out


def train_crop_offsets(ecg_ids: np.ndarray, length: int, window: int, k: int) -> np.ndarray:
    """``(n, k)`` fixed random crop starts per record (a function of the ``ecg_id`` only, so the
    cached features of a record never depend on which task or split asked for them)."""
    return np.stack(
        [
            np.random.default_rng([TRAIN_CROP_SEED, int(i)]).integers(0, length - window + 1, k)
            for i in ecg_ids
        ]
    ).astype(np.int64)


class FeatureStore:
    """Pooled features of one frozen encoder, computed once per fold group and kept on disk.

    ``results/features/<subject>/<window settings>/<group>.npz`` holds ``ecg_ids``, ``offsets``
    and ``features`` ``(n, K, D)``: K fixed random crops per record for ``train``, the evaluation
    windows for ``val`` and ``test``. Every task and seed reuses them (the linear probe never
    re-encodes). Written atomically; a corrupt or mismatching file is recomputed.
    """

    def __init__(
        self,
        directory: Path,
        group_source: Callable[[str], SignalSource],
        encoder: nn.Module,
        window: int,
        eval_offsets: np.ndarray,
        train_crops: int,
        batch_size: int,
        device: torch.device,
        precision: str,
    ):
        self.directory = directory
        self.group_source = group_source
        self.encoder = encoder
        self.window = window
        self.eval_offsets = eval_offsets
        self.train_crops = train_crops
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self._memory: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def features(self, group: str, ecg_ids: np.ndarray) -> np.ndarray:
        """Features of records ``ecg_ids`` (all from the ``group`` folds): ``(n, K, D)``.

        The whole group is encoded at once, so a record's features never depend on which task
        asked first (batch composition cannot change them).
        """
        if group not in self._memory:
            self._memory[group] = self._load_or_compute(group, self.group_source(group))
        ids, feats = self._memory[group]
        position = {int(i): j for j, i in enumerate(ids)}
        missing = [int(i) for i in ecg_ids if int(i) not in position]
        if missing:
            raise BenchError(f"records {missing[:5]} are not in the cached {group} features")
        return feats[[position[int(i)] for i in ecg_ids]]

    def _offsets(self, group: str, source: SignalSource) -> np.ndarray:
        if group == "train":
            return train_crop_offsets(source.ecg_ids, source.length, self.window, self.train_crops)
        return np.tile(self.eval_offsets, (len(source), 1))

    def _load_or_compute(self, group: str, source: SignalSource):
        path = self.directory / f"{group}.npz"
        offsets = self._offsets(group, source)
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    ids, saved_offsets, feats = data["ecg_ids"], data["offsets"], data["features"]
                if np.array_equal(ids, source.ecg_ids) and np.array_equal(saved_offsets, offsets):
                    return ids, feats
            except (OSError, ValueError, KeyError):
                pass  # corrupt or from another layout: recompute below
        feats = encode(
            self.encoder, source, offsets, self.window, self.batch_size, self.device, self.precision
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
        try:
            np.savez(tmp, ecg_ids=source.ecg_ids, offsets=offsets, features=feats)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written temporary
            raise
        return source.ecg_ids, feats


# --------------------------------------------------------------------------- linear probe
def fit_linear(
    train_features: np.ndarray,
    y_train: np.ndarray,
    val_features: np.ndarray,
    y_val: np.ndarray,
    cfg: LinearConfig,
    aggregation: str,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Linear probe on cached features (BCE with logits, AdamW).

    Args:
        train_features: ``(n, K, D)`` K crops per training record; each epoch uses one per record.
        val_features: ``(m, W, D)`` the evaluation windows of the validation records.

    Returns:
        the best epoch's ``nn.Linear(D, k)`` with the feature standardisation folded in, so it
        applies to raw pooled features.
    """
    with _one_thread():
        return fit_linear_with(
            train_features, y_train, val_features, y_val, cfg, aggregation, seed, on_epoch,
            validation_auroc,
        )  # fmt: skip


@contextlib.contextmanager
def _one_thread():
    """Run tiny tensor ops (a ``(64, D) @ (D, k)`` layer) on one intra-op thread: with more,
    thread hand-off dominates them, and a second busy process on the machine makes every op
    wait for a core (measured on the real subset with 2 cores: 31 s instead of 166 s for the
    four tasks when another job was running)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_linear_with(
    train_features, y_train, val_features, y_val, cfg, aggregation, seed, on_epoch, score_fn
) -> FitResult:
    """:func:`fit_linear` on the caller's threads, scoring epochs with
    ``score_fn(y_val, window_logits, aggregation)`` (``bench perf --probe`` passes the per-label
    scikit-learn version to time the straightforward probe)."""
    started = time.perf_counter()
    n, k_crops, dim = train_features.shape
    flat = torch.from_numpy(train_features.reshape(-1, dim)).double()
    mean, std = flat.mean(0).float(), flat.std(0).float().clamp_min(1e-6)
    train = (torch.from_numpy(train_features) - mean) / std
    val = ((torch.from_numpy(val_features) - mean) / std).reshape(-1, dim)
    targets = torch.from_numpy(y_train.astype(np.float32))

    torch.manual_seed(_seed(seed, 1))
    head = nn.Linear(dim, y_train.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    stopper = EarlyStopping(cfg.patience)
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([seed, epoch, 1])
        pick, order = rng.integers(0, k_crops, n), rng.permutation(n)
        head.train()
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            rows = torch.from_numpy(order[start : start + cfg.batch_size])
            x = train[rows, torch.from_numpy(pick)[rows]]
            loss = F.binary_cross_entropy_with_logits(head(x), targets[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        head.eval()
        with torch.no_grad():
            logits = head(val).reshape(len(val_features), -1, y_train.shape[1]).numpy()
        score = score_fn(y_val, logits, aggregation)
        if stopper.end_epoch(epoch, total / n, score, head, on_epoch):
            break
    head.load_state_dict(stopper.best_state)
    with torch.no_grad():  # fold (x - mean) / std into the layer
        weight = head.weight / std
        head.bias -= weight @ mean
        head.weight.copy_(weight)
    return FitResult(
        head, stopper.history, stopper.best_epoch, stopper.best, time.perf_counter() - started
    )


# ------------------------------------------------- attentive probe and fine-tuning: their epochs
def _epoch_crops(n: int, length: int, window: int, seed: int, epoch: int, tag: int):
    rng = np.random.default_rng([seed, epoch, tag])
    return rng.permutation(n), rng.integers(0, length - window + 1, n)


def _crop_batches(
    source: SignalSource, batch_size: int, window: int, seed: int, epoch: int, tag: int
):
    """One epoch of training batches: ``(index, x)`` with ``x`` ``(b, C, window)`` fresh random
    crops of the records at ``index`` (shuffled by ``seed``, ``epoch`` and the protocol's
    ``tag``; sorted within a batch)."""
    order, offsets = _epoch_crops(len(source), source.length, window, seed, epoch, tag)
    for start in range(0, len(source), batch_size):
        index = np.sort(order[start : start + batch_size])
        yield index, crop(source.read(index), offsets[index], window)


def _bce(model: Callable, x: np.ndarray, targets: torch.Tensor, device, precision: str):
    """Multi-label BCE of ``model`` on crops ``x`` ``(b, C, window)``, the loss in fp32."""
    with autocast(device, precision):
        logits = model(to_device(x, device))
    return F.binary_cross_entropy_with_logits(logits.float(), targets.to(device))


@dataclass
class _Validation:
    """What scores a model on the validation split every epoch: windows at ``offsets``,
    aggregated per record, macro AUROC."""

    source: SignalSource
    y: np.ndarray
    offsets: np.ndarray
    window: int
    aggregation: str
    batch_size: int
    device: torch.device
    precision: str

    def score(self, model: Callable[[torch.Tensor], torch.Tensor]) -> float:
        logits = predict_windows(
            model, self.source, self.offsets, self.window, self.batch_size, self.device,
            self.precision,
        )  # fmt: skip
        return validation_auroc(self.y, logits, self.aggregation)


@dataclass(frozen=True)
class WindowedFit:
    """What the protocols that train on raw crops (attentive probe, fine-tuning) share: the
    training crop length ``window`` (samples), the validation windows (``eval_offsets``, their
    ``aggregation`` per record, ``eval_batch_size``), device, precision, seed and the per-epoch
    callback."""

    window: int
    eval_offsets: np.ndarray
    aggregation: str
    seed: int
    device: torch.device
    precision: str
    eval_batch_size: int
    on_epoch: EpochCallback | None = None

    def validation(self, val: SignalSource, y_val: np.ndarray) -> _Validation:
        return _Validation(
            val, y_val, self.eval_offsets, self.window, self.aggregation, self.eval_batch_size,
            self.device, self.precision,
        )  # fmt: skip


# --------------------------------------------------------------------------- attentive probe
def fit_attentive(
    encoder: nn.Module,
    train: SignalSource,
    y_train: np.ndarray,
    val: SignalSource,
    y_val: np.ndarray,
    cfg: AttentiveConfig,
    run: WindowedFit,
) -> FitResult:
    """Attentive probe over the frozen encoder's tokens, fresh random crops every epoch."""
    started = time.perf_counter()
    encoder.eval().requires_grad_(False)
    heads = cfg.heads or encoder.blocks[0].attn.num_heads
    torch.manual_seed(_seed(run.seed, 2))
    head = AttentiveHead(encoder.num_features, y_train.shape[1], heads).to(run.device)
    opt = torch.optim.AdamW(decay_groups(head), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for group in opt.param_groups:
        group["weight_decay"] = cfg.weight_decay * group.pop("wd_scale")
    targets = torch.from_numpy(y_train.astype(np.float32))
    validation = run.validation(val, y_val)
    stopper = EarlyStopping(cfg.patience)

    def tokens_then_head(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tokens = encoder.forward_tokens(x)
        return head(tokens)

    for epoch in range(cfg.epochs):
        head.train()
        total = 0.0
        for index, x in _crop_batches(train, cfg.batch_size, run.window, run.seed, epoch, 2):
            loss = _bce(tokens_then_head, x, targets[index], run.device, run.precision)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(index)
        head.eval()
        score = validation.score(tokens_then_head)
        if stopper.end_epoch(epoch, total / len(train), score, head, run.on_epoch):
            break
    head.load_state_dict(stopper.best_state)
    return FitResult(
        head, stopper.history, stopper.best_epoch, stopper.best, time.perf_counter() - started
    )


class TokensThenHead(nn.Module):
    """Frozen encoder tokens -> attentive head, for :func:`predict_windows`."""

    def __init__(self, encoder: nn.Module, head: AttentiveHead):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_tokens(x))


# --------------------------------------------------------------------------- fine-tuning
def fit_finetune(
    encoder: nn.Module,
    head: nn.Linear,
    train: SignalSource,
    y_train: np.ndarray,
    val: SignalSource,
    y_val: np.ndarray,
    cfg: FinetuneConfig,
    run: WindowedFit,
) -> FitResult:
    """Encoder and head end to end, starting from ``head`` (the linear probe's).

    AdamW; weight decay on Linear weights only; the encoder's learning rate is
    ``lr * encoder_lr_scale``; linear warm-up for ``warmup_epochs`` then cosine to 0, per step.
    """
    started = time.perf_counter()
    model = Classifier(encoder.requires_grad_(True), copy.deepcopy(head)).to(run.device)
    groups = []
    for module, scale in ((model.encoder, cfg.encoder_lr_scale), (model.head, 1.0)):
        for group in decay_groups(module):
            groups.append(
                {
                    "params": group["params"],
                    "lr_scale": scale,
                    "weight_decay": cfg.weight_decay * group["wd_scale"],
                }
            )
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    targets = torch.from_numpy(y_train.astype(np.float32))
    validation = run.validation(val, y_val)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    stopper, step = EarlyStopping(cfg.patience), 0

    # the linear-probe head is epoch -1: fine-tuning must beat it on validation to be kept
    model.eval()
    stopper.update(-1, validation.score(model), model)
    for epoch in range(cfg.epochs):
        torch.manual_seed(_seed(run.seed, epoch, 3))  # dropout / drop-path
        model.train()
        total = 0.0
        for index, x in _crop_batches(train, cfg.batch_size, run.window, run.seed, epoch, 3):
            if step < warmup:
                lr = cfg.lr * (step + 1) / warmup
            else:
                lr = cosine((step - warmup) / max(total_steps - warmup, 1), cfg.lr, 0.0)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            loss = _bce(model, x, targets[index], run.device, run.precision)
            if not torch.isfinite(loss):
                raise BenchError(
                    f"fine-tuning diverged (loss {loss.item()}) at epoch {epoch}",
                    hint="lower finetune.lr with --eval-set finetune.lr=..., or --precision fp32",
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.item() * len(index)
            step += 1
        model.eval()
        score = validation.score(model)
        if stopper.end_epoch(epoch, total / len(train), score, model, run.on_epoch):
            break
    model.load_state_dict(stopper.best_state)
    model.eval()
    return FitResult(
        model, stopper.history, stopper.best_epoch, stopper.best, time.perf_counter() - started
    )
