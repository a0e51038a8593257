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

UPLOAD_FILES_PER_SESSION = 8
"""Files one session may hold at once through Streamlit's upload endpoint (the app takes a data zip or file, and a
checkpoint; the rest is room for a replaced pick)."""


class UploadGate:
    """Which Streamlit sessions may upload files and read media, until when (POSIX seconds). Thread-safe.

    The app grants a session when its visitor may upload (a signed-in admin, or the person on a local-only server)
    and revokes it on sign-out, on a role without uploads, and when the socket closes. Streamlit's upload endpoint
    and ``/media/`` ask :meth:`allows` (``ogaudit/ui/guard.py``); default: no.
    """

    def __init__(self):
        self._until: dict[str, float] = {}
        self._readers: dict[str, float] = {}
        self._lock = threading.Lock()

    def grant(self, session_id: str, until: float, *, upload: bool) -> None:
        """Let ``session_id`` read media (and, with ``upload``, upload files) until ``until``."""
        with self._lock:
            self._readers[session_id] = until
            if upload:
                self._until[session_id] = until
            else:
                self._until.pop(session_id, None)

    def revoke(self, session_id: str) -> None:
        with self._lock:
            self._until.pop(session_id, None)
            self._readers.pop(session_id, None)

    def allows(self, session_id: str) -> bool:
        """Whether ``session_id`` may upload now."""
        with self._lock:
            return self._until.get(session_id, 0.0) > time.time()

    def reads(self, session_id: str) -> bool:
        """Whether ``session_id`` is signed in (or local) and may be served its media now."""
        with self._lock:
            return self._readers.get(session_id, 0.0) > time.time()


@dataclass
class ServerState:
    """Everything the server keeps for all its sessions; see the module's docstring."""

    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    jobs: JobRegistry = field(default_factory=JobRegistry)
    uploads: UploadGate = field(default_factory=UploadGate)
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
