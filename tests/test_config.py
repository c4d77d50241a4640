"""Typed configs: overrides, errors, hashing, round trips; schedules as pure functions."""

from __future__ import annotations

import pytest

from bench.config import apply_overrides, config_hash, flat_keys, from_dict, to_dict
from bench.errors import BenchError
from bench.method import MethodConfig, OptimConfig, cosine, learning_rate, weight_decay


def test_nested_overrides_are_typed():
    cfg = apply_overrides(
        MethodConfig(),
        [
            "optim.lr=5e-4",
            "optim.steps=10",
            "data.leads=I,II,V1",
            "encoder.cropa=true",
            "encoder.heads=16",
            "optim.betas=0.9,0.95",
        ],
    )
    assert cfg.optim.lr == 5e-4 and cfg.optim.steps == 10 and isinstance(cfg.optim.steps, int)
    assert (
        cfg.data.leads == ("I", "II", "V1")
        and cfg.encoder.cropa is True
        and cfg.encoder.heads == 16
    )
    assert cfg.optim.betas == (0.9, 0.95)
    assert apply_overrides(cfg, ["encoder.heads=none"]).encoder.heads is None
    assert MethodConfig().optim.lr == 1e-3  # defaults untouched (frozen dataclasses)


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("optim=1", "is a group"),
        ("optim.steps=ten", "expected int"),
        ("encoder.cropa=maybe", "expected true or false"),
        ("optim.lr=nan", "NaN"),
        ("encoder.layout=grid", "must be one of mixed, lead"),
        ("optim.betas=0.9", "expected 2 comma-separated values"),
        ("justakey", "is not key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(item, fragment):
    with pytest.raises(BenchError) as err:
        apply_overrides(MethodConfig(), [item])
    assert fragment in str(err.value)


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(BenchError) as err:
        apply_overrides(MethodConfig(), ["seeds=3"])
    assert "optim.lr" in err.value.hint and "seed" in err.value.hint
    assert "optim.lr" in flat_keys(MethodConfig())


def test_hash_is_stable_and_sensitive():
    a, b = MethodConfig(), MethodConfig()
    assert config_hash(a) == config_hash(b)
    assert config_hash(apply_overrides(a, ["seed=1"])) != config_hash(a)


def test_round_trip_through_json_dict():
    cfg = apply_overrides(MethodConfig(), ["data.leads=I,II", "optim.betas=0.8,0.9"])
    assert from_dict(MethodConfig, to_dict(cfg)) == cfg
    with pytest.raises(BenchError, match="no field"):
        from_dict(MethodConfig, {**to_dict(cfg), "extra": 1})


def test_schedules_are_pure_functions_of_the_step():
    o = OptimConfig(
        steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-6, weight_decay=0.01, weight_decay_end=0.1
    )
    assert learning_rate(o, 0) == pytest.approx(1e-4)
    assert learning_rate(o, 9) == pytest.approx(1e-3)
    assert learning_rate(o, 10) == pytest.approx(1e-3)
    assert learning_rate(o, 100) == pytest.approx(1e-6)
    assert learning_rate(o, 55) == pytest.approx((1e-3 + 1e-6) / 2)
    assert weight_decay(o, 0) == pytest.approx(0.01) and weight_decay(o, 100) == pytest.approx(0.1)
    assert cosine(0.5, 0.998, 0.9995) == pytest.approx((0.998 + 0.9995) / 2)


def test_the_gpu_preset_is_the_cpu_one_at_fifteen_times_the_samples():
    """Same encoders, layouts and algorithm as `cpu`; 3000 x 256 steps; more protocol epochs."""
    from dataclasses import replace

    from bench.evaluate.config import resolve_eval_config
    from bench.method import METHODS
    from bench.train import resolve_config

    for method in METHODS.names():
        cpu, gpu = resolve_config(method, "cpu"), resolve_config(method, "gpu")
        assert (gpu.optim.steps, gpu.optim.batch_size, gpu.optim.warmup_steps) == (3000, 256, 300)
        assert replace(gpu, optim=cpu.optim) == cpu, method  # nothing else differs
    cpu, gpu = resolve_eval_config("cpu"), resolve_eval_config("gpu")
    assert gpu.finetune.epochs > cpu.finetune.epochs and gpu.attentive.epochs > cpu.attentive.epochs
    assert gpu.linear == cpu.linear
