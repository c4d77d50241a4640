"""Download, verify and unpack PTB-XL from PhysioNet.

PTB-XL v1.0.3 is published as one ~1.7 GB zip whose files sit under a single top-level folder.
:func:`download_ptbxl` fetches it resumably (an interrupted run continues where it stopped),
unpacks it into a temporary sibling of the destination, checks the SHA-256 of every file the
release lists, and only then moves the tree onto the destination. A destination therefore either
holds a complete, verified dataset (marked by :data:`MARKER_NAME`) or does not exist.

Only the standard library is used for HTTP (``urllib``), so the download works wherever the
harness is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from bench.data.identity import sha256_file
from bench.errors import DownloadError
from bench.progress import progress_bar

log = logging.getLogger(__name__)

PTBXL_VERSION = "1.0.3"
PTBXL_ZIP_URL = (
    "https://physionet.org/static/published-projects/ptb-xl/"
    f"ptb-xl-a-large-publicly-available-electrocardiography-dataset-{PTBXL_VERSION}.zip"
)
PTBXL_SUMS_URL = f"https://physionet.org/files/ptb-xl/{PTBXL_VERSION}/SHA256SUMS.txt"

#: Written into a finished dataset directory; its presence means "complete and verified".
MARKER_NAME = ".bench-download.json"
#: Name of the checksum file shipped inside the PTB-XL release.
SUMS_NAME = "SHA256SUMS.txt"
#: Folder next to the destination where the zip (and its ``.part``) is kept between runs.
DOWNLOADS_DIR = ".downloads"

_USER_AGENT = "ecg-ssl-bench (+https://physionet.org/content/ptb-xl/)"
# A checksum file larger than this is certainly the wrong URL (PTB-XL's is ~4 MB).
_MAX_SUMS_BYTES = 64 << 20
_HASH_CHUNK = 1 << 20
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64})[ \t]+\*?(.+)$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes\s+\*/(\d+)$")
_MAX_LISTED = 10


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def _open(url: str, headers: dict[str, str], timeout: float) -> http.client.HTTPResponse:
    """``urlopen`` with every failure turned into a :class:`DownloadError` naming ``url``.

    :class:`urllib.error.HTTPError` is re-raised untouched so callers can inspect the status
    (a 416 on resume is not an error for :func:`download_file`).
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, **headers})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"could not connect to {url}: {exc.reason}",
            hint="check the network connection and the URL (--url / --sums-url), then retry",
        ) from exc
    except ValueError as exc:  # e.g. "unknown url type"
        raise DownloadError(
            f"invalid download URL {url!r}: {exc}", hint="pass a full http(s):// URL"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets before headers
        raise DownloadError(
            f"could not download {url}: {exc}", hint="check the network connection and retry"
        ) from exc


def _http_error(url: str, exc: urllib.error.HTTPError) -> DownloadError:
    hint = (
        "check the URL (--url / --sums-url); PhysioNet may have moved the file"
        if exc.code in (403, 404, 410)
        else "the server may be temporarily unavailable; retry later"
    )
    return DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}", hint=hint)


