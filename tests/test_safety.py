"""Safe defaults: nothing the harness loads can run code, and no name can write outside the
results directory.

* a source scan (``ast``, so comments and strings cannot fool it) of ``bench/``, ``methods/`` and
  ``tasks/``: no pickle-family import, every ``torch.load`` with ``weights_only=True``, no
  ``allow_pickle=True``, ``torch.save`` only in the checkpoint writer, no ``eval``/``exec``, no
  server bound to every interface; the scanner itself is checked on bad and good snippets;
* crafted malicious checkpoints and arrays (a ``__reduce__`` that would create a marker file),
  loaded through the harness's own loaders: a clear error, and the marker never appears;
* path-like, absolute, NUL, non-ASCII, newline and over-long names for methods, tasks, encoder
  sizes, run ids, record keys and leaderboard slugs: clear errors, nothing written outside the
  results directory;
* the MLflow UI binds 127.0.0.1 unless ``--host`` says otherwise.

(Already proved elsewhere, not repeated: download checksums and zip-slip in test_download.py,
the UI serving on 127.0.0.1 in test_run_cli.py, ``safe_name``/``RecordKey`` basics in
test_results.py, a torn checkpoint in test_train.py.)
"""

from __future__ import annotations

import ast
import builtins
import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import BenchError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "tasks")
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal", "jsonpickle"}  # fmt: skip
# torch.save writes pickles: the one writer is the checkpoint function, whose output every
# load_checkpoint (weights_only=True) proves loadable without code (resume / reuse tests).
TORCH_SAVE_ALLOWED = {("bench/checkpoint.py", "save_checkpoint")}


