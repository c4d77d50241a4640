"""Run records: layout, atomic writes, torn states, concurrency, provenance."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import bench.results as results_module
from bench.errors import BenchError
from bench.results import (
    RECORD_FORMAT,
    RecordKey,
    RecordStore,
    environment,
    now_iso,
    safe_name,
)

REPO = Path(__file__).resolve().parents[1]
HASH = "0123456789abcdef"


def make_key(seed: int = 0, **changes) -> RecordKey:
    fields = {
        "run_id": "jepa-xs-1a2b3c4d5e",
        "task": "form",
        "protocol": "linear",
        "eval_hash": HASH,
        "label_fraction": 1.0,
        "seed": seed,
    }
    fields.update(changes)
    return RecordKey(**fields)


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "test_ecg_ids": np.arange(10, dtype=np.int64),
        "test_y": rng.integers(0, 2, size=(10, 3)).astype(np.int8),
        "test_scores": rng.random((10, 3)).astype(np.float32),
    }


def write(store: RecordStore, key: RecordKey, **record) -> Path:
    body = {"method": "jepa", "task": key.task, "test_macro_auroc": 0.75, **record}
    return store.write(key, body, make_arrays(key.seed))


def dead_pid() -> int:
    """The pid of a process that has exited (reaped, so nothing runs under it)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------- names and keys
def test_relpath_and_file_layout(tmp_path):
    key = make_key(seed=3, label_fraction=0.1)
    assert key.relpath == Path("jepa-xs-1a2b3c4d5e/form/linear-01234567/frac0.1-seed3")
    store = RecordStore(tmp_path / "store")
    # The fraction's "." must not be mistaken for a suffix.
    assert store.json_path(key) == tmp_path / "store" / key.relpath.parent / "frac0.1-seed3.json"
    assert store.npz_path(key) == tmp_path / "store" / key.relpath.parent / "frac0.1-seed3.npz"
    assert make_key(label_fraction=1).relpath.name == "frac1-seed0"
    assert make_key(label_fraction=0.01).relpath.name == "frac0.01-seed0"


def test_default_root_is_under_the_results_directory(tmp_path):
    # conftest points BENCH_RESULTS_DIR at tmp_path / "results".
    assert RecordStore().root == (tmp_path / "results" / "records").resolve()


@pytest.mark.parametrize("name", ["jepa-xs-1a2b3c4d5e", "ecg_jepa+v2.1", "A", "x" * 120])
def test_safe_name_accepts(name):
    assert safe_name(name, "method") == name


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", "", ".hidden", "with space", "a..b", "..", "a\\b", "x" * 121, "-lead", None],
)
def test_safe_name_rejects(name):
    with pytest.raises(BenchError) as info:
        safe_name(name, "task")
    assert "task" in info.value.message and repr(name) in info.value.message


@pytest.mark.parametrize(
    "changes",
    [
        {"label_fraction": 0.0},
        {"label_fraction": -0.1},
        {"label_fraction": 1.5},
        {"label_fraction": float("nan")},
        {"label_fraction": True},
        {"label_fraction": "0.5"},
        {"seed": -1},
        {"seed": 1.5},
        {"seed": True},
        {"eval_hash": "not-hex-at-all"},
        {"eval_hash": "0123456"},  # too short for the 8-character directory suffix
        {"eval_hash": "../../etc/passwd"},
        {"run_id": "../escape"},
        {"task": "a/b"},
        {"protocol": ""},
    ],
)
def test_record_key_rejects(changes):
    with pytest.raises(BenchError):
        make_key(**changes)


def test_record_key_normalises_numpy_scalars():
    key = make_key(seed=np.int64(2), label_fraction=np.float32(0.5))
    assert type(key.seed) is int and type(key.label_fraction) is float
    assert key == make_key(seed=2, label_fraction=0.5)


# ---------------------------------------------------------------------- round trip
def test_write_then_read_round_trip():
    store = RecordStore()
    key = make_key(seed=1, label_fraction=0.25)
    assert not store.exists(key)
    path = write(store, key, metrics={"auroc": np.float64(0.8), "n": np.int64(7)})
    assert path == store.json_path(key)
    assert store.exists(key)

    record = store.read(key)
    assert record["format"] == RECORD_FORMAT and record["complete"] is True
    assert record["key"] == {
        "run_id": "jepa-xs-1a2b3c4d5e",
        "task": "form",
        "protocol": "linear",
        "eval_hash": HASH,
        "label_fraction": 0.25,
        "seed": 1,
    }
    assert record["npz_bytes"] == store.npz_path(key).stat().st_size
    assert record["metrics"] == {"auroc": 0.8, "n": 7}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", record["written_at"])

    arrays = store.read_arrays(key)
    expected = make_arrays(1)
    assert arrays.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(arrays[name], value)
        assert arrays[name].dtype == value.dtype
    # Nothing but the pair (and the directory lock) is left in the record directory.
    names = sorted(p.name for p in store.json_path(key).parent.iterdir())
    assert names == [".records.lock", "frac0.25-seed1.json", "frac0.25-seed1.npz"]


