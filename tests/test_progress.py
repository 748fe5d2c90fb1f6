"""Progress lines: elapsed and an estimate on a terminal, nothing at all anywhere else."""

from __future__ import annotations

import io

from netlab.cli.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_the_line_shows_elapsed_and_an_estimate() -> None:
    stream, clock = Terminal(), Clock()
    progress = Progress(4, stream, clock)
    progress.update(0, "tcp4 backlog=0")
    clock.now += 30
    progress.update(1, "tcp4 backlog=1")
    progress.finish()
    written = stream.getvalue()
    assert "[1/4] 0:00 elapsed: tcp4 backlog=0" in written
    assert "[2/4] 0:30 elapsed, about 1:30 left: tcp4 backlog=1" in written  # 30 s a step, 3 steps left
    assert written.endswith("\r\033[K")  # the line is erased at the end


def test_off_a_terminal_nothing_is_written() -> None:
    stream = io.StringIO()
    progress = Progress(3, stream)
    progress.update(1, "x")
    progress.finish()
    assert stream.getvalue() == "" and not progress.active


def test_long_runs_show_hours() -> None:
    clock = Clock()
    progress = Progress(2, Terminal(), clock)
    clock.now += 3725
    assert progress.line(1).startswith("[2/2] 1:02:05 elapsed, about 1:02:05 left")


def test_a_run_counted_in_packets_shows_its_own_status_with_the_elapsed_time() -> None:
    stream, clock = Terminal(), Clock()
    progress = Progress(0, stream, clock)
    clock.now += 5
    progress.status("13 of at most 100 packets; the capture ends within 55 s")
    progress.finish()
    assert "0:05 elapsed: 13 of at most 100 packets; the capture ends within 55 s" in stream.getvalue()
    silent = io.StringIO()
    Progress(0, silent).status("x")
    assert silent.getvalue() == ""
