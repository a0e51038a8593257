"""Signed, expiring session tokens: what lets a sign-in survive a browser refresh.

A token names the user, the client it was issued to, when it expires, a stamp of the user's password hash and a
random id, and is signed with HMAC-SHA256 under a key that never leaves the server
(``$OGAUDIT_HOME/.session-key``, 32 random bytes, mode 0600, made on first use). The browser keeps it in an
``HttpOnly``, ``SameSite=Strict`` cookie set by the server's own endpoint (``ogaudit/ui/guard.py``), so page scripts
cannot read it; it is never put in a URL or a log line.

A token is refused when its signature, format or size is wrong, when it has expired, when it comes from another
client than the one it was issued to, when its user has been removed (``ogaudit users remove``) or given a new
password (the stamp no longer matches), or when it was signed out (:meth:`SessionTokens.revoke`: its id is kept in
``$OGAUDIT_HOME/.revoked-sessions`` until it would have expired). Removing the key file signs every browser out.

The revocation list fails closed: when it is there but cannot be read, is not the list this module writes, or is
over :data:`MAX_REVOKED_BYTES`, no token is accepted (which of them were signed out is unknown), and the next
sign-in or sign-out replaces the signing key and starts an empty list, so every earlier token stays refused and
sign-in works again.

No streamlit here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from ogaudit.errors import StorageError
from ogaudit.server.auth import Session, UserStore
from ogaudit.storage import atomic_path

TOKEN_COOKIE = "ogaudit_session"
KEY_FILE = ".session-key"
REVOKED_FILE = ".revoked-sessions"
KEY_BYTES = 32
MAX_TOKEN_CHARS = 1024
"""A longer cookie value is refused before it is decoded."""
MAX_REVOKED_BYTES = 4 * 1024 * 1024
"""A longer revocation list is damaged (one entry a sign-out, each ~40 bytes, kept 12 h): it fails closed."""
_VERSION = "v1"
_log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionTokens:
    """Issue and check the session tokens of the ogaudit home ``home``. Thread-safe."""

    def __init__(self, home: str | os.PathLike):
        self.home = Path(home)
        self.key_path = self.home / KEY_FILE
        self.revoked_path = self.home / REVOKED_FILE
        self._lock = threading.Lock()

    def _key(self) -> bytes:
        """The signing key, made (exclusively, mode 0600) on first use."""
        try:
            key = self.key_path.read_bytes()
        except FileNotFoundError:
            self.home.mkdir(parents=True, exist_ok=True)
            try:
                handle = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it meanwhile
                return self._key()
            with os.fdopen(handle, "wb") as out:
                out.write(secrets.token_bytes(KEY_BYTES))
            return self._key()
        except OSError as error:
            raise StorageError(f"the session key cannot be read ({error.strerror}).") from error
        if len(key) != KEY_BYTES:
            raise StorageError(f"{KEY_FILE} in the ogaudit home is damaged: remove it (every browser signs in again).")
        return key

    def _issue(self, session: Session, store: UserStore) -> str:
        payload = {
            "u": session.user.name,
            "e": int(session.expires_at),
            "c": session.client,
            "s": store.stamp(session.user.name) or "",
            "n": secrets.token_urlsafe(12),
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        signature = _b64(hmac.new(self._key(), f"{_VERSION}.{body}".encode("ascii"), hashlib.sha256).digest())
        return f"{_VERSION}.{body}.{signature}"

    def _payload(self, token: object) -> dict | None:
        """The signed payload of ``token``, or None for anything not signed by this server's key."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            return None
        version, body, signature = token.split(".")
        if version != _VERSION:
            return None
        try:
            expected = hmac.new(self._key(), f"{version}.{body}".encode("ascii"), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                return None
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeError, StorageError):
            return None
        keys = {"u": str, "e": int, "c": str, "s": str, "n": str}
        if not isinstance(payload, dict) or any(not isinstance(payload.get(k), t) for k, t in keys.items()):
            return None
        return payload

    def verify(self, token: object, store: UserStore, client: str | None = None) -> Session | None:
        """The :class:`~ogaudit.server.auth.Session` that ``token`` stands for, or None when it is refused (see the
        module's docstring); never raises for what a browser sends."""
        payload = self._payload(token)
        if payload is None or payload["e"] <= time.time():
            return None
        if client is not None and payload["c"] and payload["c"] != client:
            return None
        try:
            user = store.get(payload["u"])
            stamp = store.stamp(payload["u"])
        except Exception:  # noqa: BLE001 - an unreadable users file signs nobody in
            return None
        if user is None or not stamp or not hmac.compare_digest(stamp, payload["s"]):
            return None
        revoked = self._revoked()
        if revoked is None:
            _log.warning("%s is damaged: every session token is refused until the next sign-in", REVOKED_FILE)
            return None
        if payload["n"] in revoked:
            return None
        return Session(user, float(payload["e"]), payload["c"], payload["s"])

    def _revoked(self) -> dict[str, float] | None:
        """The revoked token ids and when each would have expired: ``{}`` when no list was written, None when
        the list is there but unreadable, damaged or over :data:`MAX_REVOKED_BYTES` (fail closed)."""
        try:
            if self.revoked_path.stat().st_size > MAX_REVOKED_BYTES:
                return None
            saved = json.loads(self.revoked_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or any(
            not isinstance(e, int | float) or isinstance(e, bool) for e in saved.values()
        ):
            return None
        return saved

    def _restart_after_damage(self) -> None:
        """A new signing key and an empty revocation list (under the lock): every earlier token is refused."""
        _log.warning("%s is damaged: the session key is replaced, every browser signs in again", REVOKED_FILE)
        self.home.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.key_path, private=True) as tmp:
            tmp.write_bytes(secrets.token_bytes(KEY_BYTES))
        with atomic_path(self.revoked_path, private=True) as tmp:
            tmp.write_text("{}", encoding="utf-8")

    def issue(self, session: Session, store: UserStore) -> str:
        """A token for ``session`` (its user, client and expiry); first a new key if the revocation list is
        damaged (see the module's docstring)."""
        with self._lock:
            if self._revoked() is None:
                self._restart_after_damage()
        return self._issue(session, store)

    def revoke(self, token: object) -> bool:
        """Sign ``token`` out for good (its id is kept until it would have expired); False for a token that is
        not one of this server's. With a damaged list, the key is replaced instead (every token ends)."""
        payload = self._payload(token)
        if payload is None:
            return False
        with self._lock:
            now = time.time()
            revoked = self._revoked()
            if revoked is None:
                self._restart_after_damage()
                return True
            revoked = {n: e for n, e in revoked.items() if e > now}
            revoked[payload["n"]] = payload["e"]
            self.home.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.revoked_path, private=True) as tmp:
                tmp.write_text(json.dumps(revoked), encoding="utf-8")
        return True


