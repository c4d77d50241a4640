"""Data identity by content: SHA-256 of every file, remembered in a small digest index.

A dataset's identity (its *fingerprint*) keys its caches, every run id and every run record, so
it must follow the bytes: a byte-identical copy, an rsync without ``-t``, a checkout on another
machine or a synthetic dataset generated again with the same seed is the same data.

* :func:`content_fingerprint` is a function of ``(relative path, SHA-256 of the content)`` pairs
  only (order and location do not matter). Each pair is written as one line of a
  ``SHA256SUMS``-style listing (``<hex>  <path>``, the format PTB-XL publishes), and the
  fingerprint is the SHA-256 of that sorted listing under a scheme tag.
* :class:`DigestIndex` pays for the hashing once: each file's digest is remembered against its
  ``(size, mtime_ns, ctime_ns, inode)``, in ``digests.json`` beside the cache (never inside the
  dataset, which may be read-only). An unchanged dataset is then checked with one ``stat`` per
  file, as fast as the old stat-based fingerprint; a touched file is re-hashed once. ``ctime`` is
  in the key because no tool can set it: an in-place edit that restores the mtime is still seen.
* :func:`legacy_hash_file_stats` feeds the old identity (name, size and mtime of each record
  file), kept only to recognise caches and records written before content identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.errors import DataError

CONTENT_KIND = "content-sha256"
# What a manifest or record without a ``fingerprint_kind`` carries: the stat-based fingerprint.
LEGACY_KIND = "stat-mtime"
_SCHEME = f"ecg-ssl-bench data identity {CONTENT_KIND} v1\n"
_INDEX_NAME = "digests.json"
_INDEX_FORMAT = 1
_BLOCK = 1 << 20
# Below this many files to hash, a progress bar is noise.
_BAR_FROM = 200


def fingerprint_kind(manifest_or_dataset: dict) -> str:
    """The kind of a manifest's or a record's ``dataset`` fingerprint (old ones have none)."""
    return str(manifest_or_dataset.get("fingerprint_kind") or LEGACY_KIND)


def content_fingerprint(pairs: Iterable[tuple[str, str | None]]) -> str:
    """SHA-256 of the sorted ``<digest>  <path>`` listing of ``pairs`` (None: a missing file).

    Paths are relative and POSIX-style, so the same bytes give the same fingerprint wherever the
    dataset lies, on any platform.
    """
    lines = sorted(f"{digest or 'missing'}  {path}\n" for path, digest in pairs)
    h = hashlib.sha256(_SCHEME.encode())
    for line in lines:
        h.update(line.encode())
    return h.hexdigest()


def sha256_file(
    path: Path, on_read: Callable[[int], None] | None = None
) -> tuple[str, os.stat_result]:
    """The file's SHA-256 and its ``stat`` taken on the open file before reading;
    ``on_read(n)`` after each block of ``n`` bytes (a byte progress bar).

    Raises:
        DataError: the file vanished, cannot be read, or changed while it was read.
    """
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            h = hashlib.sha256()
            # hashlib releases the GIL on blocks this size: threads hash in parallel.
            while block := f.read(_BLOCK):
                h.update(block)
                if on_read is not None:
                    on_read(len(block))
            after = os.fstat(f.fileno())
    except FileNotFoundError:
        raise DataError(
            f"{path} vanished while the dataset was being hashed",
            hint="is something deleting or replacing files in the dataset? Run again once it is done",
        ) from None
    except OSError as exc:
        raise DataError(
            f"cannot read {path} to hash it: {exc.strerror or exc}",
            hint="check the dataset's file permissions",
        ) from None
    if _stat_key(before) != _stat_key(after):
        raise DataError(
            f"{path} changed while it was being hashed",
            hint="is something writing into the dataset? Run again once it is done",
        )
    return h.hexdigest(), before


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class DigestIndex:
    """``relative path -> (size, mtime_ns, ctime_ns, inode, sha256)`` of one dataset's files.

    Stored as ``<directory>/digests.json``; ``directory=None`` keeps it in memory only. The file
    is a memo: a missing, unreadable or foreign one is simply empty, and an entry whose key no
    longer matches the file is re-hashed.
    """

    def __init__(self, directory: Path | None, root: Path):
        self.path = None if directory is None else Path(directory) / _INDEX_NAME
        self.root = Path(root)
        self.entries: dict[str, list] = self._load()
        self.hashed = 0  # files hashed by this object (not found in the index)

    def _load(self) -> dict[str, list]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _INDEX_FORMAT:
            return {}
        if data.get("root") != str(self.root):  # another dataset's index: nothing to reuse
            return {}
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def digests(
        self, files: Sequence[Path], *, workers: int | None = None, progress: bool = False
    ) -> dict[str, str | None]:
        """``relative path -> sha256`` of ``files`` under the root (None: the file is absent).

        Files whose stat matches their index entry are not read; the others are hashed in a
        thread pool and the index is saved.
        """
        result: dict[str, str | None] = {}
        todo: list[tuple[str, Path]] = []
        for f in files:
            try:
                rel = Path(f).relative_to(self.root).as_posix()
            except ValueError:
                raise DataError(
                    f"{f} lies outside the dataset {self.root}",
                    hint="file names in the metadata must be relative to the dataset folder",
                ) from None
            try:
                st = os.stat(f)
            except FileNotFoundError:
                result[rel] = None
                continue
            except OSError as exc:
                raise DataError(f"cannot stat {f}: {exc.strerror or exc}") from None
            entry = self.entries.get(rel)
            if isinstance(entry, list) and len(entry) == 5 and entry[:4] == _stat_key(st):
                result[rel] = entry[4]
            else:
                todo.append((rel, Path(f)))
        if todo:
            fresh = self._hash(todo, workers, progress)
            for rel, (digest, st) in fresh.items():
                result[rel] = digest
                self.entries[rel] = [*_stat_key(st), digest]
            self.hashed += len(fresh)
            self._save({rel: self.entries[rel] for rel in fresh})
        return result

    def _hash(self, todo, workers, progress) -> dict[str, tuple[str, os.stat_result]]:
        from bench.progress import progress_bar

        workers = max(1, min(workers or min(8, 2 * (os.cpu_count() or 1)), len(todo)))
        bar = progress_bar(
            total=len(todo),
            desc=f"hashing {self.root.name}",
            unit="file",
            disable=not progress or len(todo) < _BAR_FROM,
        )
        out: dict[str, tuple[str, os.stat_result]] = {}
        try:
            if workers == 1:
                for rel, path in todo:
                    out[rel] = sha256_file(path)
                    bar.update(1)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    for (rel, _), res in zip(
                        todo, pool.map(sha256_file, [p for _, p in todo]), strict=True
                    ):
                        out[rel] = res
                        bar.update(1)
        finally:
            bar.close()
        return out

    def _save(self, fresh: dict[str, list]) -> None:
        """Merge ``fresh`` into the index file under a lock and replace it atomically.

        Two processes may hash at once (two rates, two runs): each re-reads the file under the
        lock and adds its own entries, so neither loses the other's. A failed write costs only
        a re-hash next time, so it is a warning, not an error.
        """
        if self.path is None:
            return
        from filelock import FileLock

        tmp = self.path.with_name(f".{_INDEX_NAME}.tmp-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.path.with_name(f".{_INDEX_NAME}.lock")), timeout=600):
                merged = {**self._load(), **fresh}
                data = {"format": _INDEX_FORMAT, "root": str(self.root), "files": merged}
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(data, f, separators=(",", ":"), sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
                self.entries = {**merged, **self.entries}
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            print(
                f"warning: could not save the digest index {self.path} ({exc.strerror or exc}); "
                "the dataset will be hashed again next time",
                file=sys.stderr,
            )


def legacy_hash_file_stats(h, files: Iterable[Path], root: Path) -> None:
    """Feed ``h`` each file's path under ``root``, size and mtime (``name:missing`` if absent).

    The identity before content fingerprints; kept to recognise old caches and records.
    """
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
        except FileNotFoundError:
            h.update(f"{f.name}:missing;".encode())