def _parse_content_range(value: str | None, url: str) -> tuple[int, int | None]:
    """``Content-Range: bytes START-END/TOTAL`` -> ``(START, TOTAL or None)``."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if not match:
        raise DownloadError(
            f"server for {url} answered a resume request with a malformed Content-Range "
            f"header {value!r}",
            hint="delete the .part file next to the download and run the command again",
        )
    total = match.group(3)
    return int(match.group(1)), (None if total == "*" else int(total))


def download_file(
    url: str,
    dest: Path,
    *,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest``, resuming an earlier partial download if there is one.

    Bytes go to ``dest`` + ``.part``; when that file already exists the request carries
    ``Range: bytes=<size>-`` and the answer is appended (206) or, if the server ignores ranges
    (200), the download restarts from zero. The received size is checked against the announced
    ``Content-Length`` / ``Content-Range`` total; a connection that ends early raises
    :class:`DownloadError` and keeps the ``.part`` so that the next call resumes. ``dest``
    appears only once the file is complete.

    Args:
        url: what to fetch (http, https or file URL).
        dest: final path of the file; its folder is created if needed.
        progress: show a tqdm progress bar (on stderr).
        chunk_size: bytes per read.
        timeout: seconds to wait for the connection and for each read.

    Returns:
        ``dest``.

    Raises:
        DownloadError: HTTP error, unreachable server, or truncated transfer.
    """
    dest = Path(dest)
    part = dest.with_suffix(dest.suffix + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)

    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _open(url, headers, timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code != 416 or not offset:
                raise _http_error(url, exc) from exc
            # 416: nothing left after `offset`. Either the .part is already whole (a run killed
            # between the last byte and the rename) or it is longer than the file: start over.
            match = _UNSATISFIED_RANGE.match((exc.headers.get("Content-Range") or "").strip())
        if match and int(match.group(1)) == offset:
            part.replace(dest)
            return dest
        part.unlink()
        return download_file(url, dest, progress=progress, chunk_size=chunk_size, timeout=timeout)

    with response:
        # file:// responses have no status; they behave like a 200 (no range support).
        status = response.status or 200
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"), url)
            if start != offset:
                # The server resumed somewhere else than asked: appending would corrupt the file.
                response.close()
                part.unlink(missing_ok=True)
                return download_file(
                    url, dest, progress=progress, chunk_size=chunk_size, timeout=timeout
                )
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        elif status == 200:
            if offset:
                log.info("server ignored the resume request for %s; restarting from zero", url)
            offset, total, mode = 0, length, "wb"
        else:
            raise DownloadError(
                f"download of {url} failed: unexpected HTTP status {status}",
                hint="check the URL (--url) and retry",
            )

        received = offset
        failure: BaseException | None = None
        with (
            open(part, mode) as out,
            progress_bar(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, http.client.HTTPException) as exc:
                    # Only network errors count as truncation; disk errors from write() propagate.
                    failure = exc
                    break
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))

    if total is not None and received > total:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"download of {url} is corrupt: received {received} bytes but the server announced "
            f"{total}",
            hint="run the same command again to download it afresh",
        )
    if failure is not None or (total is not None and received < total):
        expected = f"{total}" if total is not None else "an unknown number of"
        reason = f" ({failure})" if failure is not None else ""
        raise DownloadError(
            f"download of {url} truncated: connection ended after {received} of {expected} "
            f"bytes{reason}",
            hint=f"run the same command again to resume (the partial file {part} is kept)",
        )
    part.replace(dest)
    return dest


