"""PTB-XL on disk: locate the release, read and validate its metadata and WFDB records.

The same reader serves the official release (v1.0.1 / v1.0.3), the real subset in
``../shared/data/ptb-xl`` and the embedded synthetic dataset, which is written in the release's
exact layout. Nothing here knows about tasks or models.

Layout (Wagner et al. 2020): ``ptbxl_database.csv`` indexed by ``ecg_id`` with ``scp_codes`` (a
Python dict literal), ``strat_fold`` (1-10, patient-wise), ``filename_lr`` / ``filename_hr``
(record paths without extension at 100 / 500 Hz); ``scp_statements.csv`` indexed by SCP code;
records of 10 s in the lead order I, II, III, AVR, AVL, AVF, V1-V6, in mV.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import DataError
from bench.paths import DATA_ENV

LEADS_12: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "AVR",
    "AVL",
    "AVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)
# ECG-JEPA's 8 independent leads: III and the augmented limb leads are linear combinations of I, II.
LEADS_8: tuple[str, ...] = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
RECORD_SECONDS = 10
# Native sampling rates of the release and the metadata column naming each record's files.
NATIVE_RATES: dict[int, str] = {100: "filename_lr", 500: "filename_hr"}
REQUIRED_COLUMNS = ("patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
SYNTHETIC_MARKER = "SYNTHETIC.json"
# Record counts of the official releases, used to name the version a result was computed on.
RELEASE_SIZES = {21799: "1.0.3", 21837: "1.0.1"}

DOWNLOAD_HINT = (
    "download PTB-XL (about 1.7 GB) with `bench data download ptbxl --dest DIR` "
    "(or from https://physionet.org/content/ptb-xl/1.0.3/), then pass --data-dir DIR or set "
    f"{DATA_ENV}=DIR; without either, the harness uses its embedded synthetic dataset"
)


class RecordError(Exception):
    """One record failed validation; ``reason`` says how."""

    def __init__(self, ecg_id: int, reason: str):
        super().__init__(f"ecg_id {ecg_id}: {reason}")
        self.ecg_id = ecg_id
        self.reason = reason


def format_bad_records(problems: Mapping[int, str], limit: int = 10) -> str:
    """A readable, bounded list of bad records: ``ecg_id 12: truncated .dat; ... (and 40 more)``."""
    items = sorted(problems.items())
    shown = "; ".join(f"ecg_id {i}: {r}" for i, r in items[:limit])
    more = len(items) - limit
    return shown + (f"; ... and {more} more" if more > 0 else "")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The dataset root from the option, else ``$PTBXL_DIR``, else None (= embedded synthetic)."""
    value = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV) or None
    return Path(value).expanduser().resolve() if value else None


def parse_scp_codes(text: object) -> dict[str, float]:
    """Parse one ``scp_codes`` cell, a Python dict literal ``{code: likelihood}``.

    Uses ``ast.literal_eval`` (never ``eval``). Raises ValueError for anything but a dict of
    string keys to numbers.
    """
    if not isinstance(text, str):
        raise ValueError(f"scp_codes is empty or not text ({text!r})")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(
            f"scp_codes {text!r} is not a Python dict literal ({exc.__class__.__name__})"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"scp_codes {text!r} is a {type(value).__name__}, not a dict")
    out: dict[str, float] = {}
    for key, like in value.items():
        if not isinstance(key, str) or not isinstance(like, int | float) or isinstance(like, bool):
            raise ValueError(f"scp_codes entry {key!r}: {like!r} is not code: number")
        out[key] = float(like)
    return out


