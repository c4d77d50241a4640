"""The pre-training engine: data order, crops, statistics, checkpoints, resume, DDP, MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_ptbxl

from bench.data.cache import prepare_cache
from bench.data.ptbxl import PTBXL
from bench.errors import BenchError
from bench.train import (
    CropDataset,
    EngineConfig,
    EpochBatchSampler,
    lead_statistics,
    load_checkpoint,
    pretrain,
    resolve_config,
    save_checkpoint,
)

ENGINE = EngineConfig(device="cpu", workers=0, mlflow=False, progress=False, checkpoint_every=1)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = make_ptbxl(tmp_path_factory.mktemp("data") / "ptbxl", n=40, rates=(100,))
    ds = PTBXL(root)
    return ds, prepare_cache(
        ds, 100, cache_root=tmp_path_factory.mktemp("cache"), workers=1, progress=False
    )


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_epoch_sampler_is_deterministic_resumable_and_sharded():
    full = _take(iter(EpochBatchSampler(30, 4, seed=1)), 20)  # 7 batches per epoch, ~3 epochs
    assert full == _take(iter(EpochBatchSampler(30, 4, seed=1)), 20)
    assert _take(iter(EpochBatchSampler(30, 4, seed=1, start_batch=9)), 11) == full[9:]
    assert full != _take(iter(EpochBatchSampler(30, 4, seed=2)), 20)
    epoch0 = [i for b in full[:7] for i in b]
    assert len(set(epoch0)) == 28 and all(0 <= i < 30 for i in epoch0)  # drop_last, no repeats
    assert all(30 <= i < 60 for b in full[7:14] for i in b)  # epoch 1 indices encode the epoch
    r0 = {i for b in _take(iter(EpochBatchSampler(30, 4, 1, rank=0, world=2)), 3) for i in b}
    r1 = {i for b in _take(iter(EpochBatchSampler(30, 4, 1, rank=1, world=2)), 3) for i in b}
    assert not r0 & r1 and len(r0) == len(r1) == 12
    with pytest.raises(BenchError, match="exceeds the 30 training records"):
        EpochBatchSampler(30, 16, seed=0, world=2)


def test_crops_are_a_function_of_seed_epoch_and_record(small):
    ds, cache = small
    rows = np.arange(10)
    mean, std = np.zeros(12, np.float32), np.ones(12, np.float32)
    data = CropDataset(cache.path, rows, list(range(12)), 250, mean, std, clip=0, seed=3)
    torch.testing.assert_close(
        data[4], CropDataset(cache.path, rows, list(range(12)), 250, mean, std, 0, 3)[4]
    )
    assert not torch.equal(data[4], data[14])  # same record, next epoch: another crop
    x = data[4]
    signal_row = np.asarray(cache.signals[4])
    offsets = [o for o in range(751) if np.allclose(signal_row[:, o : o + 250], x.numpy())]
    assert len(offsets) == 1  # a contiguous window of the record


def test_normalisation_and_clip(small):
    ds, cache = small
    rows = np.arange(len(cache.ecg_ids))
    mean, std = lead_statistics(cache.signals, rows, [0, 6], chunk=7)
    ref = np.asarray(cache.signals)[:, [0, 6]].astype(np.float64)
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2)), rtol=1e-4)
    data = CropDataset(cache.path, rows, [0, 6], 1000, mean, std * 0.01, clip=5.0, seed=0)
    x = data[0]
    assert x.shape == (2, 1000) and x.abs().max() <= 5.0 and (x.abs() == 5.0).any()


def test_resume_equals_an_uninterrupted_run(small, tmp_path):
    ds, cache = small
    cfg = resolve_config("jepa", "smoke", ["optim.steps=5"])
    straight = pretrain("jepa", cfg, ds, cache, ENGINE, runs_root=tmp_path / "a")
    first = pretrain("jepa", cfg, ds, cache, ENGINE, runs_root=tmp_path / "b", stop_after=2)
    assert first.steps == 2 and not first.final_checkpoint.exists()
    resumed = pretrain("jepa", cfg, ds, cache, ENGINE, runs_root=tmp_path / "b", resume=True)
    assert resumed.resumed_from == 2 and resumed.losses == straight.losses
    a, b = load_checkpoint(straight.final_checkpoint), load_checkpoint(resumed.final_checkpoint)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_checkpoints_are_safe_to_load(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"format": 1, "model": {"w": torch.ones(2)}})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(BenchError, match="unreadable or corrupt"):
        load_checkpoint(path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": 1, "x": Evil()}, path)
    with pytest.raises(
        BenchError, match="unreadable or corrupt"
    ):  # weights_only refuses pickled code
        load_checkpoint(path)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    root = make_ptbxl(tmp_path / "ptbxl", n=40, rates=(100,))
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path / "results")}
    args = [sys.executable, "-m", "bench", "pretrain", "--method", "jepa", "--preset", "smoke", "--data-dir", str(root),
            "--set", "optim.steps=40", "--checkpoint-every", "1", "--workers", "0", "--no-mlflow", "--no-progress", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    ckpts: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        ckpts = list((tmp_path / "results" / "pretrain").glob("*/checkpoint.pt"))
        if ckpts and load_checkpoint(ckpts[0])["step"] >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpts[0])["step"]
    assert 3 <= killed_at < 40 and not (ckpts[0].parent / "final.pt").exists()

    done = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed at step" in done.stdout
    resumed = load_checkpoint(ckpts[0].parent / "final.pt")

    env2 = {**env, "BENCH_RESULTS_DIR": str(tmp_path / "straight")}
    subprocess.run(args, env=env2, check=True, capture_output=True, timeout=300)
    straight = load_checkpoint(next((tmp_path / "straight" / "pretrain").glob("*/final.pt")))
    assert resumed["losses"] == straight["losses"]
    for key in straight["model"]:
        assert torch.equal(resumed["model"][key], straight["model"][key]), key


@pytest.mark.parametrize(
    "method", ["jepa", "simclr"]
)  # simclr: NT-Xent gathers negatives across ranks
def test_two_process_gloo_run_keeps_ranks_identical(tmp_path, method):
    root = make_ptbxl(tmp_path / "ptbxl", n=40, rates=(100,))
    out = tmp_path / "ok.txt"
    script = Path(__file__).parent / "scripts" / "ddp_pretrain.py"
    # gloo over loopback: some sandboxes have no routable interface for the default lookup.
    env = {
        **os.environ,
        "BENCH_RESULTS_DIR": str(tmp_path / "results"),
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
    }
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(root), str(out), method],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_text() == "ok 3"


def test_pretrain_logs_to_a_real_mlflow_store(small, tmp_path):
    import mlflow

    ds, cache = small
    cfg = resolve_config("jepa", "smoke")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    engine = EngineConfig(
        device="cpu", workers=0, progress=False, mlflow=True, tracking_uri=uri, log_every=1
    )
    result = pretrain("jepa", cfg, ds, cache, engine, runs_root=tmp_path / "runs")
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ecg-ssl-bench").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["method"] == "jepa"
    assert run.data.params["config.optim.steps"] == "3"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx(result.losses)
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]
    assert artifacts == ["checkpoint/final.pt"]


def test_extra_sources_follow_the_main_rows(small):
    ds, cache = small
    mean, std = np.zeros(12, np.float32), np.ones(12, np.float32)
    data = CropDataset(
        cache.path,
        np.arange(5),
        list(range(12)),
        1000,
        mean,
        std,
        0,
        0,
        extra=[(cache.path, np.array([30, 31]))],
    )
    assert len(data) == 7
    np.testing.assert_array_equal(
        data[5].numpy(), np.asarray(cache.signals[30])
    )  # full-length crop
    np.testing.assert_array_equal(data[6 + 7].numpy(), np.asarray(cache.signals[31]))  # next epoch


def test_gradient_accumulation_and_fp32(small, tmp_path):
    ds, cache = small
    cfg = resolve_config("byol", "smoke", ["optim.grad_accum=2", "optim.steps=2"])
    engine = EngineConfig(device="cpu", workers=0, mlflow=False, progress=False, precision="fp32")
    result = pretrain("byol", cfg, ds, cache, engine, runs_root=tmp_path)
    assert result.steps == 2 and all(np.isfinite(result.losses))
    with pytest.raises(BenchError, match="not divisible by grad_accum 3"):
        pretrain(
            "byol",
            resolve_config("byol", "smoke", ["optim.grad_accum=3"]),
            ds,
            cache,
            engine,
            runs_root=tmp_path,
        )


def test_a_finished_run_is_reused_not_overwritten(small, tmp_path):
    ds, cache = small
    cfg = resolve_config("jepa", "smoke", ["optim.steps=2"])
    first = pretrain("jepa", cfg, ds, cache, ENGINE, runs_root=tmp_path)
    stamp = first.final_checkpoint.stat().st_mtime_ns
    again = pretrain("jepa", cfg, ds, cache, ENGINE, runs_root=tmp_path)
    assert (
        again.reused
        and again.losses == first.losses
        and first.final_checkpoint.stat().st_mtime_ns == stamp
    )
    forced = pretrain("jepa", cfg, ds, cache, ENGINE, runs_root=tmp_path, force=True)
    assert not forced.reused and forced.losses == first.losses  # deterministic


def test_another_encoder_size_takes_its_own_head_count():
    """ECG-JEPA publishes 16 heads at ViT-B width; at xs (192 wide) that would be 12-wide heads.
    --encoder resets an explicit head count to the size's, unless --set asks for one."""
    assert resolve_config("ecg_jepa", "paper").encoder.heads == 16
    assert resolve_config("ecg_jepa", "paper", encoder="b").encoder.heads == 16  # same size
    assert resolve_config("ecg_jepa", "paper", encoder="xs").encoder.heads is None
    assert resolve_config("ecg_jepa", "paper", ["encoder.heads=8"], "xs").encoder.heads == 8