# --------------------------------------------------------------------------- the scanner
def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted module path, from every import in the module."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str):
    """The keyword's value node; ``...`` when ``**kwargs`` could hide it; None when absent."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
        if kw.arg is None:
            return ...
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def scan_source(source: str, rel: str) -> tuple[list[str], dict[str, int]]:
    """Violations in one module's source, and counts of the loads / saves seen."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    problems: list[str] = []
    seen = {"torch.load": 0, "numpy.load": 0, "torch.save": 0}
    functions: dict[ast.AST, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in ast.walk(node):
                functions.setdefault(child, node.name)
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PICKLE_MODULES:
                    problems.append(f"{where}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLE_MODULES:
                problems.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Constant) and node.value == "0.0.0.0":
            problems.append(f"{where}: binds every interface ('0.0.0.0')")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func, aliases) or ""
            allow = _keyword(node, "allow_pickle")
            if allow is ... and name not in ("numpy.load", "np.load"):
                allow = None  # **kwargs of an unrelated call
            if allow is not None and not _is_const(allow, False):
                problems.append(f"{where}: allow_pickle other than the literal False")
            if name in ("eval", "exec") and name not in aliases:
                problems.append(f"{where}: builtin {name}()")
            if name in ("torch.load", "torch.serialization.load"):
                seen["torch.load"] += 1
                if not _is_const(_keyword(node, "weights_only"), True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            elif name in ("numpy.load", "np.load"):
                seen["numpy.load"] += 1  # allow_pickle checked above; numpy's default is False
            elif name in ("torch.save", "torch.serialization.save"):
                seen["torch.save"] += 1
                if (rel, functions.get(node)) not in TORCH_SAVE_ALLOWED:
                    problems.append(f"{where}: torch.save outside the checkpoint writer")
            elif name.startswith("yaml.") and name.split(".")[-1] in ("load", "unsafe_load",
                                                                      "full_load", "load_all"):  # fmt: skip
                problems.append(f"{where}: {name} (use yaml.safe_load)")
            elif name.split(".")[0] in PICKLE_MODULES:
                problems.append(f"{where}: {name}()")
    return problems, seen


def test_source_scan_finds_no_unsafe_loading():
    problems: list[str] = []
    totals = {"torch.load": 0, "numpy.load": 0, "torch.save": 0}
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 30  # the scan really covers the packages
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        found, seen = scan_source(path.read_text(encoding="utf-8"), rel)
        problems += found
        for key, n in seen.items():
            totals[key] += n
    assert problems == []
    # it saw the loads it is meant to police (a renamed import would otherwise hide them)
    assert totals["torch.load"] >= 1 and totals["numpy.load"] >= 3 and totals["torch.save"] == 1


def test_numpy_default_refuses_pickles():
    """``np.load`` calls without ``allow_pickle`` rely on numpy's default being False."""
    assert inspect.signature(np.load).parameters["allow_pickle"].default is False


BAD = [
    ("import pickle", "import pickle"),
    ("import cloudpickle as cp", "import cloudpickle"),
    ("from pickle import loads", "from pickle import"),
    ("import torch\ntorch.load('x')", "without weights_only=True"),
    ("import torch\ntorch.load('x', weights_only=False)", "without weights_only=True"),
    ("import torch\nflag = True\ntorch.load('x', weights_only=flag)", "without weights_only=True"),
    ("import torch\ntorch.load('x', **opts)", "without weights_only=True"),
    ("from torch import load as L\nL('x')", "without weights_only=True"),
    ("import torch as T\nT.serialization.load('x')", "without weights_only=True"),
    ("import numpy as np\nnp.load('x', allow_pickle=True)", "allow_pickle"),
    ("from numpy import load\nload('x', allow_pickle=1)", "allow_pickle"),
    ("import numpy\nnumpy.load('x', **opts)", "allow_pickle"),
    ("import torch\ndef other(s):\n    torch.save(s, 'x')", "torch.save outside"),
    ("eval('1 + 1')", "builtin eval"),
    ("exec('x = 1')", "builtin exec"),
    ("import yaml\nyaml.load(text)", "yaml.safe_load"),
    ("host = '0.0.0.0'", "every interface"),
]


@pytest.mark.parametrize("source, message", BAD)
def test_the_scanner_catches_unsafe_code(source, message):
    problems, _ = scan_source(source, "bench/x.py")
    assert any(message in p for p in problems), problems


def test_the_scanner_is_not_fooled_by_comments_and_allows_safe_code():
    source = (
        "import ast, torch\nimport numpy as np\n"
        "# import pickle; torch.load(path)  <- a comment, not code\n"
        "doc = 'pickle.load(f) and np.load(f, allow_pickle=True) in a string'\n"
        "torch.load('x', map_location='cpu', weights_only=True)\n"
        "np.load('x', allow_pickle=False)\nnp.load('x', mmap_mode='r')\n"
        "ast.literal_eval('[1]')\nmodel.eval()\n"
    )
    assert scan_source(source, "bench/x.py")[0] == []
    ok = "import torch\ndef save_checkpoint(p, s):\n    torch.save(s, p)\n"
    assert scan_source(ok, "bench/checkpoint.py")[0] == []


# --------------------------------------------------------------------------- malicious files
class _Payload:
    """Unpickling this creates ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


class _SystemPayload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [_Payload, _SystemPayload])
@pytest.mark.parametrize("where", ["top level", "in the state", "as the weights"])
def test_malicious_checkpoint_is_refused_without_running_code(tmp_path, payload, where):
    from bench.train import load_checkpoint

    marker = tmp_path / "pwned"
    evil = payload(marker)
    state = {"top level": evil, "in the state": {"format": 1, "config": evil},
             "as the weights": {"format": 1, "model": {"w": torch.ones(1), "x": evil}}}[where]  # fmt: skip
    path = tmp_path / "final.pt"
    torch.save(state, path)
    with pytest.raises(BenchError, match="unreadable or corrupt") as info:
        load_checkpoint(path)
    assert str(path) in info.value.message and info.value.hint
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_planted_in_a_run_directory_is_refused(mini_ptbxl, tmp_path):
    """``bench run`` / ``bench pretrain`` reuse a finished run's final.pt: a planted one is
    refused before anything is built from it."""
    from bench.data.cache import prepare_cache
    from bench.data.ptbxl import PTBXL
    from bench.train import EngineConfig, pretrain, resolve_config, run_id

    dataset = PTBXL(mini_ptbxl)
    cfg = resolve_config("jepa", "smoke")
    cache = prepare_cache(dataset, cfg.data.rate, workers=1, progress=False)
    engine = EngineConfig(device="cpu", workers=0, mlflow=False, progress=False)
    run_dir = tmp_path / "results" / "pretrain" / run_id("jepa", cfg, engine, cache.fingerprint)
    run_dir.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "step": _Payload(marker)}, run_dir / "final.pt")
    with pytest.raises(BenchError, match="unreadable or corrupt"):
        pretrain("jepa", cfg, dataset, cache, engine)
    assert not marker.exists()


def _pickled_npz(path: Path, marker: Path, **good) -> None:
    arrays = {**good, "evil": np.array([_Payload(marker)], dtype=object)}
    np.savez(path, **arrays)


def test_record_predictions_holding_a_pickle_are_refused(tmp_path):
    from bench.results import RecordKey, RecordStore

    store = RecordStore(tmp_path / "records")
    key = RecordKey("jepa-xs-0123456789", "form", "linear", "0123abcd", 1.0, 0)
    path = store.write(key, {"method": "jepa"}, {"test_scores": np.zeros((2, 2), np.float32)})
    marker = tmp_path / "pwned"
    npz = store.npz_path(key)
    _pickled_npz(npz, marker, test_scores=np.zeros((2, 2), np.float32))
    import json

    record = json.loads(path.read_text())
    record["npz_bytes"] = npz.stat().st_size  # a complete record whose npz holds a pickle
    path.write_text(json.dumps(record))
    with pytest.raises(BenchError, match="unreadable predictions") as info:
        store.read_arrays(key)
    assert "delete" in info.value.hint
    assert not marker.exists()


def test_feature_files_and_caches_holding_a_pickle_never_run_it(tmp_path):
    from bench.data.cache import SignalCache
    from bench.evaluate.protocols import FeatureStore

    marker = tmp_path / "pwned"
    # a planted feature file is treated as corrupt and recomputed, never unpickled
    directory = tmp_path / "features"
    directory.mkdir()
    _pickled_npz(directory / "val.npz", marker, ecg_ids=np.arange(2), offsets=np.zeros((2, 1)))

    class Source:
        ecg_ids, length = np.arange(2), 100

        def __len__(self):
            return 2

    store = FeatureStore(directory, lambda group: Source(), None, 50, np.array([0]), 1, 2,
                         torch.device("cpu"), "fp32")  # fmt: skip
    import bench.evaluate.protocols as protocols

    original = protocols.encode
    protocols.encode = lambda *a, **k: np.zeros((2, 1, 4), np.float32)
    try:
        assert store.features("val", np.arange(2)).shape == (2, 1, 4)
    finally:
        protocols.encode = original
    assert not marker.exists()
    # a signal cache whose ecg_ids.npy holds a pickle fails to open, without running it
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    np.save(cache_dir / "ecg_ids.npy", np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        _ = SignalCache(cache_dir, {"rate": 100, "fingerprint": "x"}).ecg_ids
    assert not marker.exists()


# --------------------------------------------------------------------------- names
BAD_NAMES = ["../evil", "/abs", "a/b", "..", ".", "a\0b", "x" * 300, "a\nb", "evil\n", "é",
             "a\\b", "", " lead"]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES)
def test_record_keys_refuse_every_unsafe_segment(name):
    from bench.results import RecordKey, safe_name

    with pytest.raises(BenchError):
        safe_name(name, "run id")
    fields = {"run_id": "jepa-xs-0123456789", "task": "form", "protocol": "linear"}
    for field in fields:
        with pytest.raises(BenchError, match=field.replace("_", " ")):
            RecordKey(**{**fields, field: name}, eval_hash="0123abcd", label_fraction=1.0, seed=0)


@pytest.mark.parametrize("name", BAD_NAMES + ["x" * 65])
def test_registries_refuse_names_that_are_not_safe_path_segments(name):
    """A registered method or task name becomes a directory name (run ids, records): anything
    the record store would refuse later is refused at registration."""
    from bench.registry import Registry

    with pytest.raises(ValueError, match="invalid"):
        Registry("method").register(name, object())


def test_every_registered_name_makes_safe_record_paths():
    from bench.method import METHODS
    from bench.results import safe_name
    from bench.task import TASKS

    for name in [*METHODS.names(), *TASKS.names()]:
        assert safe_name(f"{name}-tiny-0123456789", "run id")


@pytest.mark.parametrize("name", ["..", ".", "...", "../..", "/", "", "x" * 300, "PTB-XL v1.0.3"])
def test_leaderboard_slugs_are_safe_directory_names(name):
    from bench.report.tables import slug

    s = slug(name)
    assert s not in ("", ".", "..") and "/" not in s and "\\" not in s
    assert not s.startswith(".") and len(s) <= 100
    assert (Path("/results/leaderboard") / s).resolve().parent == Path("/results/leaderboard")


def _files_outside(root: Path, results: Path) -> dict[str, float]:
    return {
        str(p): p.stat().st_mtime
        for p in root.rglob("*")
        if results not in p.parents and p != results
    }


def _bench_here(*args: str) -> int:
    from bench.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


ESCAPE = "x/../../../outside/evil"  # from results/pretrain/.<run id>.lock up to tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--method", "../evil"], "unknown method '../evil'"),
        (["run", "--method", "jepa", "--task", "../evil"], "unknown task '../evil'"),
        (["run", "--method", "jepa", "--task", "/abs/evil"], "unknown task '/abs/evil'"),
        (["run", "--method", "jepa", "--encoder", ESCAPE], "unknown encoder size"),
        (["run", "--method", "random", "--set", f"encoder.size={ESCAPE}"], "unknown encoder size"),
        (["pretrain", "--method", "jepa", "--encoder", ESCAPE], "unknown encoder size"),
        (
            ["pretrain", "--method", "jepa", "--set", f"encoder.size={ESCAPE}"],
            "unknown encoder size",
        ),
        (["tune", "--method", "jepa", "--task", "../evil"], "unknown task '../evil'"),
    ],
)
def test_cli_names_cannot_write_outside_the_results_directory(small_synthetic, tmp_path, capsys,
                                                              args, message):  # fmt: skip
    results = tmp_path / "results"
    (tmp_path / "results").mkdir()
    before = _files_outside(tmp_path, results)
    code = _bench_here(*args, "--data-dir", str(small_synthetic), "--preset", "smoke",
                       "--no-mlflow", "--no-progress")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and message in err, err
    assert "valid" in err  # the message lists what is allowed
    assert _files_outside(tmp_path, results) == before
    assert not (tmp_path / "outside").exists()


def test_encoder_sizes_are_validated_when_the_config_is_made():
    from bench.method import EncoderConfig

    assert EncoderConfig(size="xs").size == "xs"
    with pytest.raises(BenchError, match="unknown encoder size '../x'") as info:
        EncoderConfig(size="../x")
    assert "tiny" in info.value.hint


# --------------------------------------------------------------------------- servers
def test_mlflow_ui_binds_localhost_unless_asked(monkeypatch, capsys):
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda argv, **kw: calls.append(argv) or 0)
    assert _bench_here("ui") == 0
    argv = calls[-1]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "warning" not in capsys.readouterr().err
    assert _bench_here("ui", "--host", "0.0.0.0", "--port", "5123") == 0
    argv = calls[-1]
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and "5123" in argv
    assert "reachable from other machines" in capsys.readouterr().err
