"""Leaderboard figures: which figures a record set allows, real non-blank PNGs, loss curves and
counted pre-training FLOPs from a tiny real run, missing run directories skipped."""

from __future__ import annotations

import json
import shutil

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from report_factory import REAL, fake_record

from bench import flops
from bench.data.cache import prepare_cache
from bench.data.ptbxl import PTBXL
from bench.report.figures import make_figures
from bench.report.tables import leaderboard_frame
from bench.train import EngineConfig, build_method, pretrain, resolve_config

TASKS = ("superdiagnostic", "form", "rhythm")


def _records(fractions=(1.0,), dataset=None) -> list[dict]:
    """Two SSL methods and a reference, linear and finetune, three tasks, two seeds."""
    kw = {"dataset": dataset} if dataset else {}
    return [
        fake_record(
            method,
            task,
            protocol,
            base + 0.03 * i + 0.1 * np.log10(f) + 0.005 * seed,
            seed=seed,
            label_fraction=f,
            **kw,
        )
        for method, base in (("jepa", 0.8), ("simclr", 0.72), ("supervised", 0.85))
        for protocol in ("linear", "finetune")
        for i, task in enumerate(TASKS)
        for f in fractions
        for seed in (0, 1)
    ]


def _figures(records, tmp_path, pretrain_root=None):
    return make_figures(leaderboard_frame(records), records, tmp_path / "out", pretrain_root)


def _assert_pngs(figures, tmp_path):
    for figure in figures:
        assert figure.path == tmp_path / "out" / "figures" / f"{figure.name}.png"
        image = matplotlib.image.imread(figure.path)
        assert 850 <= image.shape[1] <= 950, figure.name  # ~900 px wide
        assert image[..., :3].std() > 0.05, f"{figure.name} looks blank"
        assert figure.title and figure.caption
    assert sorted(p.name for p in (tmp_path / "out" / "figures").iterdir()) == sorted(
        f"{f.name}.png" for f in figures
    )  # no temporary files left behind
    assert plt.get_fignums() == []  # nothing left open in pyplot's registry


def test_heatmaps_and_bars_per_protocol_and_task(tmp_path):
    figures = _figures(_records(), tmp_path, pretrain_root=tmp_path / "no-such-dir")
    assert [f.name for f in figures] == [
        "heatmap-linear", "heatmap-finetune",
        "bars-superdiagnostic", "bars-form", "bars-rhythm",
    ]  # fmt: skip
    _assert_pngs(figures, tmp_path)
    assert all("synthetic data" in f.title for f in figures)
    assert all(f.caption.startswith("Synthetic data") for f in figures)


def test_label_efficiency_only_with_several_fractions_and_no_synthetic_note_on_real_data(
    tmp_path,
):
    figures = _figures(_records(fractions=(0.1, 1.0), dataset=REAL), tmp_path)
    assert [f.name for f in figures][-1] == "label-efficiency"
    assert len(figures) == 2 + 3 + 1
    _assert_pngs(figures, tmp_path)
    assert not any("ynthetic" in f.title + f.caption for f in figures)


def test_without_fraction_one_the_largest_fraction_is_shown(tmp_path):
    figures = _figures(_records(fractions=(0.1,)), tmp_path)
    assert [f.name for f in figures][:2] == ["heatmap-linear", "heatmap-finetune"]
    assert "label fraction 0.1" in figures[0].title


def test_missing_pretrain_directories_skip_the_loss_and_compute_figures(tmp_path):
    records = [r for r in _records() if r["task"] == "superdiagnostic"]  # fewer figures to draw
    root = tmp_path / "pretrain"
    broken = root / records[0]["run_id"]
    broken.mkdir(parents=True)
    (broken / "history.jsonl").write_text("not json\n")  # unreadable: skipped like a missing one
    for pretrain_root in (None, tmp_path / "absent", root):
        names = [f.name for f in _figures(records, tmp_path, pretrain_root)]
        assert "pretrain-loss" not in names and "auroc-vs-compute" not in names
    assert not (broken / "flops.json").exists()


