"""The ``bench`` command line: the ``cli`` group, its commands (one module per command group)
and :func:`main`, which turns user errors into a message and a hint instead of a traceback.

Start-up must stay well under a second: only click is imported at module level; numpy, pandas,
torch, wfdb, mlflow ... are imported inside the commands that need them.

=============================  ===============================================================
:mod:`bench.cli.common`        shared options, opening the dataset, engine options
:mod:`bench.cli.data`          ``bench data download | synthetic | prepare | info | benchmark``
:mod:`bench.cli.pretrain`      ``bench pretrain``
:mod:`bench.cli.run`           ``bench run``, ``bench tune``
:mod:`bench.cli.report`        ``bench report``, ``bench compare``
:mod:`bench.cli.perf`          ``bench perf``
:mod:`bench.cli.reproduce`     ``bench reproduce``
:mod:`bench.cli.misc`          ``bench tasks``, ``bench protocols``, ``bench methods``, ``bench ui``
=============================  ===============================================================
"""

from __future__ import annotations

import errno
import sys

import click

from bench.cli import data, misc, perf, pretrain, report, reproduce, run
from bench.errors import BenchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ecg-ssl-bench", prog_name="bench")
def cli() -> None:
    """Benchmark harness for self-supervised learning on 12-lead ECG (PTB-XL)."""


for _command in (
    data.data,
    misc.tasks_command,
    pretrain.pretrain_command,
    run.run_command,
    run.tune_command,
    report.report_command,
    report.compare_command,
    perf.perf_command,
    reproduce.reproduce_command,
    misc.protocols_command,
    misc.ui_command,
    misc.methods_command,
):
    cli.add_command(_command)


# errno values of a failed write the user can fix: disk full, file too large (a quota or
# RLIMIT_FSIZE), read-only file system, permission denied, operation not permitted (immutable).
_STORAGE_ERRNOS = {
    errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print a message and hint, not a traceback."""
    try:
        try:
            cli.main(args=argv, prog_name="bench", standalone_mode=False)
        finally:
            _say_what_was_not_tracked()
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BenchError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(
            "interrupted: nothing half-written was kept; run the same command again to continue",
            err=True,
        )
        sys.exit(130)
    except OSError as exc:
        # A full disk, a file-size limit or a read-only / unwritable results directory: every
        # writer publishes through a temporary file and a rename, so what exists is whole.
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        click.echo(f"error: {storage_error_message(exc)}", err=True)
        click.echo(
            "  hint: free disk space, or choose a writable results directory "
            "(BENCH_RESULTS_DIR=DIR); nothing half-written was kept, and the same command "
            "continues where it stopped",
            err=True,
        )
        sys.exit(1)
    except Exception as exc:
        # The same failure inside a SQLite store (MLflow's or Optuna's) arrives as
        # sqlite3.OperationalError wrapped by SQLAlchemy / MLflow, not as an OSError.
        reason = sqlite_storage_failure(exc)
        if reason is None:
            raise
        click.echo(f"error: cannot write a SQLite store (MLflow or Optuna): {reason}", err=True)
        click.echo(
            "  hint: free disk space, or choose a writable results directory "
            "(BENCH_RESULTS_DIR=DIR) or store (--tracking-uri / --storage); a new store is "
            "created whole or not at all, and the same command continues where it stopped",
            err=True,
        )
        sys.exit(1)


def _say_what_was_not_tracked() -> None:
    """Once per command, the runs a lost MLflow server did not track (bench.tracking)."""
    tracking = sys.modules.get("bench.tracking")  # never imported: nothing was tracked
    note = tracking.untracked_note() if tracking is not None else None
    if note:
        click.echo(note, err=True)


# What SQLite reports when it cannot write its file: ENOSPC, EFBIG (a quota or RLIMIT_FSIZE),
# EROFS / EACCES.
_SQLITE_WRITE_FAILURES = (
    "database or disk is full",
    "disk i/o error",
    "attempt to write a readonly database",
    "unable to open database file",
)


def sqlite_storage_failure(exc: BaseException) -> str | None:
    """SQLite's message if ``exc`` is, or was caused by, a failed write of a SQLite file."""
    import sqlite3

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error):
            message = str(current)
            if message.lower() in _SQLITE_WRITE_FAILURES:
                return message
        current = current.__cause__ or current.__context__
    return None


def storage_error_message(exc: OSError) -> str:
    """``cannot write <path>: <reason> (<ERRNO>)`` for a failed write."""
    import os

    from bench.paths import results_dir

    where = exc.filename or f"under {results_dir()}"
    reason = exc.strerror or os.strerror(exc.errno)
    return f"cannot write {where}: {reason} ({errno.errorcode.get(exc.errno, exc.errno)})"