@dataclass
class PTBXL:
    """A PTB-XL-layout dataset directory.

    Args:
        root: the directory holding ``ptbxl_database.csv``.
        skip_bad: drop metadata rows that fail validation (counted in ``skipped``) instead of
            raising a DataError that names them.
    """

    root: Path
    skip_bad: bool = False
    _skipped: dict[int, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()
        if not self.root.is_dir():
            raise DataError(f"PTB-XL directory {self.root} does not exist", hint=DOWNLOAD_HINT)
        for name in ("ptbxl_database.csv", "scp_statements.csv"):
            if not (self.root / name).is_file():
                raise DataError(
                    f"{self.root} is not a PTB-XL directory: {name} is missing", hint=DOWNLOAD_HINT
                )

    # ----------------------------------------------------------------- identity
    @property
    def is_synthetic(self) -> bool:
        return (self.root / SYNTHETIC_MARKER).is_file()

    @cached_property
    def name(self) -> str:
        """What a result was computed on: ``synthetic (...)``, ``PTB-XL v1.0.3`` or a subset."""
        if self.is_synthetic:
            info = json.loads((self.root / SYNTHETIC_MARKER).read_text())
            return f"synthetic (n={info.get('n')}, seed={info.get('seed')}, v{info.get('version')})"
        n = len(self.metadata) + len(self.skipped)
        for size, version in RELEASE_SIZES.items():
            if n == size:
                return f"PTB-XL v{version}"
        return f"PTB-XL subset ({n} records)"

    @property
    def skipped(self) -> dict[int, str]:
        """Metadata rows left out by ``skip_bad`` (``ecg_id`` -> reason). Reading it loads the
        metadata first, so a count reported before anything else touched it is never empty."""
        _ = self.metadata
        return self._skipped

    # ----------------------------------------------------------------- tables
    @cached_property
    def statements(self) -> pd.DataFrame:
        """``scp_statements.csv`` indexed by SCP code (71 rows in the release)."""
        path = self.root / "scp_statements.csv"
        try:
            table = pd.read_csv(path, index_col=0)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(
                f"{path} cannot be parsed: {exc}", hint="re-download the dataset"
            ) from None
        missing = {"diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"} - set(
            table.columns
        )
        if missing:
            raise DataError(
                f"{path} lacks columns {sorted(missing)}", hint="re-download the dataset"
            )
        return table

    @cached_property
    def metadata(self) -> pd.DataFrame:
        """``ptbxl_database.csv`` indexed by ``ecg_id``, ``scp_codes`` parsed to dicts.

        Rows with an unparsable ``scp_codes``, an unknown SCP code or a fold outside 1-10 raise
        a DataError naming their ids, or are dropped into ``skipped`` with ``skip_bad``.
        """
        path = self.root / "ptbxl_database.csv"
        try:
            table = pd.read_csv(path, index_col="ecg_id")
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(
                f"{path} cannot be parsed: {exc}", hint="re-download the dataset"
            ) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise DataError(f"{path} lacks columns {missing}", hint="re-download the dataset")
        if not pd.api.types.is_integer_dtype(table.index) or table.index.has_duplicates:
            # Name the offending rows (line 1 is the header): a stray line break inside a cell
            # shows up here as a row whose ecg_id is not an integer.
            ids = pd.Series(table.index)
            numeric = pd.to_numeric(ids, errors="coerce")
            bad = ids[numeric.isna() | (numeric % 1 != 0) | numeric.duplicated(keep=False)]
            lines = ", ".join(f"line {i + 2} ({v!r})" for i, v in bad.head(5).items())
            raise DataError(
                f"{path}: ecg_id must be unique integers; bad rows: {lines}"
                + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""),
                hint="a cell with a line break or a broken row; repair the file or re-download "
                "the dataset",
            )

        known = set(self.statements.index)
        problems: dict[int, str] = {}
        parsed: dict[int, dict[str, float]] = {}
        for ecg_id, text in table["scp_codes"].items():
            try:
                codes = parse_scp_codes(text)
            except ValueError as exc:
                problems[int(ecg_id)] = str(exc)
                continue
            unknown = sorted(set(codes) - known)
            if unknown:
                problems[int(ecg_id)] = f"unknown SCP codes {unknown}"
                continue
            parsed[int(ecg_id)] = codes
        folds = pd.to_numeric(table["strat_fold"], errors="coerce")
        for ecg_id in table.index[~folds.isin(range(1, 11))]:
            problems.setdefault(
                int(ecg_id), f"strat_fold {table.at[ecg_id, 'strat_fold']!r} is not 1-10"
            )
        if problems and not self.skip_bad:
            raise DataError(
                f"{path}: {len(problems)} bad rows: {format_bad_records(problems)}",
                hint="fix the rows, or pass --skip-bad to skip them",
            )
        self._skipped.update(problems)
        table = table.drop(index=list(problems)).copy()
        table["scp_codes"] = [parsed[int(i)] for i in table.index]
        table["strat_fold"] = folds.loc[table.index].astype(int)
        return table

    # ----------------------------------------------------------------- records
    def native_rates(self) -> list[int]:
        """Native sampling rates with a records folder present."""
        return [r for r in NATIVE_RATES if (self.root / f"records{r}").is_dir()]

    def record_base(self, ecg_id: int, rate: int) -> Path:
        """Record path without extension at a native ``rate``."""
        if rate not in NATIVE_RATES:
            raise DataError(
                f"{rate} Hz is not a native PTB-XL rate", hint=f"use one of {list(NATIVE_RATES)}"
            )
        return self.root / str(self.metadata.at[ecg_id, NATIVE_RATES[rate]])

    def read_record(self, ecg_id: int, rate: int) -> np.ndarray:
        """One validated record, ``(12, rate * 10)`` float32 in mV. Raises RecordError."""
        return read_wfdb_record(self.record_base(ecg_id, rate), rate, ecg_id)

    def record_files(self, ecg_ids: Iterable[int], rate: int) -> list[Path]:
        """The ``.hea`` and ``.dat`` files of ``ecg_ids`` at a native rate (for fingerprints)."""
        files = []
        for ecg_id in ecg_ids:
            base = self.record_base(ecg_id, rate)
            files += [base.with_name(base.name + ".hea"), base.with_name(base.name + ".dat")]
        return files