def test_written_npz_loads_without_pickle():
    store = RecordStore()
    key = make_key()
    write(store, key)
    with np.load(store.npz_path(key), allow_pickle=False) as data:
        assert sorted(data.files) == sorted(make_arrays(0))


def test_object_arrays_are_refused_and_nothing_is_written():
    store = RecordStore()
    key = make_key()
    with pytest.raises(BenchError, match="dtype object"):
        store.write(key, {"method": "jepa"}, {"ids": np.array([{"a": 1}, None], dtype=object)})
    with pytest.raises(BenchError, match="dtype object"):
        store.write(key, {"method": "jepa"}, {"ragged": [[1, 2], "x"]})
    assert not store.json_path(key).exists() and not store.npz_path(key).exists()


def test_unserialisable_record_is_refused_before_any_file_is_written():
    store = RecordStore()
    key = make_key()
    with pytest.raises(BenchError, match="not JSON serialisable"):
        store.write(key, {"bad": object()}, make_arrays())
    assert not store.npz_path(key).exists()


def test_read_of_a_missing_record_is_a_clear_error():
    store = RecordStore()
    with pytest.raises(BenchError, match="no run record"):
        store.read(make_key())
    with pytest.raises(BenchError, match="no run record"):
        store.read_arrays(make_key())


def test_records_finds_and_filters():
    store = RecordStore()
    write(store, make_key(seed=0))
    write(store, make_key(seed=1))
    write(store, make_key(seed=0, task="rhythm"))
    write(store, make_key(seed=0, run_id="mae-xs-0000000000"), method="mae")

    everything = store.records()
    assert len(everything) == 4 and store.last_skipped == []
    assert [r["_path"] for r in everything] == sorted(r["_path"] for r in everything)
    assert all(Path(r["_path"]).is_file() for r in everything)

    form = store.records(task="form")
    assert {(r["key"]["run_id"], r["key"]["seed"]) for r in form} == {
        ("jepa-xs-1a2b3c4d5e", 0),
        ("jepa-xs-1a2b3c4d5e", 1),
        ("mae-xs-0000000000", 0),
    }
    assert [r["key"]["task"] for r in store.records(method="jepa", task="rhythm")] == ["rhythm"]
    assert len(store.records(method="mae")) == 1
    # Fields only in the key are matched there.
    assert len(store.records(seed=1)) == 1
    assert store.records(task="diagnostic") == []
    assert store.records(nonexistent_field=None) == []


def test_records_of_an_empty_store():
    store = RecordStore()
    assert store.records() == [] and store.last_skipped == []


# ---------------------------------------------------------------------- torn states
def _npz_without_json(store, key):
    store.json_path(key).unlink()


def _json_without_npz(store, key):
    store.npz_path(key).unlink()


def _truncated_npz(store, key):
    path = store.npz_path(key)
    path.write_bytes(path.read_bytes()[:-10])


def _not_complete(store, key):
    path = store.json_path(key)
    record = json.loads(path.read_text())
    record["complete"] = False
    path.write_text(json.dumps(record))


def _no_complete_field(store, key):
    path = store.json_path(key)
    record = json.loads(path.read_text())
    del record["complete"]
    path.write_text(json.dumps(record))


def _other_format(store, key):
    path = store.json_path(key)
    record = json.loads(path.read_text())
    record["format"] = RECORD_FORMAT + 1
    path.write_text(json.dumps(record))


