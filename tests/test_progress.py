"""Progress output: tqdm bars on a terminal, plain lines at most every ~30 s in a log file."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import bench.progress as progress
from bench.progress import LineProgress, progress_bar


class FakeClock:
    """tqdm's clock (``bar._time``), advanced by hand: the interval is tested without waiting."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_log_file_gets_a_line_at_most_every_interval_and_one_at_the_end():
    log = io.StringIO()  # not a terminal
    bar = progress_bar(total=100, desc="pretrain jepa", unit="step", file=log)
    assert isinstance(bar, LineProgress)
    clock = FakeClock(bar.last_print_t)  # the real time of the first line
    bar._time = clock
    for step in range(100):
        clock.now += 1.0  # one step a second: 100 s in all
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}")  # redraws at once on a terminal: not here
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # the start, one per 30 s (30, 60, 90) and the end: never one per update
    assert len(lines) == 5, lines
    assert lines[0].startswith("pretrain jepa:   0%")
    assert "100/100" in lines[-1] and "loss=0.0100" in lines[-1]
    assert all(line.startswith("pretrain jepa:") for line in lines)


def test_the_last_line_is_not_written_twice(monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # every update is due
    log = io.StringIO()
    with progress_bar(total=3, desc="verifying", file=log, leave=False) as bar:
        for _ in range(3):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert [line.split("|")[0].split() for line in lines] == [
        ["verifying:", f"{p}%"] for p in ("0", "33", "67", "100")
    ]


def test_disabled_bars_write_nothing():
    log = io.StringIO()
    with progress_bar(range(10), file=log, disable=True) as bar:
        for _ in bar:
            pass
    assert log.getvalue() == ""


_PROGRAM = """
from bench.progress import progress_bar
for _ in progress_bar(range(2000), desc="work", mininterval=0):
    pass
"""


def test_a_terminal_keeps_the_redrawn_bar():
    """A real pseudo-terminal on stderr: tqdm's carriage-return bar, as before."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        proc = subprocess.Popen([sys.executable, "-c", _PROGRAM], stderr=secondary)
        os.close(secondary)
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(primary)
    assert b"\r" in out and b"2000/2000" in out


def test_a_command_writing_to_a_log_file_writes_lines(tmp_path):
    """The real CLI with stderr redirected to a file, as a scheduler runs a job."""
    log = tmp_path / "job.log"
    with open(log, "w") as err:
        subprocess.run(
            [sys.executable, "-m", "bench", "data", "synthetic", "--n", "40",
             "--dest", str(tmp_path / "syn")],
            stderr=err, stdout=subprocess.DEVNULL, check=True, timeout=300,
        )  # fmt: skip
    text = log.read_text()
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("synthetic PTB-XL")]
    assert 1 <= len(lines) <= 3 and "40/40" in lines[-1], text
