"""The contract every registered method must meet (parametrised over the registry itself, so a
new method, built-in or from a plug-in package, gets these tests for free)."""

from __future__ import annotations

import pytest
import torch

from bench.config import from_dict, to_dict
from bench.method import METHODS, SSLMethod
from bench.train import build_method, resolve_config

NAMES = METHODS.names()


def _one_step(name: str, seed: int = 0):
    cfg = resolve_config(name, "smoke")
    torch.manual_seed(seed)
    model = build_method(cfg, name)
    x = torch.randn(cfg.optim.batch_size, len(cfg.data.leads), cfg.data.crop_samples)
    batch = model.prepare_batch(x, torch.Generator().manual_seed(seed))
    loss, logs = model(batch, 0.0)
    return cfg, model, x, loss, logs


def test_every_paper_method_is_registered():
    assert {"jepa", "ecg_jepa", "mae", "simclr", "byol"} <= set(NAMES) or pytest.skip(
        "methods still landing"
    )


@pytest.mark.parametrize("name", NAMES)
def test_builds_with_paper_defaults(name):
    cls = METHODS.get(name)
    assert issubclass(cls, SSLMethod) and cls.name == name
    cfg = cls.Config()
    assert (
        cfg.encoder.size in ("xs", "s", "b") and cfg.optim.steps > 1000
    )  # the paper's scale, not a preset
    assert cls.__doc__, "a method's docstring names its paper"
    assert cls.search_space.__func__ is not SSLMethod.search_space.__func__ or name in ("random",)


@pytest.mark.parametrize("name", NAMES)
def test_one_step_gives_a_finite_loss_and_gradients_everywhere(name):
    _, model, _, loss, logs = _one_step(name)
    assert loss.ndim == 0 and torch.isfinite(loss)
    for value in logs.values():  # numbers, or detached 0-d tensors read when logged
        if isinstance(value, torch.Tensor):
            assert value.ndim == 0 and not value.requires_grad and torch.isfinite(value)
        else:
            assert isinstance(value, float | int)
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    missing = [
        n
        for n, p in trainable.items()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert missing == []
    grouped = {id(p) for g in model.parameter_groups() for p in g["params"]}
    assert grouped == {
        id(p) for p in trainable.values()
    }  # every trainable parameter is optimised once


@pytest.mark.parametrize("name", NAMES)
def test_ema_targets_move_and_take_no_gradient(name):
    cfg, model, _, loss, _ = _one_step(name)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    if not frozen:
        pytest.skip(f"{name} has no EMA target")
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    opt.step()
    model.after_optimizer_step(0.0)
    moved = [
        n for n, p in model.named_parameters() if n in frozen and not torch.equal(p, frozen[n])
    ]
    assert moved, "after_optimizer_step did not move the EMA target"


@pytest.mark.parametrize("name", NAMES)
def test_benchmarked_encoder_returns_pooled_features(name):
    cfg, model, x, _, _ = _one_step(name)
    encoder = model.benchmark_encoder()
    with torch.no_grad():
        feats = encoder(x[:3])
    assert feats.shape == (3, encoder.num_features) and torch.isfinite(feats).all()


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_step_is_finite(name):
    cfg = resolve_config(name, "smoke")
    model = build_method(cfg, name)
    x = torch.randn(cfg.optim.batch_size, len(cfg.data.leads), cfg.data.crop_samples)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model(model.prepare_batch(x, torch.Generator().manual_seed(0)), 0.5)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", NAMES)
def test_search_space_gives_valid_overrides(name):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = METHODS.get(name).search_space(trial)
    assert overrides
    resolve_config(
        name,
        "smoke",
        [
            f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in overrides.items()
        ],
    )


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips_and_a_checkpoint_rebuilds_the_encoder(name):
    cfg, model, x, _, _ = _one_step(name)
    assert from_dict(type(cfg), to_dict(cfg)) == cfg
    rebuilt = build_method({"method": name, "config": to_dict(cfg), "model": model.state_dict()})
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt.eval().benchmark_encoder()(x[:2]), model.eval().benchmark_encoder()(x[:2])
        )
