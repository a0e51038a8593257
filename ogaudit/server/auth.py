"""Who may use a shared ogaudit server, and what each may do: users, roles, sign-in, sessions, rate limits.

Users live in ``$OGAUDIT_HOME/users.json`` (format 1, file mode 0600): a name, a role and a salted bcrypt hash per
user (bcrypt, Provos & Mazières 1999, through the ``bcrypt`` library; cost 12). ``ogaudit users add/remove/list``
manages it; the app reads it. Roles:

* **admin**: everything a reviewer can, plus assign samples to annotators, start audits, choose server data, upload
  data and checkpoints, export cleaned splits, run the retrain check, delete projects;
* **reviewer**: everything an annotator can, plus settle disagreements (a settlement outranks every annotator's
  decision: :meth:`ogaudit.review.ledger.Ledger.settle`);
* **annotator**: review (decide, undo, redo, notes and tags) and export the decisions CSV.

Sign-in is checked by :meth:`UserStore.verify` behind a :class:`LoginLimiter` (failed attempts per user name and
per client, in a sliding window); a signed-in browser tab holds a :class:`Session` that expires. No streamlit here:
the app's sign-in page (``ogaudit/ui/auth.py``) arranges these calls.

One path for every attempt: :func:`sign_in` reserves the attempt in the limiter (under its lock, counted as a
failure until it succeeds), then :meth:`UserStore.verify` runs exactly one bcrypt check, against the user's hash or a
fixed dummy hash of the same cost for an unknown name, a password over 72 bytes (bcrypt's limit) or a damaged entry;
no exception of bcrypt's reaches the page. bcrypt (through the kept ``bcrypt`` library) stays rather than
``argon2-cffi``: every existing ``users.json`` holds bcrypt hashes, and cost 12 is at least as strict as this app
needs; ``streamlit-authenticator`` was not taken because it keeps sign-ins in a browser cookie (a credential to
steal) and has no per-client limit with reservation.
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

from ogaudit.errors import OgauditError, SettingsError, require
from ogaudit.storage import atomic_path

USERS_FILE = "users.json"
USERS_FORMAT = 1
ROLES = ("admin", "reviewer", "annotator")
_REVIEW = frozenset({"review", "export-decisions"})
PERMISSIONS = {
    "annotator": _REVIEW,
    "reviewer": _REVIEW | {"settle"},
    "admin": _REVIEW | {"settle", "assign", "audit", "server-data", "upload", "export-split", "verify"},
}
"""What each role may do; the app checks :func:`can` before showing or running each of these."""
MIN_PASSWORD = 8
MAX_PASSWORD_BYTES = 72
"""bcrypt reads at most 72 bytes; longer passwords are refused (never silently cut) when added and at sign-in."""
BCRYPT_ROUNDS = 12
_DUMMY_HASH = b"$2b$12$D0vgXryG0DIp3kd7ZRcwh.CDWuLGU0o351kdNo4tHD29YClmVCPX."
"""A cost-12 bcrypt hash of a password nobody has: unknown names are checked against it, so they cost the same."""
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
    """A signed-in browser tab: who, in which role, until when (POSIX seconds), and from which client
    (:func:`client_key` at sign-in; a session used from another client address is signed out)."""

    user: User
    expires_at: float
    client: str = ""
    stamp: str = ""
    """:meth:`UserStore.stamp` of the user's password hash when the session began: a new password (or the user
    removed and added again) ends the session, in an open tab as in a session token. Empty: not checked."""

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at


def can(role: str | None, action: str) -> bool:
    """Whether ``role`` may do ``action`` (see :data:`PERMISSIONS`); no role (not signed in) may do nothing."""
    return role in PERMISSIONS and action in PERMISSIONS[role]


def may_delete_project(name: str | None, role: str | None, started_by: str | None) -> bool:
    """Whether the user ``name`` with ``role`` may delete a project whose audit ``started_by`` asked for: an admin
    (who may start audits), or the user who started it. No role (not signed in) may not."""
    if role not in PERMISSIONS:
        return False
    return can(role, "audit") or (bool(name) and name == started_by)


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
        bcrypt = require("bcrypt", feature="Signing in and `ogaudit users`", extra="app")

        check_name(name)
        if role not in ROLES:
            raise SettingsError(f"role {role!r} is not one of {', '.join(ROLES)}.")
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise SettingsError(f"the password must have at least {MIN_PASSWORD} characters.")
        if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
            raise SettingsError(
                f"the password must have at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt reads no more); "
                "choose a shorter one."
            )
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

    def stamp(self, name: str) -> str | None:
        """A short digest of ``name``'s password hash (None for no such user): a session token carries it, so a
        new password or a removed-and-added user ends every token issued before."""
        import hashlib

        entry = self._read().get(name)
        hashed = entry.get("hash") if isinstance(entry, dict) else None
        return hashlib.sha256(hashed.encode("utf-8")).hexdigest()[:24] if isinstance(hashed, str) else None

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None; never raises for what a visitor types.

        One bcrypt check whatever the name: against the user's hash, or :data:`_DUMMY_HASH` for an unknown name, a
        password that is not a string or is over :data:`MAX_PASSWORD_BYTES`, or a damaged entry. So a known and an
        unknown name take the same time, and a long password is a plain failure for both.
        """
        bcrypt = require("bcrypt", feature="Signing in and `ogaudit users`", extra="app")

        entry = self._read().get(name) if isinstance(name, str) else None
        hashed = entry.get("hash") if isinstance(entry, dict) else None
        secret = password.encode("utf-8", "surrogatepass") if isinstance(password, str) else b""
        usable = isinstance(hashed, str) and isinstance(password, str) and len(secret) <= MAX_PASSWORD_BYTES
        try:
            ok = bcrypt.checkpw(secret if usable else b"-", hashed.encode("ascii") if usable else _DUMMY_HASH)
        except ValueError:  # a damaged hash in the users file: a failure, not a stack trace
            ok = False
        role = entry.get("role") if usable else None
        return User(name, role) if ok and role in ROLES else None