@pytest.fixture(scope="module")
def smoke_run(small_synthetic, tmp_path_factory):
    """A finished 3-step JEPA smoke pre-training run on the small synthetic dataset."""
    dataset = PTBXL(small_synthetic)
    cache = prepare_cache(
        dataset, 100, cache_root=tmp_path_factory.mktemp("cache"), workers=1, progress=False
    )
    engine = EngineConfig(device="cpu", workers=0, mlflow=False, progress=False)
    cfg = resolve_config("jepa", "smoke")
    return pretrain("jepa", cfg, dataset, cache, engine, runs_root=tmp_path_factory.mktemp("runs"))


def test_loss_and_compute_figures_from_a_real_run(smoke_run, tmp_path, monkeypatch):
    root = tmp_path / "pretrain"
    shutil.copytree(smoke_run.run_dir, root / smoke_run.run_dir.name)
    run = dict(run_id=smoke_run.run_dir.name, steps=3, batch_size=8,
               train_seconds=smoke_run.train_seconds)  # fmt: skip
    records = [fake_record("jepa", task, "linear", 0.8, encoder="tiny", **run) for task in TASKS]
    records.append(fake_record("mae", "form", "linear", 0.7))  # no run directory
    bad = fake_record("byol", "form", "linear", 0.7)  # a run whose method cannot be rebuilt
    (root / bad["run_id"]).mkdir()
    (root / bad["run_id"] / "config.json").write_text('{"method": "nosuch", "config": {}}')
    records.append(bad)

    figures = _figures(records, tmp_path, root)
    names = [f.name for f in figures]
    assert names[-2:] == ["pretrain-loss", "auroc-vs-compute"]
    _assert_pngs(figures, tmp_path)
    compute = figures[-1].caption
    assert "no pre-training run directory: mae (xs)" in compute
    assert "FLOPs could not be counted: byol (xs)" in compute
    assert "No loss history for: byol (xs), mae (xs)" in figures[-2].caption

    cached = json.loads((root / run["run_id"] / "flops.json").read_text())
    per_sample = cached["flops_per_sample"]
    # At least the target encoder's forward pass on every token (linear layers + attention
    # products); the whole step (context encoder forward + backward, predictor) is a few times it.
    encoder = build_method(resolve_config("jepa", "smoke"), "jepa").benchmark_encoder()
    n, d, depth = encoder.layout.n_tokens, encoder.num_features, len(encoder.blocks)
    weights = sum(m.weight.numel() for m in encoder.modules() if isinstance(m, torch.nn.Linear))
    target_forward = 2 * weights * n + 4 * n * n * d * depth
    assert target_forward < per_sample < 10 * target_forward

    def no_recount(*args, **kwargs):
        raise AssertionError("flops.json should have been read")

    monkeypatch.setattr(flops, "pretrain_step_flops", no_recount)
    assert flops.run_flops_per_sample(root / run["run_id"]) == per_sample
    assert flops.pretrain_total_flops(per_sample, 8, 3) == per_sample * 24


def test_a_concurrent_report_never_removes_another_writers_figure_in_progress(tmp_path):
    """Two runs sharing a results directory both write the report: the stale-figure sweep of
    one must not delete the temporary PNG the other is about to rename into place (it did,
    when temporaries ended in .png), but it still removes figures the records no longer have."""
    from report_factory import SYNTHETIC

    from bench.report.build import write_report

    records = _records(dataset=SYNTHETIC)
    directory = write_report(records, root=tmp_path / "out")[0] / "figures"
    # Another process, mid-savefig (this version's temporary name, and the older one's).
    in_flight = [directory / ".bars-form.png.tmp-12345", directory / ".bars-rhythm.tmp-12345.png"]
    for path in in_flight:
        path.write_bytes(b"partial")
    gone = directory / "label-efficiency-linear.png"  # drawn earlier, unsupported now
    gone.write_bytes(b"old")
    write_report(records, root=tmp_path / "out")
    assert [path.read_bytes() for path in in_flight] == [b"partial", b"partial"]
    assert not gone.exists()
    assert not [p for p in directory.iterdir() if ".tmp-" in p.name and p not in in_flight]