def test_the_fused_optimiser_takes_the_same_adamw_step():
    """make_optimizer uses torch's fused AdamW on CPU; it must take the step the reference
    (foreach) AdamW takes, with the per-group decay the schedules set."""
    from bench.train import build_method, make_optimizer

    cfg = resolve_config("jepa", "smoke")
    torch.manual_seed(0)
    model = build_method(cfg, "jepa")
    twin = build_method(cfg, "jepa")
    twin.load_state_dict(model.state_dict())
    fused = make_optimizer(model, cfg.optim)
    assert fused.defaults["fused"] is True
    reference = torch.optim.AdamW(
        [dict(g, lr=1e-3, weight_decay=0.0) for g in twin.parameter_groups()],
        lr=1e-3, betas=cfg.optim.betas, eps=cfg.optim.eps, foreach=True,
    )  # fmt: skip
    x = torch.randn(4, len(cfg.data.leads), cfg.data.crop_samples)
    for opt, m in ((fused, model), (reference, twin)):
        for group in opt.param_groups:
            group["lr"], group["weight_decay"] = 1e-3, 0.05 * group["wd_scale"]
        for step in range(3):
            loss, _ = m(m.prepare_batch(x, torch.Generator().manual_seed(step)), 0.1)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    moved = 0
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        moved += int(a.requires_grad)
    assert moved > 10
    # A checkpoint of either loads into the other (resuming a run saved before the change).
    reference.load_state_dict(fused.state_dict())
    fused.load_state_dict(reference.state_dict())