def _corrupt_json(store, key):
    path = store.json_path(key)
    path.write_text(path.read_text()[: len(path.read_text()) // 2])


def _json_list(store, key):
    store.json_path(key).write_text("[1, 2, 3]")


@pytest.mark.parametrize(
    "damage",
    [
        _npz_without_json,
        _json_without_npz,
        _truncated_npz,
        _not_complete,
        _no_complete_field,
        _other_format,
        _corrupt_json,
        _json_list,
    ],
)
def test_torn_state_never_counts_as_done(damage):
    store = RecordStore()
    good, torn = make_key(seed=0), make_key(seed=1)
    write(store, good)
    write(store, torn)
    damage(store, torn)

    assert store.exists(good) and not store.exists(torn)
    with pytest.raises(BenchError) as info:
        store.read(torn)
    assert info.value.hint
    with pytest.raises(BenchError):
        store.read_arrays(torn)

    found = store.records()
    assert [r["key"]["seed"] for r in found] == [0]
    json_left = store.json_path(torn).exists()
    assert store.last_skipped == ([store.json_path(torn)] if json_left else [])

    # An incomplete record is rewritten without overwrite=True: it is not done.
    write(store, torn)
    assert store.exists(torn)


def test_corrupt_record_error_says_to_delete_and_rerun():
    store = RecordStore()
    key = make_key()
    write(store, key)
    _truncated_npz(store, key)
    with pytest.raises(BenchError) as info:
        store.read(key)
    assert str(store.json_path(key)) in info.value.message
    assert "delete" in info.value.hint and "rerun" in info.value.hint


def test_damaged_npz_of_the_recorded_size_is_a_clear_error():
    store = RecordStore()
    key = make_key()
    write(store, key)
    path = store.npz_path(key)
    path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(BenchError, match="unreadable predictions"):
        store.read_arrays(key)


# ---------------------------------------------------------------------- overwrite
def test_write_refuses_to_overwrite_a_complete_record():
    store = RecordStore()
    key = make_key()
    write(store, key, test_macro_auroc=0.5)
    with pytest.raises(BenchError, match="already exists") as info:
        write(store, key, test_macro_auroc=0.9)
    assert "overwrite=True" in info.value.hint
    assert store.read(key)["test_macro_auroc"] == 0.5

    store.write(key, {"test_macro_auroc": 0.9}, {"x": np.ones(3)}, overwrite=True)
    assert store.read(key)["test_macro_auroc"] == 0.9
    assert list(store.read_arrays(key)) == ["x"]


def test_reserved_fields_are_the_store_s_own():
    store = RecordStore()
    key = make_key()
    store.write(key, {"complete": False, "npz_bytes": 1, "format": 99}, make_arrays())
    record = store.read(key)
    assert record["complete"] is True and record["format"] == RECORD_FORMAT
    # A record read back can be written again as it is.
    store.write(key, record, store.read_arrays(key), overwrite=True)
    assert store.exists(key)


def test_crash_during_overwrite_never_leaves_an_old_json_over_a_new_npz(monkeypatch):
    store = RecordStore()
    key = make_key()
    write(store, key)
    old_size = store.npz_path(key).stat().st_size
    real_publish = results_module._publish

    def crash_on_json(path, writer):
        if path.suffix == ".json":
            raise KeyboardInterrupt  # killed between the npz and the JSON rename
        return real_publish(path, writer)

    monkeypatch.setattr(results_module, "_publish", crash_on_json)
    # Same shapes, other values: the new npz has the old one's size, so npz_bytes alone would
    # not reveal the mixed pair.
    new_arrays = make_arrays(seed=1)
    with pytest.raises(KeyboardInterrupt):
        store.write(key, {"method": "jepa"}, new_arrays, overwrite=True)
    np.testing.assert_array_equal(
        np.load(store.npz_path(key))["test_scores"], new_arrays["test_scores"]
    )
    assert store.npz_path(key).stat().st_size == old_size
    assert not store.exists(key)
    assert store.records() == []


def test_failed_write_leaves_no_temporary(monkeypatch):
    store = RecordStore()
    key = make_key()

    def failing_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(results_module.np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        write(store, key)
    directory = store.json_path(key).parent
    assert sorted(p.name for p in directory.iterdir()) == [".records.lock"]


# ---------------------------------------------------------------------- killed writers
def test_stale_temporaries_are_ignored_and_removed():
    store = RecordStore()
    key = make_key()
    write(store, key)
    directory = store.json_path(key).parent
    dead = dead_pid()
    stale_json = directory / f".x.json.tmp-{dead}"
    stale_npz = directory / f".frac1-seed0.npz.tmp-{dead}"
    live = directory / f".y.json.tmp-{os.getppid()}"  # the parent of pytest is alive
    for path in (stale_json, stale_npz, live):
        path.write_text('{"format": 1, "complete": true')

    assert [r["key"]["seed"] for r in store.records()] == [0]
    assert store.last_skipped == []
    assert store.exists(key)

    removed = store.remove_stale_temporaries()
    assert sorted(removed) == sorted([stale_json, stale_npz])
    assert not stale_json.exists() and not stale_npz.exists()
    assert live.exists()
    assert store.exists(key)


def test_remove_stale_temporaries_of_an_empty_store():
    assert RecordStore().remove_stale_temporaries() == []


# ---------------------------------------------------------------------- concurrency
WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from bench.errors import BenchError
    from bench.results import RecordKey, RecordStore

    root, worker, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    store = RecordStore(root)

    def key(seed):
        return RecordKey("jepa-xs-1a2b3c4d5e", "form", "linear", "0123456789abcdef", 1.0, seed)

    def arrays(n):
        # Sizes differ per worker so a mixed pair is caught by npz_bytes or by content.
        return {"writer": np.full(n, worker, dtype=np.int32)}

    while not go.exists():
        time.sleep(0.001)
    for i in range(20):
        if i % 2 == 0:  # the shared keys, interleaved with the private ones
            shared = 1000 + i
            try:
                store.write(key(shared), {"writer": worker}, arrays(50 + 10 * worker))
                print("won", shared, flush=True)
            except BenchError:
                print("lost", shared, flush=True)
        store.write(key(100 * worker + i), {"writer": worker}, arrays(20 + worker))
    """
)


def test_two_processes_write_one_store_concurrently(tmp_path):
    root = tmp_path / "shared-store"
    go = tmp_path / "go"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(worker), str(go)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in (1, 2)
    ]
    time.sleep(0.5)  # let both import and reach the start line
    go.touch()
    lines = {}
    for worker, proc in zip((1, 2), procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines[worker] = set(out.splitlines())

    store = RecordStore(root)
    records = store.records()
    assert store.last_skipped == []
    shared = [1000 + i for i in range(0, 20, 2)]
    assert len(records) == 2 * 20 + len(shared)
    for worker in (1, 2):
        for i in range(20):
            key = RecordKey("jepa-xs-1a2b3c4d5e", "form", "linear", HASH, 1.0, 100 * worker + i)
            assert store.read(key)["writer"] == worker
            np.testing.assert_array_equal(
                store.read_arrays(key)["writer"], [worker] * (20 + worker)
            )

    for seed in shared:
        winners = [w for w in (1, 2) if f"won {seed}" in lines[w]]
        losers = [w for w in (1, 2) if f"lost {seed}" in lines[w]]
        # Exactly one winner; the other got BenchError (it did not silently overwrite).
        assert len(winners) == 1 and losers == [3 - winners[0]], (seed, lines)
        winner = winners[0]
        key = RecordKey("jepa-xs-1a2b3c4d5e", "form", "linear", HASH, 1.0, seed)
        # The pair on disk is the winner's, both halves.
        assert store.read(key)["writer"] == winner
        np.testing.assert_array_equal(
            store.read_arrays(key)["writer"], [winner] * (50 + 10 * winner)
        )

    assert [p for p in root.rglob("*") if ".tmp-" in p.name] == []


# ---------------------------------------------------------------------- provenance
def test_now_iso_is_utc():
    stamp = now_iso()
    assert stamp.endswith("+00:00")
    assert re.match(r"^\d{4}-\d\d-\d\dT", stamp)


def test_environment_describes_the_run():
    torch = pytest.importorskip("torch")
    env = environment("cpu")
    assert {"python", "platform", "hostname", "packages", "torch_threads", "device", "git"} <= set(
        env
    )
    assert env["device"] == "cpu"
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["packages"]["torch"] == torch.__version__
    assert env["packages"]["numpy"] == np.__version__
    assert set(env["packages"]) == {
        "torch",
        "timm",
        "lightly",
        "numpy",
        "scikit-learn",
        "optuna",
        "mlflow",
        "wfdb",
        "pandas",
        "ecg-ssl-bench",
    }
    assert env["torch_threads"] == torch.get_num_threads()
    assert set(env["git"]) == {"commit", "dirty"}
    json.dumps(env)  # stored in every record as it is
    assert environment()["device"] is None


def test_environment_records_the_git_commit():
    if shutil.which("git") is None:
        pytest.skip("git not available")
    probe = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("not running inside a git checkout")
    git = environment()["git"]
    assert re.fullmatch(r"[0-9a-f]{40}", git["commit"])
    assert git["commit"] == probe.stdout.strip()
    assert isinstance(git["dirty"], bool)


def test_environment_survives_a_missing_git(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    results_module._git_state.cache_clear()
    monkeypatch.setattr(results_module.subprocess, "run", no_git)
    try:
        assert environment()["git"] == {"commit": None, "dirty": None}
    finally:
        results_module._git_state.cache_clear()


def test_missing_packages_are_none(monkeypatch):
    monkeypatch.setattr(results_module, "_PACKAGES", ("numpy", "surely-not-installed-pkg"))
    monkeypatch.setattr(results_module, "_torch_info", lambda: (None, None))
    env = environment()
    assert env["packages"] == {"numpy": np.__version__, "surely-not-installed-pkg": None}
    assert env["torch_threads"] is None
