"""Progress reporting on stderr: a tqdm bar (rate and ETA) on a terminal, plain lines or nothing elsewhere."""

from __future__ import annotations

import sys
from typing import IO, Any

__all__ = ["ProgressBar"]


class ProgressBar:
    """Counts finished units of work out of ``total`` and reports them on ``stream`` (default: stderr).

    On a terminal it draws a tqdm bar with rate and ETA, first shown after ``delay`` seconds (so short jobs print
    nothing). Elsewhere (a pipe, a log file) it draws no bar: :meth:`log` lines are printed instead when
    ``log_lines`` is true, one per call, and nothing at all otherwise. ``enabled=False`` silences everything.
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str,
        enabled: bool = True,
        delay: float = 0.0,
        initial: int = 0,
        log_lines: bool = False,
        stream: IO[str] | None = None,
    ) -> None:
        self.total = total
        self.done = initial
        self._stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._log_lines = enabled and log_lines
        if enabled and _is_terminal(self._stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                delay=delay,
                file=self._stream,
                dynamic_ncols=True,
                leave=True,
            )
            self._log_lines = False

    @property
    def draws_bar(self) -> bool:
        """Whether a tqdm bar is drawn (the stream is a terminal and the bar is enabled)."""
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        """Counts ``n`` more finished units."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def update_to(self, done: int) -> None:
        """Sets the count of finished units to ``done`` (for work that reports its absolute progress)."""
        if done > self.done:
            self.update(done - self.done)

    def log(self, line: str) -> None:
        """Reports one event as a plain line, only when no bar is drawn and ``log_lines`` is set."""
        if self._log_lines:
            print(line, file=self._stream, flush=True)

    def close(self) -> None:
        """Finishes the bar (leaves it on screen if it was shown)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