def _nan_at_call(monkeypatch, method: str, call: int) -> None:
    """Make ``method``'s training step return a NaN loss on its ``call``-th call (1-based)."""
    from bench.method import METHODS

    cls = METHODS.get(method)
    original, calls = cls.training_step, []

    def training_step(self, batch, progress):
        loss, logs = original(self, batch, progress)
        calls.append(1)
        return (loss * float("nan") if len(calls) == call else loss), logs

    monkeypatch.setattr(cls, "training_step", training_step)


def test_deferred_loss_reads_change_nothing_and_still_stop_on_nan(small, tmp_path, monkeypatch):
    """The CUDA loop's way (losses read every log_every steps) run on the CPU: the same losses
    and weights as reading every step; a NaN is still caught, by step, before any checkpoint."""
    import bench.train as train

    ds, cache = small
    cfg = resolve_config("simclr", "smoke", ["optim.steps=5"])  # its logs are device tensors
    every_step = pretrain("simclr", cfg, ds, cache, ENGINE, runs_root=tmp_path / "a")
    monkeypatch.setattr(train, "defers_host_reads", lambda device: True)
    engine = EngineConfig(
        device="cpu", workers=0, progress=False, mlflow=True,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", log_every=2, checkpoint_every=4,
    )  # fmt: skip
    deferred = pretrain("simclr", cfg, ds, cache, engine, runs_root=tmp_path / "b")
    assert deferred.losses == every_step.losses and len(deferred.losses) == 5
    a = load_checkpoint(every_step.final_checkpoint)["model"]
    b = load_checkpoint(deferred.final_checkpoint)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)

    _nan_at_call(monkeypatch, "simclr", 3)
    with pytest.raises(BenchError, match="non-finite loss at step 3"):
        pretrain("simclr", cfg, ds, cache, engine, runs_root=tmp_path / "c")
    # read at step 4 (log and checkpoint step): the NaN weights of steps 3-4 were never saved
    assert not list((tmp_path / "c").glob("*/checkpoint.pt"))


def test_a_nan_loss_stops_the_cpu_loop_before_its_optimiser_step(small, tmp_path, monkeypatch):
    ds, cache = small
    cfg = resolve_config("jepa", "smoke", ["optim.steps=5"])
    _nan_at_call(monkeypatch, "jepa", 3)
    with pytest.raises(BenchError, match="non-finite loss at step 3"):
        pretrain("jepa", cfg, ds, cache, ENGINE, runs_root=tmp_path)
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")  # written every step: the last is step 2
    state = load_checkpoint(checkpoint)
    assert state["step"] == 2 and all(np.isfinite(state["losses"]))
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("method", ["jepa", "ecg_jepa", "mae", "simclr", "byol"])
def test_an_engine_step_on_a_gpu_never_waits_for_it(method):
    """Masks or views, forward, backward, clipping, fused AdamW and EMA of a CUDA step with
    deferred loss reads: no operation makes the host wait for the device (torch raises on one
    under ``set_sync_debug_mode("error")``), in bf16 and fp32."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from bench.train import build_method, make_optimizer, train_step

    device = torch.device("cuda")
    cfg = resolve_config(method, "smoke")
    model = build_method(cfg, method).to(device).train()
    opt = make_optimizer(model, cfg.optim)
    shape = (8, len(cfg.data.leads), cfg.data.crop_samples)
    batches = iter(lambda: torch.randn(shape).pin_memory(), None)
    for precision in ("bf16", "fp32"):
        train_step(model, model, opt, batches, 0, cfg, precision, device, sync=False)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for step in (1, 2):
                loss, logs, _ = train_step(
                    model, model, opt, batches, step, cfg, precision, device, sync=False
                )
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert isinstance(loss, torch.Tensor) and torch.isfinite(loss)
        assert all(np.isfinite(float(v)) for v in logs.values())