class Handoffs:
    """One-use codes that carry a fresh token from the page that signed in to the server's cookie endpoint.

    The page cannot set an ``HttpOnly`` cookie itself; it sends the code (never the token) in the body of a
    same-origin POST, and the endpoint answers with the cookie. A code lives :attr:`ttl_s` seconds, is used once,
    and only by the browser the session's socket came from (``browser``: the token of Streamlit's XSRF cookie).
    """

    def __init__(self, ttl_s: float = 60.0):
        self.ttl_s = ttl_s
        self._codes: dict[str, tuple[str, float, str | None, float]] = {}
        self._lock = threading.Lock()

    def put(self, token: str, expires_at: float, browser: str | None) -> str:
        code = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._codes = {c: v for c, v in self._codes.items() if v[3] > now}
            self._codes[code] = (token, expires_at, browser, now + self.ttl_s)
        return code

    def take(self, code: object, browser: str | None) -> tuple[str, float] | None:
        """``(token, expires_at)`` for a live ``code`` sent by ``browser`` (then the code is spent), else None."""
        if not isinstance(code, str) or len(code) > 64:
            return None
        with self._lock:
            entry = self._codes.get(code)
            if entry is None or entry[3] <= time.monotonic():
                return None
            if entry[2] is not None and entry[2] != browser:
                return None
            del self._codes[code]
        return entry[0], entry[1]