def read_wfdb_record(base: Path, rate: int, ecg_id: int = -1) -> np.ndarray:
    """Read and validate one 10 s, 12-lead WFDB record.

    Args:
        base: record path without extension.
        rate: expected sampling rate in Hz.
    Returns:
        ``(12, rate * 10)`` float32 array in mV, leads in :data:`LEADS_12` order.
    Raises:
        RecordError: missing files, wrong leads / rate / length / units, truncated data, NaN/inf,
            flat (constant) leads.
    """
    import wfdb  # imported here: the CLI must start fast

    hea, dat = base.with_name(base.name + ".hea"), base.with_name(base.name + ".dat")
    for f in (hea, dat):
        if not f.is_file():
            raise RecordError(ecg_id, f"missing file {f.name}")
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises assorted types on malformed headers
        raise RecordError(ecg_id, f"unreadable header {hea.name} ({exc})") from None
    names = tuple(str(s).upper() for s in (header.sig_name or ()))
    if names != LEADS_12:
        raise RecordError(ecg_id, f"leads {list(names)}, expected {list(LEADS_12)}")
    if header.fs != rate:
        raise RecordError(ecg_id, f"sampling rate {header.fs:g} Hz, expected {rate} Hz")
    expected_len = rate * RECORD_SECONDS
    if header.sig_len != expected_len:
        raise RecordError(ecg_id, f"{header.sig_len} samples, expected {expected_len}")
    units = {str(u).lower() for u in header.units}
    if units != {"mv"}:
        raise RecordError(ecg_id, f"units {sorted(units)}, expected mV")
    if set(header.fmt) == {"16"}:
        # wfdb pads a truncated file with garbage or fails obscurely: check the size first.
        expected_bytes = expected_len * len(LEADS_12) * 2
        actual = dat.stat().st_size
        if actual < expected_bytes:
            raise RecordError(ecg_id, f"truncated {dat.name} ({actual} of {expected_bytes} bytes)")
    try:
        signal = wfdb.rdrecord(str(base), physical=True).p_signal
    except Exception as exc:
        raise RecordError(ecg_id, f"unreadable signal {dat.name} ({exc})") from None
    if signal is None or signal.shape != (expected_len, len(LEADS_12)):
        shape = None if signal is None else signal.shape
        raise RecordError(ecg_id, f"signal shape {shape}, expected ({expected_len}, 12)")
    finite = np.isfinite(signal)
    if not finite.all():
        bad = [LEADS_12[i] for i in np.flatnonzero(~finite.all(axis=0))]
        raise RecordError(ecg_id, f"NaN/inf samples in leads {bad}")
    # A lead that never moves (all zeros, one constant) is a disconnected electrode or a
    # zero-filled file, not an ECG: per-lead normalisation would divide by a zero deviation.
    flat = signal.max(axis=0) == signal.min(axis=0)
    if flat.any():
        leads = [LEADS_12[i] for i in np.flatnonzero(flat)]
        raise RecordError(ecg_id, f"flat (constant, e.g. all-zero) signal in leads {leads}")
    return np.ascontiguousarray(signal.T, dtype=np.float32)
