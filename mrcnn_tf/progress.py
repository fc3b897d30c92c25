"""A progress line for long loops on stderr, with no dependency.

    bar = Progress("clip.mp4", total=240)
    for done in range(1, 241):
        ...
        bar.update(done)
    bar.close(240)
"""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """A progress line on `stream` (default sys.stderr): "LABEL: done/total UNIT (p%), r UNIT/s".

    On a terminal the line is redrawn in place (\\r) at most 10 times a second; elsewhere (a
    log file, a pipe) a new line is printed each time another tenth of `total` is done, or
    every 100 when the total is unknown (None or 0), so logs stay short.
    """

    def __init__(self, label: str, total: int | None, unit: str = "frames",
                 stream: IO[str] | None = None, enabled: bool = True):
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_draw = -1.0
        self._last_step = 0

    def _text(self, done: int) -> str:
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        if self.total:
            return (f"{self.label}: {done}/{self.total} {self.unit} "
                    f"({100 * done / self.total:.0f}%), {rate:.1f} {self.unit}/s")
        return f"{self.label}: {done} {self.unit}, {rate:.1f} {self.unit}/s"

    def update(self, done: int) -> None:
        """Shows that `done` items are finished (when it is time to)."""
        if not self.enabled:
            return
        if self.tty:
            now = time.perf_counter()
            if now - self._last_draw >= 0.1 or done == self.total:
                self._last_draw = now
                self.stream.write("\r" + self._text(done) + "\033[K")
                self.stream.flush()
            return
        step = (10 * done // self.total) if self.total else done // 100
        if step > self._last_step:
            self._last_step = step
            print(self._text(done), file=self.stream, flush=True)

    def close(self, done: int) -> None:
        """Draws `done` a last time and ends the terminal line."""
        if self.enabled and self.tty:
            self.stream.write("\r" + self._text(done) + "\033[K\n")
            self.stream.flush()
