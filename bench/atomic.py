"""Helpers for writing directories atomically: build in a temporary sibling named after the
owning process, rename into place, and clear what killed processes left behind."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether another process with ``pid`` runs (our own pid counts as dead: a leftover of an
    earlier call in this process)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temporaries(parent: Path, pattern: str) -> None:
    """Delete ``parent``'s entries matching ``pattern`` whose name ends in ``-<pid>`` of a dead
    process (temporaries of killed runs; live ones belong to a concurrent run)."""
    if not parent.is_dir():
        return
    for path in parent.glob(pattern):
        match = re.search(r"-(\d+)$", path.name)
        if match and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def create_sqlite_store(path: Path, build: Callable[[str], None]) -> None:
    """Create the SQLite database ``path`` whole or not at all (call under the store's lock).

    ``build(url)`` creates the schema in a temporary sibling (a ``sqlite:///`` URL) and closes
    its connections; the file is then renamed into place. Why: MLflow builds a new store in ~40
    migration steps (Optuna in several), and a full disk or a kill between two of them left a
    database that every later run refused ("table ... already exists"). A store that exists is
    left alone.
    """
    if path.exists():
        return
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # killed creators' leftovers
        match = re.search(r"\.tmp-(\d+)", stale.name)
        if match and not pid_alive(int(match.group(1))):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    side_files = [Path(f"{tmp}{suffix}") for suffix in ("", "-journal", "-wal", "-shm")]
    for leftover in side_files:
        leftover.unlink(missing_ok=True)
    try:
        build(f"sqlite:///{tmp}")
        os.replace(tmp, path)
    finally:
        for leftover in side_files:
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def sqlite_store(url: str, build: Callable[[str], None]) -> Iterator[None]:
    """For a ``sqlite:///`` URL: hold an inter-process lock beside the database
    (``<db>.lock``; creating a store's tables is not safe from two processes at once) and create
    a new store whole with :func:`create_sqlite_store`. Other URLs (servers): nothing."""
    if not url.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock

    path = Path(url[len("sqlite:///") :])
    with FileLock(f"{path}.lock", timeout=600):
        create_sqlite_store(path, build)
        yield
