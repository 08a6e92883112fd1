"""What every benchmark of ``doascope bench`` shares: the analysis it measures at (16 kHz, the
configuration's defaults), rich tables and console, a progress line, a median timer."""

from __future__ import annotations

import sys
import time

import numpy as np

from doascope.config import DEFAULT_BAND, DEFAULT_FRAMES_PER_BLOCK, default_nfft

FS = 16000
NFFT = default_nfft(FS)
HOP = NFFT // 2
FRAMES = DEFAULT_FRAMES_PER_BLOCK
BAND = DEFAULT_BAND


def console():
    from rich.console import Console

    return Console(width=max(140, Console().width))


class Pace:
    """Progress on stderr as the work goes: a line at most every ``every`` seconds with the count done
    and the time left at the pace so far (plain lines, readable in a terminal and in a log file)."""

    def __init__(self, what: str, total: int, every: float = 10.0):
        self.what, self.total, self.every = what, max(1, int(total)), every
        self.done = 0
        self.t0 = self.last = time.monotonic()
        print(f"bench: {what}: {self.total} steps...", file=sys.stderr, flush=True)

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        spent = now - self.t0
        left = spent / self.done * (self.total - self.done)
        print(f"bench: {self.what}: {self.done}/{self.total} in {duration_text(spent)}"
              + (f", about {duration_text(left)} left" if self.done < self.total else ", done"), file=sys.stderr, flush=True)


def duration_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def new_table(title, columns):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        left = c in ("method", "array", "case")
        t.add_column(c, justify="left" if left else "right", no_wrap=left)
    return t


def median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
