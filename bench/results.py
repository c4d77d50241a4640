"""Run records: the on-disk store the leaderboard is built from.

One downstream evaluation (a pre-training run evaluated on one task with one protocol, protocol
config, label fraction and seed) produces one *record*: a JSON file with metrics and provenance,
and a predictions ``.npz`` beside it::

    <results>/records/<run_id>/<task>/<protocol>-<eval_hash[:8]>/frac<fraction>-seed<seed>.json
    <results>/records/<run_id>/<task>/<protocol>-<eval_hash[:8]>/frac<fraction>-seed<seed>.npz

The store is what lets an interrupted ``bench run`` continue where it stopped, so a record only
counts as done when both files are in place and agree: the npz is published first, the JSON last,
and the JSON carries ``complete: true`` plus the npz's size. Every file is written to a temporary
sibling ``.<name>.tmp-<pid>``, fsynced and renamed, under a per-directory file lock, so a killed
process never leaves a half-written record that counts, and two processes sharing a results
directory never interleave their writes to one record.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import socket
import subprocess
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import pid_alive
from bench.errors import BenchError
from bench.paths import results_dir

RECORD_FORMAT = 1

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_MAX_NAME = 120
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
# Temporaries are ".<final name>.tmp-<pid>"; the pid says whether their writer may still be alive.
_TEMP = re.compile(r"^\..+\.tmp-(\d+)$")
# Fields the store adds to every record JSON; they override same-named fields of the caller's.
_RESERVED = ("format", "key", "complete", "npz_bytes", "written_at")
_LOCK_NAME = ".records.lock"
_LOCK_TIMEOUT_S = 600.0
_PACKAGES = (
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
)


def safe_name(text: str, what: str) -> str:
    """Return ``text`` if it is safe as one path segment of a record path, else raise.

    Allowed: ASCII letters, digits and ``_ . + -``, starting with a letter or digit, no ``..``,
    at most 120 characters. This keeps names from ever addressing a file outside the results
    directory (no separators, no parent references, no hidden files).

    Args:
        text: the candidate segment (a method, task, run id or protocol name).
        what: what the name is, for the error message (``"task"``, ``"run id"`` ...).
    """
    if (
        not isinstance(text, str)
        or len(text) > _MAX_NAME
        or ".." in text
        or not _SAFE_NAME.fullmatch(text)  # match() would let a trailing newline through
    ):
        raise BenchError(
            f"invalid {what} {text!r}: expected 1-{_MAX_NAME} characters of letters, digits and "
            "'_.+-', starting with a letter or digit, without '..'",
            hint=f"rename the {what}",
        )
    return text


class RecordExists(BenchError):
    """:meth:`RecordStore.write` found a complete record (another process finished it first)."""


@dataclass(frozen=True)
class RecordKey:
    """What identifies one run record.

    Attributes:
        run_id: the pre-training run id (``"jepa-xs-1a2b3c4d5e"``) or a reference row id.
        task: the downstream task name.
        protocol: the evaluation protocol (``"linear"``, ``"finetune"`` ...).
        eval_hash: hex hash of the resolved protocol config (:func:`bench.config.config_hash`).
        label_fraction: the fraction of training labels used, in (0, 1].
        seed: the evaluation seed, >= 0.
    """

    run_id: str
    task: str
    protocol: str
    eval_hash: str
    label_fraction: float
    seed: int

    def __post_init__(self) -> None:
        safe_name(self.run_id, "run id")
        safe_name(self.task, "task")
        safe_name(self.protocol, "protocol")
        if not isinstance(self.eval_hash, str) or not _HEX.match(self.eval_hash):
            raise BenchError(
                f"invalid eval hash {self.eval_hash!r}: expected 8-64 lowercase hex digits"
            )
        fraction = self.label_fraction
        # bool is an int subclass: True would silently mean "all labels".
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)):
            raise BenchError(f"invalid label fraction {fraction!r}: expected a number in (0, 1]")
        if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
            raise BenchError(f"invalid label fraction {fraction!r}: expected a number in (0, 1]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise BenchError(f"invalid seed {self.seed!r}: expected an integer >= 0")
        if self.seed < 0:
            raise BenchError(f"invalid seed {self.seed!r}: expected an integer >= 0")
        # Normalise numpy scalars and ints so asdict() is JSON-ready and keys compare equal.
        object.__setattr__(self, "label_fraction", float(fraction))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def relpath(self) -> Path:
        """The record's path relative to the store root, without suffix."""
        return (
            Path(self.run_id)
            / self.task
            / f"{self.protocol}-{self.eval_hash[:8]}"
            / f"frac{self.label_fraction:g}-seed{self.seed}"
        )


