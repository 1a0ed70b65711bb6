"""Progress of long work on the console: a tqdm bar on a terminal, elsewhere (CI logs, files) one plain line
each time another `every` percent is done, so a log holds ten readable lines rather than a redrawn bar."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _number(v: float) -> str:
    """4 significant digits; 10,000 or more as a whole number (tokens_per_s=52310, not 5.231e+04)."""
    return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={_number(v)}" for k, v in metrics.items())


def _tqdm(total: int, desc: str, unit: str, initial: int, file: TextIO):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=file, dynamic_ncols=True)


class Progress:
    """`update(done, metrics)` with the absolute count done so far; the bar (or the last line) closes itself
    at `total`. `start`: where a resumed run begins, so its first line comes at the next threshold.
    `bar(total=, desc=, unit=, initial=, file=)` makes the terminal bar (a Ray worker passes Ray's)."""

    def __init__(self, total: int, desc: str, *, unit: str = "step", start: int = 0, every: int = 10,
                 tty: bool | None = None, out: TextIO | None = None, bar: Callable | None = None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.out = out if out is not None else sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.done = self._start = start
        self._began = time.monotonic()
        self._bucket = self._bucket_of(start)
        self.bar = (bar or _tqdm)(total=total, desc=desc, unit=unit, initial=start, file=self.out) if self.tty else None
        self.closed = False

    def _bucket_of(self, done: int) -> int:
        return done * 100 // (self.total * self.every) if self.total > 0 else 0

    def update(self, done: int, metrics: dict[str, float] | None = None) -> None:
        if self.closed:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(format_metrics(metrics or {}), refresh=False)
            self.bar.update(done - self.done)
        elif (bucket := self._bucket_of(done)) > self._bucket:
            self._bucket = bucket
            print(self.line(done, metrics or {}), file=self.out, flush=True)
        self.done = done
        if done >= self.total:
            self.close()

    def line(self, done: int, metrics: dict[str, float]) -> str:
        elapsed = time.monotonic() - self._began
        rate = (done - self._start) / elapsed if elapsed > 0 else 0.0
        eta = f", {_clock((self.total - done) / rate)} left" if rate > 0 and done < self.total else ""
        parts = [f"{self.desc}: {100 * done // self.total:3d}% {done}/{self.total} {self.unit}s",
                 format_metrics(metrics), f"[{_clock(elapsed)}{eta}]"]
        return " ".join(p for p in parts if p)

    def close(self) -> None:
        if not self.closed and self.bar is not None:
            self.bar.close()
        self.closed = True
