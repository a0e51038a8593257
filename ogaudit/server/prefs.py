"""Each reviewer's preferences, kept on the server: today their remapped review keys.

One small JSON file per reviewer, ``$OGAUDIT_HOME/.prefs/<digest>.json`` (format 1), where ``<digest>`` is a hash of
the reviewer's name, so no name a visitor types can point outside that folder. The file holds the name too: a hash
collision (or a copied file) is read as "no preferences". Written atomically; a damaged file is read as defaults
(a preference is never worth a broken page). No streamlit here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ogaudit.review.keys import check_keys
from ogaudit.storage import atomic_path

PREFS_DIR = ".prefs"
"""Hidden (a dot folder), so the project list, which skips dot folders, never lists it."""
PREFS_FORMAT = 1
MAX_PREFS_BYTES = 64 * 1024
"""A preferences file larger than this is not read (it is not one a reviewer's keys could make)."""


class UserPrefs:
    """The preferences of reviewer ``name`` under the ogaudit home ``home``."""

    def __init__(self, home: str | os.PathLike, name: str):
        self.name = str(name)
        digest = hashlib.sha256(self.name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self.path = Path(home) / PREFS_DIR / f"{digest}.json"

    def _read(self) -> dict:
        try:
            if self.path.stat().st_size > MAX_PREFS_BYTES:
                return {}
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(saved, dict) or saved.get("name") != self.name or saved.get("format", 1) > PREFS_FORMAT:
            return {}
        return saved

    def keys(self) -> dict[str, str]:
        """The reviewer's full action → key map (:func:`~ogaudit.review.keys.check_keys`); defaults where they
        changed nothing, or when what is saved no longer passes the checks."""
        own = self._read().get("keys")
        try:
            return check_keys(own if isinstance(own, dict) else {})
        except Exception:  # noqa: BLE001 - a stale or damaged preference falls back to the defaults
            return check_keys({})

    def set_keys(self, keys: dict[str, object]) -> dict[str, str]:
        """Check and save the reviewer's keys (only those that differ from the defaults are stored); return the
        full map. Raises :class:`~ogaudit.errors.SettingsError` naming the bad key; nothing is saved then."""
        from ogaudit.review.keys import DEFAULT_KEYS

        merged = check_keys(keys)
        own = {action: key for action, key in merged.items() if DEFAULT_KEYS[action] != key}
        saved = self._read() or {"format": PREFS_FORMAT, "name": self.name}
        saved["keys"] = own
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, private=True) as tmp:
            tmp.write_text(json.dumps(saved, indent=2, sort_keys=True), encoding="utf-8")
        return merged