class RecordStore:
    """The run records under ``root`` (default ``<results>/records``).

    Attributes:
        root: the store's directory.
        last_skipped: JSON files the last :meth:`records` call skipped as incomplete or corrupt.
    """

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else results_dir() / "records"
        self.last_skipped: list[Path] = []

    # ------------------------------------------------------------------ paths
    def json_path(self, key: RecordKey) -> Path:
        """Where ``key``'s record JSON lives."""
        # Not with_suffix: "frac0.1-seed0" would lose ".1-seed0" as its "suffix".
        rel = key.relpath
        return self.root / rel.parent / f"{rel.name}.json"

    def npz_path(self, key: RecordKey) -> Path:
        """Where ``key``'s predictions npz lives."""
        rel = key.relpath
        return self.root / rel.parent / f"{rel.name}.npz"

    # ------------------------------------------------------------------ reading
    def exists(self, key: RecordKey) -> bool:
        """Whether ``key``'s record is complete: both files, a valid JSON, a matching npz."""
        try:
            _load_complete(self.json_path(key), self.npz_path(key))
        except BenchError:
            return False
        return True

    def read(self, key: RecordKey) -> dict:
        """The record JSON of ``key`` (raises :class:`BenchError` unless it is complete)."""
        return _load_complete(self.json_path(key), self.npz_path(key))

    def read_arrays(self, key: RecordKey) -> dict[str, np.ndarray]:
        """The predictions arrays of ``key``'s complete record, loaded without pickle."""
        json_path, npz_path = self.json_path(key), self.npz_path(key)
        _load_complete(json_path, npz_path)
        try:
            with np.load(npz_path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            # A damaged archive of the right size (bit rot, a foreign file) surfaces here.
            raise _corrupt(json_path, f"unreadable predictions {npz_path}: {exc}") from exc

    def records(self, **filters: Any) -> list[dict]:
        """Every complete record under the root, sorted by path.

        Each dict gets ``_path`` (the JSON's path as a string). Incomplete or unparsable JSON
        files are skipped and listed in :attr:`last_skipped`; temporaries are ignored.

        Args:
            filters: ``field=value`` pairs a record must match, on its top-level fields (e.g.
                ``task="form"``, ``method="jepa"``); a field absent at the top level is looked up
                in the record's key (``seed=0``, ``eval_hash=...``).
        """
        self.last_skipped = []
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.rglob("*.json")):
            if _TEMP.match(path.name) or not path.is_file():
                continue
            try:
                record = _load_complete(path, path.with_name(path.name[: -len(".json")] + ".npz"))
            except BenchError:
                self.last_skipped.append(path)
                continue
            if all(_field(record, name) == value for name, value in filters.items()):
                record["_path"] = str(path)
                found.append(record)
        return found

    # ------------------------------------------------------------------ writing
    def write(
        self,
        key: RecordKey,
        record: dict,
        arrays: dict[str, np.ndarray],
        *,
        overwrite: bool = False,
    ) -> Path:
        """Publish ``key``'s record atomically; returns the JSON path.

        The npz is written first and the JSON (with ``format``, ``key``, ``complete``,
        ``npz_bytes`` and ``written_at`` added) last, each through an fsynced temporary renamed
        into place, so the record counts as done only once both are whole.

        Args:
            key: the record's identity.
            record: JSON-serialisable metrics and provenance (numpy scalars are converted).
            arrays: named numeric arrays (predictions, ids); object arrays are refused.
            overwrite: replace a complete record. Without it an existing complete record (a
                concurrent process finished it first) raises :class:`RecordExists`.
        """
        checked = _check_arrays(arrays, key)
        if not isinstance(record, dict):
            raise BenchError(f"record of {key.relpath} must be a dict, got {type(record).__name__}")
        # Serialise once up front: a record that cannot be written fails before any file exists.
        _dumps({**record, "key": asdict(key)}, key)
        json_path, npz_path = self.json_path(key), self.npz_path(key)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with _directory_lock(json_path.parent):
            if not overwrite and self.exists(key):
                raise RecordExists(
                    f"record {json_path} already exists",
                    hint="another process may have finished it first; pass overwrite=True "
                    "to replace it",
                )
            # Retract any old JSON first: between the two renames below the pair is then
            # "npz without JSON" (not done), never an old JSON over a new npz.
            with contextlib.suppress(FileNotFoundError):
                json_path.unlink()
            npz_bytes = _publish(npz_path, lambda f: np.savez(f, **checked))
            full = {
                **{k: v for k, v in record.items() if k not in _RESERVED},
                "format": RECORD_FORMAT,
                "key": asdict(key),
                "complete": True,
                "npz_bytes": npz_bytes,
                "written_at": now_iso(),
            }
            text = _dumps(full, key).encode()
            _publish(json_path, lambda f: f.write(text))
        return json_path

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporaries left by killed writers (their pid is no live process).

        Temporaries of live processes belong to a concurrent writer and are kept. This
        process's own pid counts as dead (see :func:`bench.atomic.pid_alive`): call it before
        writing, not concurrently with writes from another thread. Returns the removed paths.
        """
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for path in sorted(self.root.rglob(".*.tmp-*")):
            match = _TEMP.match(path.name)
            if not match or not path.is_file() or pid_alive(int(match.group(1))):
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        return removed


# ---------------------------------------------------------------------- helpers
_MISSING = object()


def _field(record: dict, name: str) -> Any:
    """A top-level field of ``record``, else the same field of its key, else a sentinel."""
    if name in record:
        return record[name]
    key = record.get("key")
    if isinstance(key, dict) and name in key:
        return key[name]
    return _MISSING


def _corrupt(json_path: Path, reason: str) -> BenchError:
    """The error for an unusable record, with the fix."""
    stem = json_path.with_name(json_path.name[: -len(".json")])
    return BenchError(
        f"run record {json_path} is incomplete or corrupt: {reason}",
        hint=f"delete {stem}.json and {stem}.npz and rerun `bench run` to recompute it",
    )


def _load_complete(json_path: Path, npz_path: Path) -> dict:
    """The parsed record at ``json_path`` if it is complete, else :class:`BenchError`."""
    try:
        text = json_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(
            f"no run record at {json_path}",
            hint="run `bench run` to compute it",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(json_path, f"unreadable: {exc}") from exc
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _corrupt(json_path, f"invalid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise _corrupt(json_path, "not a JSON object")
    if record.get("format") != RECORD_FORMAT:
        raise _corrupt(
            json_path, f"format {record.get('format')!r}, this version reads {RECORD_FORMAT}"
        )
    if record.get("complete") is not True:
        raise _corrupt(json_path, "not marked complete")
    expected = record.get("npz_bytes")
    try:
        actual = npz_path.stat().st_size
    except FileNotFoundError:
        raise _corrupt(json_path, f"predictions {npz_path} missing") from None
    if isinstance(expected, bool) or not isinstance(expected, int) or expected != actual:
        raise _corrupt(json_path, f"predictions {npz_path} are {actual} bytes, expected {expected}")
    return record


def _check_arrays(arrays: dict[str, np.ndarray], key: RecordKey) -> dict[str, np.ndarray]:
    """``arrays`` as ndarrays, refusing anything that would need pickle to load."""
    if not isinstance(arrays, dict):
        raise BenchError(f"arrays of {key.relpath} must be a dict of name -> ndarray")
    checked = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise BenchError(f"array name {name!r} of {key.relpath} must be an identifier")
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nesting would need dtype object
            raise BenchError(
                f"array {name!r} of {key.relpath} is not a regular array (would need dtype "
                f"object): {exc}"
            ) from exc
        # hasobject also catches structured dtypes with object fields.
        if array.dtype.hasobject:
            raise BenchError(
                f"array {name!r} of {key.relpath} has dtype object, which needs pickle to load",
                hint="convert it to a numeric or fixed-width string dtype",
            )
        checked[name] = array
    return checked


def _json_default(value: Any) -> Any:
    """Convert numpy scalars and arrays that metric code tends to return."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(record: dict, key: RecordKey) -> str:
    """``record`` as indented JSON, or a :class:`BenchError` naming the record."""
    try:
        return json.dumps(record, indent=2, default=_json_default) + "\n"
    except (TypeError, ValueError) as exc:
        raise BenchError(f"record of {key.relpath} is not JSON serialisable: {exc}") from exc


