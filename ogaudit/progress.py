"""Progress reporting and cancellation for long steps, usable from a CLI bar or a UI thread."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ogaudit.errors import Cancelled

ProgressCallback = Callable[[str, float, str], None]
"""``progress(stage, fraction, message)``: ``fraction`` in [0, 1] of the current stage."""


def report(progress: ProgressCallback | None, stage: str, fraction: float, message: str = "") -> None:
    if progress is not None:
        progress(stage, min(max(fraction, 0.0), 1.0), message)


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`Cancelled` when ``cancel`` is set; called between chunks of work."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("Cancelled by the user.")


def within(progress: ProgressCallback | None, stage: str, start: float, end: float) -> ProgressCallback | None:
    """``progress`` with ``stage``'s fractions mapped into ``[start, end]`` (other stages, notices, pass as they
    are), so that two passes in one stage fill one bar instead of running it to 100% twice."""
    if progress is None:
        return None

    def mapped(name: str, fraction: float, message: str) -> None:
        progress(name, start + (end - start) * fraction if name == stage else fraction, message)

    return mapped


class AutoBars:
    """The progress :func:`ogaudit.audit` shows when it is given no ``progress`` callback: one ``tqdm.auto`` bar
    per stage (a widget in Jupyter, a text bar in a terminal), ``message`` as its postfix. Where there is neither
    a notebook nor a terminal (a log, CI, a pipe) it shows nothing: a ``\\r`` bar in a file reads as noise.
    ``"notice"`` events go to ``notices(message)``. Call :meth:`close` when the work ends."""

    def __init__(self, notices: Callable[[str], None], *, shown: bool | None = None):
        import sys

        self.notices, self.bar, self.stage = notices, None, None
        self.shown = ("ipykernel" in sys.modules or sys.stderr.isatty()) if shown is None else shown

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if stage == "notice":
            self.notices(message)
            return
        if not self.shown:
            return
        from tqdm.auto import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=stage, unit="%", leave=True, bar_format="{l_bar}{bar}| {n:.0f}%{postfix}")
        self.bar.set_postfix_str(message, refresh=False)
        self.bar.update(round(fraction * 100) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
