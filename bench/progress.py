"""Progress bars that suit where the output goes.

On a terminal, tqdm's bar. Anywhere else (a scheduler's log file, a pipe), a bar's carriage-return
updates pile up in the file (a smoke budget sweep wrote 1.25 MB of them for 6,436 steps), so
there :func:`progress_bar` prints whole lines instead: one when the work starts, at most one
every :data:`LOG_INTERVAL_S` seconds, and one at the end, each the bar's usual text
(``pretrain jepa:  42%|...| 420/1000 [01:03<01:27, 6.6step/s, loss=0.4123]``).
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # seconds between two lines of a log file


class _Lines:
    """A file wrapper turning tqdm's ``\\r``-redrawn bar into one line per display; the blank
    redraws tqdm uses to clear a bar are dropped."""

    def __init__(self, out) -> None:
        self.out = out

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.out.write(line + "\n")

    def flush(self) -> None:
        self.out.flush()


class TerminalProgress(tqdm):
    """tqdm without its monitor thread: a thread alive at the next ``fork`` would force the
    synthetic generator's pool to 'spawn', and in a log it would redraw every ``maxinterval``."""

    monitor_interval = 0


class LineProgress(TerminalProgress):
    """tqdm writing whole lines, at most one per :data:`LOG_INTERVAL_S` (plus the first and the
    last): for output that is not a terminal."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["file"] = _Lines(kwargs.get("file") or sys.stderr)
        kwargs["mininterval"] = kwargs["maxinterval"] = LOG_INTERVAL_S
        kwargs["leave"] = True  # the last line is the one a log reader wants
        kwargs["ascii"] = True  # a log file has no use for block characters
        kwargs.setdefault("dynamic_ncols", False)
        kwargs["ncols"] = kwargs.get("ncols") or 100
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        if not self.disable and getattr(self, "last_print_n", None) == self.n:
            self.leave = False  # the last line is already written: no copy of it
        super().close()

    # A postfix or description change redraws at once in tqdm; here it waits for the next line.
    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc=None, refresh=True) -> None:
        super().set_description(desc, refresh=False)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` (without monitor thread) on a terminal, :class:`LineProgress` elsewhere (the stream
    is ``kwargs["file"]``, default stderr). ``disable=True`` is honoured by both."""
    stream = kwargs.get("file") or sys.stderr
    cls = TerminalProgress if _is_terminal(stream) else LineProgress
    return cls(iterable, **kwargs)