def _publish(path: Path, write) -> int:
    """Write ``path`` via an fsynced temporary renamed into place; returns its size."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        os.replace(tmp, path)
    except BaseException:
        # Our own failure (disk full, Ctrl-C): leave no temporary behind.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)
    return size


def _fsync_directory(directory: Path) -> None:
    """Persist a rename (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _directory_lock(directory: Path):
    """Exclusive lock on one record directory across processes (and threads)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(directory / _LOCK_NAME), timeout=_LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout as exc:
        raise BenchError(
            f"timed out after {_LOCK_TIMEOUT_S:.0f} s waiting for the lock on {directory}",
            hint="another process is writing records there; wait for it or stop it",
        ) from exc
    try:
        yield
    finally:
        lock.release()


# ---------------------------------------------------------------------- provenance
def now_iso() -> str:
    """The current UTC time as an ISO 8601 string (millisecond resolution)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def environment(device: str | None = None) -> dict:
    """Provenance stored in every record: interpreter, host, package versions, git state.

    Args:
        device: the device the evaluation ran on (``"cuda:0"``, ``"cpu"``).
    """
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    torch_version, torch_threads = _torch_info()
    if torch_version is not None:
        # The runtime's version keeps the build tag ("2.4.1+cu121") that the metadata drops.
        packages["torch"] = torch_version
    commit, dirty = _git_state()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": packages,
        "torch_threads": torch_threads,
        "device": device,
        "git": {"commit": commit, "dirty": dirty},
    }


def _torch_info() -> tuple[str | None, int | None]:
    """torch's version and intra-op thread count, (None, None) without a working torch."""
    # Imported lazily: the store itself must stay cheap to import (worker processes, the CLI).
    try:
        import torch

        return str(torch.__version__), int(torch.get_num_threads())
    except Exception:
        return None, None


@functools.lru_cache(maxsize=1)
def _git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the repository holding this package; None where unknown."""
    package_dir = Path(__file__).resolve().parent
    # An installed copy in site-packages may sit inside some unrelated checkout (a venv in a
    # repository): that repository's commit would not describe this code.
    if {"site-packages", "dist-packages"} & set(package_dir.parts):
        return None, None
    cwd = package_dir.parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is not None and not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit.strip()):
        commit = None
    status = _git(["status", "--porcelain"], cwd) if commit is not None else None
    return (
        commit.strip() if commit is not None else None,
        bool(status.strip()) if status is not None else None,
    )


def _git(args: list[str], cwd: Path) -> str | None:
    """Stdout of ``git <args>`` in ``cwd``, or None on any failure."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None
