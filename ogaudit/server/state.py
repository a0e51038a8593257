"""The server's own state, one object per process: sign-in limits, live jobs, which sessions may upload.

Why not ``st.cache_resource``: Streamlit clears every cached resource when any websocket sends a ``clear_cache``
message, signed in or not. Kept there, the sign-in limiter forgot every failed attempt and the job registry forgot
the running audits (the next page load then started them again). So security and job state live in one
:class:`ServerState`, built on the first call of :func:`server_state` (under a lock) and never rebuilt: no message a
client can send reaches it. It is per process on purpose: the limiter and the job registry must be shared by every
browser session of the server, and nothing in it belongs to one visitor (sessions are keyed by Streamlit's session id,
and granted only by a sign-in). The app also refuses the ``clear_cache`` message itself (``ogaudit/ui/guard.py``).

Two processes on one ``$OGAUDIT_HOME`` do not share this object: what must hold across processes is held by the disk
(a project's audit lock, :meth:`~ogaudit.server.jobs.Job.start`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ogaudit.server.auth import LoginLimiter
from ogaudit.server.jobs import JobRegistry
from ogaudit.server.tokens import Handoffs

UPLOAD_FILES_PER_SESSION = 8
"""Files one session may hold at once through Streamlit's upload endpoint (the app takes a data zip or file, and a
checkpoint; the rest is room for a replaced pick)."""
UPLOAD_BYTES_PER_SESSION = 512 * 1024 * 1024
"""Bytes one session may hold before a new upload is refused: a data zip and a checkpoint of Streamlit's per-file
``server.maxUploadSize`` (200 MB, set in ``.streamlit/config.toml``) and room to replace one. So a session holds at
most this plus one file."""


class UploadGate:
    """Which Streamlit sessions may upload files and be served media, until when (POSIX seconds). Thread-safe.

    The app grants a session on each run: a signed-in session until it expires (uploads only for a role that may
    upload), the person of a local-only server (``local``), and revokes it for a signed-out tab, on sign-out and when
    the socket closes. ``browser`` is a key of the browser the session's socket came from (the token of Streamlit's
    XSRF cookie, which that browser sends with every request): media is served only to a request from that browser.
    Streamlit's upload endpoint and ``/media/`` ask this gate (``ogaudit/ui/guard.py``); default: no.
    """

    def __init__(self):
        self._grants: dict[str, tuple[float, bool, bool, str | None]] = {}
        self._lock = threading.Lock()

    def grant(self, session_id: str, until: float, *, upload: bool, browser: str | None = None, local: bool = False):
        """Let ``session_id`` be served its media (and with ``upload``, upload files) until ``until``."""
        with self._lock:
            self._grants[session_id] = (until, upload, local, browser)

    def revoke(self, session_id: str) -> None:
        with self._lock:
            self._grants.pop(session_id, None)

    def _live(self, session_id: str) -> tuple[float, bool, bool, str | None] | None:
        with self._lock:
            grant = self._grants.get(session_id)
        return grant if grant is not None and grant[0] > time.time() else None

    def allows(self, session_id: str, browser: str | None = None) -> bool:
        """Whether ``session_id`` may upload now, from a request of ``browser``: the session may upload, and is
        either local (a local-only server) or signed in from that very browser (an upload URL read from a log,
        sent from another browser, is refused)."""
        grant = self._live(session_id)
        return grant is not None and grant[1] and (grant[2] or (grant[3] is not None and grant[3] == browser))

    def serves(self, session_id: str, browser: str | None) -> bool:
        """Whether a media file that ``session_id`` shows may go to a request from ``browser`` now: the session is
        granted, and either local (a local-only server) or signed in from that very browser."""
        grant = self._live(session_id)
        return grant is not None and (grant[2] or (grant[3] is not None and grant[3] == browser))

    def __len__(self) -> int:
        with self._lock:
            return len(self._grants)


@dataclass
class ServerState:
    """Everything the server keeps for all its sessions; see the module's docstring."""

    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    jobs: JobRegistry = field(default_factory=JobRegistry)
    uploads: UploadGate = field(default_factory=UploadGate)
    handoffs: Handoffs = field(default_factory=Handoffs)
    _resumed: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def resume_once(self, root: str | Path, resume: Callable[[Path, JobRegistry], list[str]]) -> list[str]:
        """Call ``resume(root, jobs)`` the first time it is asked for ``root`` in this process; then return what
        that call returned. A page load, a cleared cache or a signed-out visitor never resumes again."""
        key = str(Path(root).resolve())
        with self._lock:
            if key not in self._resumed:
                self._resumed[key] = list(resume(Path(root), self.jobs))
            return self._resumed[key]


_STATE: ServerState | None = None
_STATE_LOCK = threading.Lock()


def server_state() -> ServerState:
    """This process's :class:`ServerState`, built once."""
    global _STATE
    with _STATE_LOCK:
        if _STATE is None:
            _STATE = ServerState()
        return _STATE


def reset_server_state() -> ServerState:
    """Forget it and build a new one: for tests that start a fresh server inside one process, never for the app."""
    global _STATE
    with _STATE_LOCK:
        _STATE = ServerState()
        return _STATE
