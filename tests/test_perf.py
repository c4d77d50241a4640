"""`bench perf`: the matmul probe, the straightforward reference, the attention kernels, one
case measured through the real loader, and the command end to end on tiny encoders.

Speed itself is never asserted (it depends on the machine); what is asserted is that the
figures are measured, consistent with each other and written."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from bench.cli import cli
from bench.encoders import (
    TokenLayout,
    ViT1D,
    resolve_attention,
    use_attention,
)
from bench.errors import BenchError
from bench.perf.measure import Case, measure_case
from bench.perf.peak import matmul_peak
from bench.perf.reference import looped_prepare
from bench.perf.suite import (
    _derived,
    benchmark_cases,
    default_precisions,
    measure_all,
    paper_projection,
    peak_lines,
    prepare_data,
    profile_cells,
    row_cells,
    scaling_cases,
)
from bench.precision import native_bf16
from bench.train import build_method, resolve_config


def test_matmul_peak_measures_each_precision():
    peak = matmul_peak("cpu", ("fp32", "bf16"), sizes=(64, 128), seconds=0.05)
    assert set(peak) == {"fp32", "bf16"}
    for entry in peak.values():
        assert entry["flops"] > 0 and entry["size"] in (64, 128)
        assert entry["flops"] == max(entry["by_size"].values())


def test_attention_kernel_choice(cpu_kind):
    cpu_kind("native")
    assert resolve_attention("auto", "cpu", "bf16") == "matmul"
    cpu_kind("emulated")  # bf16 emulated on AVX2: the fused kernel is the faster one there
    assert resolve_attention("auto", "cpu", "bf16") == "fused"
    assert resolve_attention("auto", "cpu", "fp32") == "fused"
    assert resolve_attention("auto", torch.device("cuda"), "bf16") == "fused"
    assert resolve_attention("fused", "cpu", "bf16") == "fused"
    with pytest.raises(ValueError, match="unknown attention kernel"):
        resolve_attention("flash", "cpu", "bf16")


@pytest.mark.parametrize("cropa", [False, True])
def test_fused_and_matmul_attention_compute_the_same(cropa):
    """The two kernels are the same maths: outputs and gradients agree (CroPA mask included,
    with a context subset so the mask is per sample)."""
    torch.manual_seed(0)
    kind = "lead" if cropa else "mixed"
    enc = ViT1D(TokenLayout(kind, 12, 200, 20), 32, 2, 4, cropa=cropa, n_registers=1)
    assert use_attention(enc, "fused") == 2
    x = torch.randn(3, 12, 200)
    keep = torch.sort(torch.rand(3, enc.layout.n_tokens).argsort(1)[:, :50], dim=1).values
    outputs, grads = [], []
    for kernel in ("fused", "matmul"):
        use_attention(enc, kernel)
        enc.zero_grad()
        out = enc.forward_tokens(x, idx_keep=keep)
        out.square().mean().backward()
        outputs.append(out.detach())
        grads.append(enc.patch_embed.weight.grad.clone())
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    with pytest.raises(ValueError):
        use_attention(enc, "auto")


def _smoke(method: str):
    cfg = resolve_config(method, "smoke")
    torch.manual_seed(0)
    return build_method(cfg, method), cfg


@pytest.mark.parametrize("method", ["simclr", "byol", "mae", "jepa", "ecg_jepa"])
def test_looped_reference_makes_batches_of_the_same_form(method):
    model, cfg = _smoke(method)
    x = torch.randn(4, len(cfg.data.leads), cfg.data.crop_samples)
    prepare, note = looped_prepare(model)
    looped = prepare(x, torch.Generator().manual_seed(1))
    batched = model.prepare_batch(x, torch.Generator().manual_seed(1))
    assert looped.keys() == batched.keys() and note
    for key in batched:
        assert looped[key].shape == batched[key].shape, key
        assert looped[key].dtype == batched[key].dtype, key
    if method == "ecg_jepa":
        assert "nothing per sample" in note
    if method in ("jepa", "mae"):  # every row a valid split of the tokens, rows differ
        keep, mask = looped["idx_keep"], looped["idx_mask"]
        everything = torch.sort(torch.cat([keep, mask], 1), 1).values
        assert torch.equal(everything, torch.arange(everything.shape[1]).expand_as(everything))
        assert not all(torch.equal(keep[0], row) for row in keep[1:])
    loss, _ = model(looped, 0.0)  # the reference batch trains like the real one
    assert torch.isfinite(loss)


def test_jepa_reference_keeps_min_block_runs():
    model, cfg = _smoke("jepa")
    x = torch.randn(6, 12, cfg.data.crop_samples)
    batch = looped_prepare(model)[0](x, torch.Generator().manual_seed(2))
    n = batch["idx_keep"].shape[1] + batch["idx_mask"].shape[1]
    for row in batch["idx_mask"]:
        masked = torch.zeros(n, dtype=torch.bool)
        masked[row] = True
        runs, length = [], 0
        for value in masked.tolist() + [False]:
            if value:
                length += 1
            elif length:
                runs.append(length)
                length = 0
        assert min(runs) >= cfg.min_block


def _case(data_root, cache_root, **kw) -> Case:
    fields = dict(
        method="jepa", encoder="tiny", precision="bf16", impl="engine", batch_size=4,
        data_root=str(data_root), cache_root=str(cache_root), preset="smoke", steps=2,
        warmup=1, device="cpu", workers=1,
    )  # fmt: skip
    return Case(**{**fields, **kw})


def test_one_case_is_measured_through_the_real_loader(small_synthetic, tmp_path):
    root, cache_root, name = prepare_data(small_synthetic, [100], tmp_path)
    assert root == small_synthetic and (cache_root / name).parent.exists()
    engine = measure_case(_case(root, cache_root))
    reference = measure_case(_case(root, cache_root, impl="straightforward"))
    for result in (engine, reference):
        assert result["samples_per_s"] > 0
        assert math.isclose(result["samples_per_s"] * result["step_seconds"], 4)
        assert 0 <= result["data_wait_fraction"] < 1
        assert result["peak_memory_bytes"] > 50 * 2**20  # a Python process with torch
        assert result["tokens"] == 200 and result["encoder"] == "tiny"
    assert engine["attention"] == resolve_attention("auto", "cpu", "bf16")
    assert engine["precision_used"] == "bf16"
    assert reference["attention"] == "matmul" and reference["precision_used"] == "fp32"
    assert engine["prepare"] == "batched" and reference["prepare"] == "block masks per sample"


def test_a_batch_larger_than_the_records_runs_and_is_profiled(small_synthetic, tmp_path):
    """GPU batch sizes must just work on a small set (records recur), and --profile says what
    the step ran: operators per step and the costliest ones (CUDA-only figures absent on CPU)."""
    root, cache_root, _ = prepare_data(small_synthetic, [100], tmp_path)
    result = measure_case(
        _case(root, cache_root, precision="fp32", batch_size=256, steps=1, profile=True)
    )
    assert result["distinct_records"] < 256 and result["samples_per_s"] > 0
    profile = result["profile"]
    assert profile["profiled_steps"] == 2 and profile["ops_per_step"] > 50
    names = [op["name"] for op in profile["top_ops"]]
    assert names and any("mm" in n or "linear" in n for n in names)
    assert all(op["ms"] > 0 and op["calls"] > 0 for op in profile["top_ops"])
    assert "kernels_per_step" not in profile  # CUDA only
    row = {**result, "method": "jepa", "precision": "fp32", "batch_size": 256, "impl": "engine",
           "flops_per_sample": 1.0, "achieved_flops": 1.0, "peak_share": 0.1, "speedup": None}  # fmt: skip
    assert row_cells(row)[3] == "256*"
    cells = profile_cells(row)
    assert cells[4:6] == ["-", "-"] and names[0] in cells[-1]


def test_case_lists_cover_methods_precisions_and_scaling(tmp_path):
    base = _case(tmp_path, tmp_path)
    cases = benchmark_cases(["jepa", "mae"], ["xs", "s"], base)
    assert len(cases) == 2 * 2 * 3
    assert [c.impl for c in cases[:3]] == ["engine", "engine", "straightforward"]
    assert {c.precision for c in cases if c.impl == "straightforward"} == {"fp32"}
    sweep = scaling_cases("jepa", base)
    assert {c.config().data.crop_seconds for c in sweep} >= {2.5, 5.0, 10.0}
    assert {c.batch_size for c in sweep} >= {8, 16, 32, 64}
    assert {c.encoder for c in sweep} >= {"xs", "s", "b"}
    assert all(c.config().optim.grad_accum == 1 for c in sweep)


def test_perf_times_bf16_only_where_it_is_native_and_never_shares_an_emulated_peak(cpu_kind):
    cpu_kind("native")
    assert default_precisions("auto", "cpu") == ["fp32", "bf16"]
    cpu_kind("emulated")
    assert default_precisions("auto", "cpu") == ["fp32"]
    assert default_precisions("bf16,fp32", "cpu") == ["bf16", "fp32"]  # explicit: as asked
    with pytest.raises(BenchError, match="unknown precision 'fp16'"):
        default_precisions("fp16", "cpu")
    peak = {
        "fp32": {"flops": 1e11, "size": 1024, "native": True},
        "bf16": {"flops": 3e9, "size": 1024, "native": False},
    }
    row = {"samples_per_s": 2.0, "precision_used": "bf16", "case_peak_flops": 3e9}
    row = _derived(row, 1e9, peak)
    assert row["achieved_flops"] == 2e9 and row["peak_share"] is None
    row.update(method="jepa", encoder="xs", tokens=200, batch_size=4, impl="engine",
               attention="fused", precision="bf16", peak_memory_bytes=2**20,
               data_wait_fraction=0.0, speedup=None)  # fmt: skip
    assert "n/a (no native peak)" in row_cells(row)
    assert "emulated, no native bf16" in "".join(peak_lines(peak))


def test_paper_projection_multiplies_counted_flops():
    (entry,) = paper_projection(["simclr"])
    cfg = resolve_config("simclr", "paper")
    assert entry["batch_size"] == cfg.optim.batch_size and entry["steps"] == cfg.optim.steps
    assert math.isclose(
        entry["total_flops"], entry["flops_per_sample"] * cfg.optim.batch_size * cfg.optim.steps
    )
    assert entry["this_machine_hours"] is None  # nothing measured: nothing claimed
    hours = entry["gpu_hours_at_40pct"]
    assert hours["A100"] > hours["H100 SXM"] > 0
    measured = {"method": "simclr", "impl": "engine", "precision": "bf16", "encoder": "s",
                "overrides": [], "achieved_flops": 2e11}  # fmt: skip
    (entry,) = paper_projection(["simclr"], [measured])
    assert entry["this_machine_hours"] == pytest.approx(entry["total_flops"] / 2e11 / 3600)


def test_bench_perf_end_to_end(small_synthetic, tmp_path):
    out = tmp_path / "perf"
    result = CliRunner().invoke(
        cli,
        [
            "perf", "--method", "jepa", "--encoder", "tiny", "--preset", "smoke",
            "--batch-size", "4", "--steps", "1", "--warmup", "1", "--workers", "1",
            "--data-dir", str(small_synthetic), "--no-projection", "--out", str(out),
            "--precision", "fp32,bf16",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "matmul peak fp32" in result.output and "matmul peak bf16" in result.output
    native = native_bf16("cpu")[0]
    (json_path,) = out.glob("perf-*.json")
    report = json.loads(json_path.read_text())
    rows = report["rows"]
    assert [(r["impl"], r["precision"]) for r in rows] == [
        ("engine", "fp32"), ("engine", "bf16"), ("straightforward", "fp32"),
    ]  # fmt: skip
    for r in rows:
        assert r["flops_per_sample"] > 0
        assert math.isclose(r["achieved_flops"], r["flops_per_sample"] * r["samples_per_s"])
        if r["precision"] == "bf16" and not native:  # no share of an emulation's speed
            assert r["peak_share"] is None and r["case_peak_flops"] is None
            continue
        assert r["case_peak_flops"] > 0  # measured around the case, in its precision
        assert math.isclose(r["peak_share"], r["achieved_flops"] / r["case_peak_flops"])
    reference = rows[2]["samples_per_s"]
    assert math.isclose(rows[1]["speedup"], rows[1]["samples_per_s"] / reference)
    assert rows[2]["speedup"] is None
    md = json_path.with_suffix(".md").read_text()
    assert "| jepa | tiny | 200 | 4 | straightforward | fp32 |" in md
    assert not list(out.glob(".*tmp*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nope"], "nope"),
        (["--method", "random"], "reference row"),
        (["--precision", "fp16"], "unknown precision"),
        (["--scaling", "nope"], "nope"),
    ],
)
def test_bench_perf_rejects_bad_input(args, message):
    result = CliRunner().invoke(cli, ["perf", *args])
    assert result.exit_code != 0
    assert message in (result.output + str(result.exception))


def test_a_failing_case_reports_the_child_error(small_synthetic, tmp_path):
    from bench.perf.measure import run_case

    root, cache_root, _ = prepare_data(small_synthetic, [100], tmp_path)
    bad = _case(root, cache_root, overrides=("data.rate=500",))  # no 500 Hz cache prepared
    with pytest.raises(BenchError, match="failed with exit code"):
        run_case(bad)


def test_bench_perf_probe_times_both_probes_and_they_agree(small_synthetic, tmp_path):
    out = tmp_path / "probe"
    result = CliRunner().invoke(
        cli,
        ["perf", "--probe", "--preset", "smoke", "--encoder", "tiny",
         "--data-dir", str(small_synthetic), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (path,) = out.glob("probe-*.json")
    report = json.loads(path.read_text())
    assert [t["task"] for t in report["tasks"]] == [
        "superdiagnostic", "form", "rhythm", "all_statements",
    ]  # fmt: skip
    for task in report["tasks"]:
        assert task["same_selection"], task  # identical maths, identical selected epoch
        assert task["seconds"] > 0 and task["reference_seconds"] > 0
    assert report["total_seconds"] == pytest.approx(sum(t["seconds"] for t in report["tasks"]))
    assert "linear probing of 4 tasks from cached features" in result.output


def test_a_dataset_missing_a_rate_is_named_or_measured_on_what_it_has(tmp_path):
    """The real PTB-XL subset has 500 Hz files for 488 of its 1,987 records; the paper layouts
    need 500 Hz. Without --skip-bad that is a clear error naming the records; with it, perf
    measures on the records that have the rate and its dataset line says how many."""
    from conftest import make_ptbxl

    from bench.errors import DataError

    root = make_ptbxl(tmp_path / "ds", n=12, rates=(100, 500))
    for ecg_id in (3, 7, 11):
        for path in (root / "records500" / "00000").glob(f"{ecg_id:05d}_hr.*"):
            path.unlink()
    with pytest.raises(DataError, match="ecg_id 3: missing file") as error:
        prepare_data(root, [500], tmp_path / "results")
    assert "--skip-bad" in error.value.hint
    data_root, cache_root, name = prepare_data(root, [100, 500], tmp_path / "results", True)
    assert name.endswith("; caches: 9 records at 500 Hz")  # 100 Hz: all 12, not mentioned
    result = measure_case(
        _case(data_root, cache_root, overrides=("data.rate=500",), skip_bad=True, batch_size=2)
    )
    assert result["samples_per_s"] > 0 and result["tokens"] == 200


def test_repeated_cases_run_round_robin_and_report_the_median_run(monkeypatch, tmp_path):
    """--repeat: the machine's speed drifts, so cases run round-robin and each row is the run
    with the median share of peak, the others kept in ``runs`` and shown as a range. (The
    timings are scripted here; that a case really runs is the end-to-end test's job.)"""
    from bench.perf import suite

    order, speeds = [], iter([10.0, 50.0, 30.0, 20.0, 40.0, 60.0, 25.0])

    def scripted_run(case, timeout=None):
        order.append(case.impl)
        return {
            "encoder": "tiny", "tokens": 200, "attention": "matmul", "samples_per_s": next(speeds),
            "precision_used": case.precision, "case_peak_flops": 1e11,
            "peak_memory_bytes": 2**30, "data_wait_fraction": 0.01, "step_seconds": 0.1,
        }  # fmt: skip

    monkeypatch.setattr(suite, "run_case", scripted_run)
    engine = _case(tmp_path, tmp_path)
    reference = _case(tmp_path, tmp_path, impl="straightforward", precision="fp32")
    rows = measure_all([engine, reference], {}, repeats=3)
    assert order == ["engine", "straightforward"] * 3  # round-robin, not a case's runs in a row
    assert [r["samples_per_s"] for r in rows] == [
        30.0,
        50.0,
    ]  # medians of (10, 30, 40), (50, 20, 60)
    assert [run["samples_per_s"] for run in rows[0]["runs"]] == [10.0, 30.0, 40.0]
    assert math.isclose(rows[0]["speedup"], 30.0 / 50.0)
    share = rows[0]["flops_per_sample"] * 30.0 / 1e11
    assert math.isclose(rows[0]["peak_share"], share)
    low, high = (100 * rows[0]["flops_per_sample"] * v / 1e11 for v in (10.0, 40.0))
    assert row_cells(rows[0])[9] == f"{100 * share:.0f} % ({low:.0f}-{high:.0f})"
    assert "runs" not in measure_all([engine], {}, repeats=1)[0]


@pytest.mark.parametrize("kind", ["native", "emulated"])
def test_equivalence_compares_the_engine_curve_with_the_eager_one(
    small_synthetic, tmp_path, monkeypatch, cpu_kind, kind
):
    """Fused attention (the engine's kernel on a CUDA device) against the matmul one: the same
    curve within tolerance, written as json and md; an engine curve that moves more than the
    tolerance is reported and exits non-zero, its report still written. Run as a CPU with
    native bf16 (the engine trains in bf16, an fp32 yardstick is added) and as one without
    (fp32 only), whatever CPU runs the suite."""
    import bench.perf.equivalence as equivalence

    cpu_kind(kind)

    args = [
        "perf", "--equivalence", "3", "--method", "jepa,mae", "--encoder", "tiny",
        "--preset", "smoke", "--batch-size", "4", "--attention", "fused",
        "--data-dir", str(small_synthetic),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "a").glob("equivalence-*.json")
    results = json.loads(path.read_text())["results"]
    assert [r["method"] for r in results] == ["jepa", "mae"]
    for r in results:
        eager, engine = r["curves"]["eager"], r["curves"]["engine"]
        assert len(eager) == len(engine) == 3 and r["passed"]
        # Another kernel: close, but whether its rounding differs at all is the CPU's business
        # (on an Ice Lake Xeon the fp32 fused and matmul curves are identical, elsewhere not).
        assert 0 <= r["distance"] <= r["tolerance"]
        assert r["precision"] == ("bf16" if kind == "native" else "fp32")
        assert (r["bf16_distance"] is None) == (r["precision"] == "fp32")
    assert "| jepa |" in path.with_suffix(".md").read_text()

    original = equivalence._curve

    def drifting(*a, engine, **k):
        losses = original(*a, engine=engine, **k)
        return [v * 1.5 for v in losses] if engine else losses

    monkeypatch.setattr(equivalence, "_curve", drifting)
    result = CliRunner().invoke(cli, [*args, "--method", "jepa", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "moved more than bf16 rounding does for jepa" in str(
        result.output + str(result.exception)
    )
    assert list((tmp_path / "b").glob("equivalence-*.md"))
