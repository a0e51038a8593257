"""Who may use a shared ogaudit server, and what each may do: users, roles, sign-in, sessions, rate limits.

Users live in ``$OGAUDIT_HOME/users.json`` (format 1, file mode 0600): a name, a role and a salted bcrypt hash per
user (bcrypt, Provos & Mazières 1999, through the ``bcrypt`` library; cost 12). ``ogaudit users add/remove/list``
manages it; the app reads it. Roles:

* **admin**: everything an annotator can, plus start audits, choose server data, upload data and checkpoints,
  export cleaned splits, run the retrain check, delete projects;
* **annotator**: review (decide, undo, redo) and export the decisions CSV.

Sign-in is checked by :meth:`UserStore.verify` behind a :class:`LoginLimiter` (failed attempts per user name and
per client, in a sliding window); a signed-in browser tab holds a :class:`Session` that expires. No streamlit here:
the app's sign-in page (``ogaudit/ui/auth.py``) arranges these calls.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ogaudit.errors import OgauditError, SettingsError
from ogaudit.storage import atomic_path

USERS_FILE = "users.json"
USERS_FORMAT = 1
ROLES = ("admin", "annotator")
PERMISSIONS = {
    "annotator": frozenset({"review", "export-decisions"}),
    "admin": frozenset({"review", "export-decisions", "audit", "server-data", "upload", "export-split", "verify"}),
}
"""What each role may do; the app checks :func:`can` before showing or running each of these."""
MIN_PASSWORD = 8
BCRYPT_ROUNDS = 12
SESSION_HOURS = 12.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class AuthError(OgauditError, PermissionError):
    """A sign-in that failed, a session that ended, or an action the signed-in role may not take."""


@dataclass(frozen=True)
class User:
    name: str
    role: str


@dataclass(frozen=True)
class Session:
    """A signed-in browser tab: who, in which role, until when (POSIX seconds)."""

    user: User
    expires_at: float

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at


def can(role: str | None, action: str) -> bool:
    """Whether ``role`` may do ``action`` (see :data:`PERMISSIONS`); no role (not signed in) may do nothing."""
    return role in PERMISSIONS and action in PERMISSIONS[role]


def check_name(name: str) -> str:
    """A user name: 1-64 letters, digits, ``. _ @ -``, starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SettingsError(
            f"user name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
            "letter or digit."
        )
    return name


class UserStore:
    """The users file ``path`` (usually ``$OGAUDIT_HOME/users.json``); every call re-reads it, so a user removed
    by the command line cannot sign in again (and a signed-in one is signed out on the next check)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._dummy = None

    @classmethod
    def in_home(cls, home: str | os.PathLike) -> UserStore:
        return cls(Path(home) / USERS_FILE)

    def exists(self) -> bool:
        return self.path.is_file()

    def _read(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SettingsError(f"{str(self.path)!r} (the users file) cannot be read ({error}). Restore it.") from error
        if not isinstance(saved, dict) or not isinstance(saved.get("users"), dict):
            raise SettingsError(f"{str(self.path)!r} is not an ogaudit users file. Restore it or remove it.")
        if saved.get("format", 1) > USERS_FORMAT:
            raise SettingsError(f"{str(self.path)!r} was written by a newer ogaudit. Upgrade ogaudit.")
        return saved["users"]

    def _write(self, users: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, private=True) as tmp:  # password hashes: the server's account only
            tmp.write_text(json.dumps({"format": USERS_FORMAT, "users": users}, indent=2, sort_keys=True))

    def add(self, name: str, password: str, role: str, *, replace: bool = False) -> User:
        """Add (or with ``replace``, update) a user. Raises :class:`SettingsError` for a bad name, role or a
        password shorter than 8 characters, or an existing name without ``replace``."""
        import bcrypt

        check_name(name)
        if role not in ROLES:
            raise SettingsError(f"role {role!r} is not one of {', '.join(ROLES)}.")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise SettingsError(f"the password must have at least {MIN_PASSWORD} characters.")
        users = self._read()
        if name in users and not replace:
            raise SettingsError(f"user {name!r} exists already; remove it first or pass --replace.")
        hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(BCRYPT_ROUNDS)).decode("ascii")
        users[name] = {"role": role, "hash": hashed, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._write(users)
        return User(name, role)

    def remove(self, name: str) -> None:
        users = self._read()
        if name not in users:
            raise SettingsError(f"there is no user {name!r}; `ogaudit users list` shows them.")
        del users[name]
        self._write(users)

    def list(self) -> list[User]:
        return [User(name, entry["role"]) for name, entry in sorted(self._read().items())]

    def get(self, name: str) -> User | None:
        entry = self._read().get(name)
        return None if entry is None else User(name, entry["role"])

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None. Takes the same bcrypt time for unknown names."""
        import bcrypt

        entry = self._read().get(name) if isinstance(name, str) else None
        if entry is None:
            if self._dummy is None:
                self._dummy = bcrypt.hashpw(b"-", bcrypt.gensalt(BCRYPT_ROUNDS))
            bcrypt.checkpw(b"not the password", self._dummy)
            return None
        ok = bcrypt.checkpw(str(password).encode("utf-8"), entry["hash"].encode("ascii"))
        return User(name, entry["role"]) if ok else None


class LoginLimiter:
    """Failed sign-ins allowed per key (a user name, a client address) in a sliding window. Thread-safe.

    ``max_failures`` failures within ``window_s`` seconds lock the key until the oldest of them leaves the window.
    """

    def __init__(self, *, max_failures: int = 5, window_s: float = 600.0):
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def wait_s(self, *keys: str) -> float:
        """Seconds until the keys may try again (0 when they may now)."""
        now = time.monotonic()
        with self._lock:
            waits = [
                times[0] + self.window_s - now
                for key in keys
                if len(times := self._recent(key, now)) >= self.max_failures
            ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def sign_in(
    store: UserStore,
    limiter: LoginLimiter,
    name: str,
    password: str,
    *,
    client: str = "",
    hours: float = SESSION_HOURS,
) -> Session:
    """A :class:`Session` for ``name`` if ``password`` is right and neither the name nor the client is locked.

    Raises :class:`AuthError` with a message that never says whether the name exists.
    """
    keys = (f"user:{name}", f"client:{client}") if client else (f"user:{name}",)
    wait = limiter.wait_s(*keys)
    if wait > 0:
        raise AuthError(f"Too many failed sign-ins. Try again in {max(1, round(wait / 60))} min.")
    user = store.verify(name, password)
    if user is None:
        limiter.failed(*keys)
        raise AuthError("Wrong user name or password.")
    limiter.succeeded(*keys)
    return Session(user, time.time() + hours * 3600)


def current_user(store: UserStore, session: Session | None) -> User | None:
    """The session's user if the session is live and the user still exists (with their current role)."""
    if session is None or session.expired:
        return None
    return store.get(session.user.name)