class LoginLimiter:
    """Failed sign-ins allowed per key (a user name, a client address) in a sliding window. Thread-safe.

    ``max_failures`` failures within ``window_s`` seconds lock the key until the oldest of them leaves the window.
    An attempt is *reserved* before its password is checked (:meth:`reserve`: counted as a failure, under the lock,
    for every key at once), so attempts sent together cannot all pass the check before any of them has failed.
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

    def _wait(self, keys: tuple[str, ...], now: float) -> float:
        waits = [
            times[0] + self.window_s - now for key in keys if len(times := self._recent(key, now)) >= self.max_failures
        ]
        for key in keys:  # forget keys whose window is empty: distinct names sent by a client do not pile up
            if not self._failures.get(key):
                self._failures.pop(key, None)
        return max(waits, default=0.0)

    def wait_s(self, *keys: str) -> float:
        """Seconds until the keys may try again (0 when they may now)."""
        with self._lock:
            return self._wait(keys, time.monotonic())

    def reserve(self, *keys: str) -> tuple[float, float]:
        """Check and count one attempt in one step: ``(0, token)`` with the attempt counted as a failure of every
        key, or ``(wait_s, 0)`` when a key is locked (nothing counted). Pass the token to :meth:`release` (or
        :meth:`succeeded`) when the attempt succeeds."""
        now = time.monotonic()
        with self._lock:
            wait = self._wait(keys, now)
            if wait > 0:
                return wait, 0.0
            for key in keys:
                self._recent(key, now).append(now)
            return 0.0, now

    def release(self, token: float, *keys: str) -> None:
        """Take back the attempt :meth:`reserve` counted under ``token`` (it succeeded)."""
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                if times and token in times:
                    times.remove(token)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


LOOPBACK_CLIENT = "loopback"


def client_key(address: str | None) -> str:
    """The limiter's key for a client: its address as the server sees it, or ``"loopback"`` for a connection from
    this machine (Streamlit reports no address for one). Behind a reverse proxy on the same host, the address is the
    one the proxy puts in ``X-Forwarded-For``: Streamlit's server (uvicorn) takes it from proxies listed in
    ``FORWARDED_ALLOW_IPS`` (default ``127.0.0.1,::1``), the rightmost untrusted hop, so a client cannot choose its
    own key. A proxy that sends no ``X-Forwarded-For`` makes every visitor ``"loopback"``: one shared limit."""
    address = address.strip() if isinstance(address, str) else ""
    return address if address and address not in ("127.0.0.1", "::1", "localhost") else LOOPBACK_CLIENT


def _name_key(name: object) -> str:
    """The limiter's key for a typed name: a name that no user can have shares one key (no memory per guess)."""
    return f"user:{name}" if isinstance(name, str) and _NAME.fullmatch(name) else "user:?"


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

    The attempt is reserved in ``limiter`` before the password is checked (:meth:`LoginLimiter.reserve`) and stays a
    failure unless it succeeds. Raises :class:`AuthError` with a message that never says whether the name exists;
    nothing else (a damaged users file is an :class:`AuthError` too, without the file's path).
    """
    user_key = _name_key(name)
    keys = (user_key, f"client:{client}") if client else (user_key,)
    wait, token = limiter.reserve(*keys)
    if wait > 0:
        raise AuthError(f"Too many failed sign-ins. Try again in {max(1, round(wait / 60))} min.")
    try:
        user = store.verify(name, password)
    except OgauditError:
        raise AuthError(
            "Sign-in is unavailable: the server's users file cannot be read. Tell the server's admin."
        ) from None
    if user is None:
        raise AuthError("Wrong user name or password.")
    limiter.succeeded(user_key)  # the name proved itself; the client keeps its other failures
    limiter.release(token, *keys[1:])
    return Session(user, time.time() + hours * 3600, client, store.stamp(user.name) or "")


def current_user(store: UserStore, session: Session | None, client: str | None = None) -> User | None:
    """The session's user if the session is live, used from the client it signed in from (when ``client`` is
    given), the user still exists (with their current role) and has the password the session began with."""
    import hmac

    if session is None or session.expired:
        return None
    if client is not None and session.client and client != session.client:
        return None
    user = store.get(session.user.name)
    if user is not None and session.stamp and not hmac.compare_digest(store.stamp(user.name) or "", session.stamp):
        return None
    return user