def _fetch_text(url: str, *, timeout: float = 60) -> str:
    """Fetch a small text file (the checksum list) into memory."""
    try:
        response = _open(url, {}, timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            raise _http_error(url, exc) from exc
    with response:
        length = response.headers.get("Content-Length")
        try:
            data = response.read(_MAX_SUMS_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"download of {url} failed: {exc}", hint="check the network connection and retry"
            ) from exc
    # A cut-short list would silently leave files unchecked, so insist on all of it.
    if length and length.isdigit() and len(data) < int(length):
        raise DownloadError(
            f"download of {url} truncated: got {len(data)} of {length} bytes",
            hint="run the same command again",
        )
    if len(data) > _MAX_SUMS_BYTES:
        raise DownloadError(
            f"{url} is larger than {_MAX_SUMS_BYTES >> 20} MiB; it is not a checksum file",
            hint="pass the URL of the release's SHA256SUMS.txt as --sums-url",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DownloadError(
            f"{url} is not a text checksum file (not UTF-8)",
            hint="pass the URL of the release's SHA256SUMS.txt as --sums-url",
        ) from exc


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def _is_unsafe(relpath: str) -> bool:
    """True for paths that could escape the folder they are joined to."""
    posix = PurePosixPath(relpath)
    return (
        relpath.startswith(("/", "\\"))
        or bool(PureWindowsPath(relpath).drive)
        or ".." in posix.parts
        or ".." in PureWindowsPath(relpath).parts
    )


def parse_sha256sums(text: str) -> dict[str, str]:
    """Parse ``sha256sum``-style text (``<64 hex> <relative/path>`` per line).

    Accepts one or more spaces (or a tab) between hash and path, the ``*`` binary-mode marker,
    a leading ``./``, CRLF line ends and blank lines. Hashes are returned lower-case.

    Returns:
        relative POSIX path -> hex digest.

    Raises:
        DownloadError: a malformed line (named by its number), an unsafe path (absolute or with
            ``..``), a path listed twice with different hashes, or no entries at all.
    """
    sums: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _SUMS_LINE.match(line)
        if not match:
            raise DownloadError(
                f"malformed checksum line {lineno}: {raw[:120]!r} (expected '<sha256 hex> <path>')",
                hint="check that --sums-url points at the release's SHA256SUMS.txt",
            )
        digest, path = match.group(1).lower(), match.group(2).strip()
        while path.startswith("./"):
            path = path[2:]
        if not path or _is_unsafe(path):
            raise DownloadError(
                f"checksum line {lineno} names an unsafe path {path!r}",
                hint="check that --sums-url points at the release's SHA256SUMS.txt",
            )
        if sums.get(path, digest) != digest:
            raise DownloadError(
                f"checksum file lists {path!r} twice with different hashes (line {lineno})",
                hint="check that --sums-url points at the release's SHA256SUMS.txt",
            )
        sums[path] = digest
    if not sums:
        raise DownloadError(
            "checksum file lists no files",
            hint="check that --sums-url points at the release's SHA256SUMS.txt",
        )
    return sums


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _verify(root: Path, sums: dict[str, str], *, progress: bool) -> tuple[list[str], list[str]]:
    """Hash every listed file under ``root``; return ``(missing, mismatched)`` paths."""
    missing = sorted(rel for rel in sums if not (root / rel).is_file())
    present = sorted(set(sums) - set(missing))
    total = sum((root / rel).stat().st_size for rel in present)
    mismatched = []
    with progress_bar(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="verifying",
        disable=not progress,
        leave=False,
    ) as bar:
        for rel in present:
            if sha256_file(root / rel, on_read=bar.update)[0] != sums[rel]:
                mismatched.append(rel)
    return missing, mismatched


# --------------------------------------------------------------------------------------------
# Zip extraction
# --------------------------------------------------------------------------------------------


def _extract(zip_path: Path, into: Path) -> int:
    """Extract ``zip_path`` into ``into``, dropping a single top-level folder if there is one.

    Every member name is checked before anything is written, so a zip-slip archive leaves no
    file behind. Returns the number of files written.

    Raises:
        DownloadError: unsafe member path.
        zipfile.BadZipFile, zlib.error, EOFError: corrupt archive (handled by the caller).
    """
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        for info in members:
            if _is_unsafe(info.filename):
                raise DownloadError(
                    f"{zip_path.name} contains an unsafe path {info.filename!r} (absolute or "
                    "with '..'); refusing to extract it",
                    hint="check --url: this is not the PhysioNet PTB-XL release",
                )
        # PhysioNet wraps the release in one folder; strip it so `dest` is the dataset root.
        tops = {PurePosixPath(info.filename).parts[0] for info in members if info.filename}
        strip = len(tops) == 1 and all("/" in info.filename for info in members)
        written = 0
        for info in members:
            parts = PurePosixPath(info.filename).parts[1 if strip else 0 :]
            if not parts:
                continue
            target = into.joinpath(*parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _HASH_CHUNK)
            written += 1
        return written


# --------------------------------------------------------------------------------------------
# PTB-XL
# --------------------------------------------------------------------------------------------


def _read_marker(dest: Path) -> dict | None:
    try:
        marker = json.loads((dest / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _check_dest_free(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(
            f"{dest} already exists and is not an empty folder (nor a completed PTB-XL "
            f"{PTBXL_VERSION} download)",
            hint="choose another --dest, or delete/empty that folder first",
        )


def _zip_name(url: str) -> str:
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    # Keyed on the URL's file name so a different --url never resumes someone else's .part.
    return name if re.fullmatch(r"[\w.\-]+", name or "") else f"ptb-xl-{PTBXL_VERSION}.zip"


def download_ptbxl(
    dest: Path,
    *,
    url: str = PTBXL_ZIP_URL,
    sums_url: str | None = PTBXL_SUMS_URL,
    progress: bool = True,
    keep_zip: bool = False,
) -> Path:
    """Download PTB-XL v1.0.3 into ``dest`` and verify every file against the release checksums.

    Idempotent: if ``dest`` already holds a completed download (its :data:`MARKER_NAME` names
    this version) it is returned at once, without network access. Otherwise the zip is fetched
    into ``dest.parent/.downloads/`` (resumable across runs), unpacked into a temporary sibling
    of ``dest`` with the top-level folder stripped, checked file by file against the SHA-256
    list, and only then renamed onto ``dest``. On failure neither ``dest`` nor the temporary
    folder remains; the zip is deleted when it is corrupt or does not match the checksums, and
    a truncated download keeps its ``.part`` for the next run.

    Args:
        dest: folder to hold the dataset (``ptbxl_database.csv``, ``records100/`` ...); it must
            not exist or be empty.
        url: the release zip.
        sums_url: the release's ``SHA256SUMS.txt``. ``None`` uses the copy inside the zip,
            which only guards against corruption, not against a tampered or wrong archive.
        progress: show tqdm progress bars.
        keep_zip: keep the downloaded zip in ``.downloads/`` after success.

    Returns:
        ``dest``.

    Raises:
        DownloadError: network/HTTP failure, truncated or corrupt download, checksum mismatch,
            unsafe archive, or a ``dest`` that is occupied by something else.
    """
    dest = Path(dest).expanduser()
    marker = _read_marker(dest)
    if marker is not None and marker.get("dataset") == "ptb-xl":
        if marker.get("version") == PTBXL_VERSION:
            return dest
        raise DownloadError(
            f"{dest} holds PTB-XL version {marker.get('version')}, not {PTBXL_VERSION}",
            hint="choose another --dest, or delete that folder to replace it",
        )
    # Fail before spending an hour on a download that could not be installed anyway.
    _check_dest_free(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    # Fetch the (small) checksum list first so a wrong --sums-url fails fast.
    sums_text = _fetch_text(sums_url) if sums_url is not None else None
    sums = parse_sha256sums(sums_text) if sums_text is not None else None

    downloads = dest.parent / DOWNLOADS_DIR
    zip_path = downloads / _zip_name(url)
    if zip_path.is_file():
        # Only complete downloads get this name (.part is renamed at the end), e.g. a run that
        # was killed while extracting; a bad one is deleted by the checks below.
        log.info("using the previously downloaded %s", zip_path)
    else:
        download_file(url, zip_path, progress=progress)

    # Not tempfile.mkdtemp: its 0o700 mode would end up on `dest`; mkdir honours the umask.
    staging = dest.parent / f".{dest.name}.extracting-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        try:
            n_files = _extract(zip_path, staging)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            zip_path.unlink(missing_ok=True)
            raise DownloadError(
                f"downloaded file from {url} is not a valid zip archive or is corrupt ({exc}); "
                "it has been deleted",
                hint="run the same command again to download it afresh; if this repeats, check "
                "--url",
            ) from exc
        except OSError as exc:
            raise DownloadError(
                f"could not extract {zip_path} into {dest.parent}: {exc}",
                hint="check free disk space and write permission, then run the command again",
            ) from exc

        if sums is None:
            inner = staging / SUMS_NAME
            if not inner.is_file():
                raise DownloadError(
                    f"the archive from {url} contains no {SUMS_NAME} and no --sums-url was given",
                    hint=f"pass --sums-url {PTBXL_SUMS_URL}",
                )
            sums_text = inner.read_text(encoding="utf-8", errors="replace")
            sums = parse_sha256sums(sums_text)
            log.warning(
                "verifying against the %s inside the archive: this only detects corruption, "
                "not a wrong or tampered archive (pass a checksum URL to check against the "
                "published list)",
                SUMS_NAME,
            )

        missing, mismatched = _verify(staging, sums, progress=progress)
        if missing or mismatched:
            zip_path.unlink(missing_ok=True)
            problems = []
            if missing:
                problems.append(f"missing from the archive: {_listing(missing)}")
            if mismatched:
                problems.append(f"SHA-256 mismatch: {_listing(mismatched)}")
            raise DownloadError(
                f"PTB-XL download from {url} failed verification ({'; '.join(problems)}); "
                "the downloaded zip has been deleted",
                hint="run the same command again to download it afresh; if this repeats, check "
                "that --url and --sums-url name the same release",
            )

        assert sums_text is not None
        (staging / MARKER_NAME).write_text(
            json.dumps(
                {
                    "dataset": "ptb-xl",
                    "version": PTBXL_VERSION,
                    "url": url,
                    "sums_url": sums_url,
                    "sums_sha256": hashlib.sha256(sums_text.encode("utf-8")).hexdigest(),
                    "files_verified": len(sums),
                    "files_extracted": n_files,
                    "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        # Re-check: another process may have filled `dest` while we were downloading.
        _check_dest_free(dest)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

    if not keep_zip:
        zip_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # only if empty: other downloads may be resuming there
            downloads.rmdir()
    return dest
