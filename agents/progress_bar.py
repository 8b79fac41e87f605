"""A one-line progress bar on a terminal, redrawn in place; nothing at all when not on a terminal.

Quiet short runs: the bar appears only once a run has taken longer than `delay_s`, so a small file
prints just its summary, as it would into a pipe.
"""

from __future__ import annotations

import time
from typing import TextIO

WIDTH = 24


class ProgressBar:
    def __init__(self, stream: TextIO, *, enabled: bool, delay_s: float = 0.5, every_s: float = 0.1) -> None:
        self._stream = stream
        self._enabled = enabled
        self._started = time.monotonic()
        self._delay_s = delay_s
        self._every_s = every_s
        self._last = 0.0
        self._shown = False

    def show(self, fraction: float | None, text: str, *, force: bool = False) -> None:
        """Draw `text` after a bar filled to `fraction` (None: no bar, the amount is unknown)."""
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._started < self._delay_s or (not force and now - self._last < self._every_s):
            return
        self._last = now
        if fraction is not None:
            filled = round(max(0.0, min(1.0, fraction)) * WIDTH)
            text = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%}  {text}"
        self._stream.write(f"\r\x1b[K{text}")
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Remove the bar so that the next line starts clean (call before printing anything else)."""
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
