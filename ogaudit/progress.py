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
