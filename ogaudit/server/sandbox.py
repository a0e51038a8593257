"""What a visitor of a shared server may name: server paths under configured data roots, projects by name only.

The command line trusts its user with their own machine; the app does not trust its visitors. Two rules:

* **Server data paths** (the app's *Path* source) must resolve, with every symlink followed, inside one of the
  folders listed in ``$OGAUDIT_DATA_ROOTS`` (``os.pathsep``-separated). With none configured, the app offers the
  built-in data and uploads only. ``~`` is not expanded (it would be the server's home, not the visitor's).
* **Projects** are named, never given as paths: a name is 1-60 letters, digits, ``.``, ``_``, ``-`` that does not
  start with a dot, so it cannot hold a separator, ``..`` or an absolute path.
"""

from __future__ import annotations

import re
from pathlib import Path

from ogaudit.data.manifest import DATA_ROOTS_ENV, data_roots
from ogaudit.errors import DataError

__all__ = ["DATA_ROOTS_ENV", "check_project_name", "data_roots", "resolve_server_path"]
_PROJECT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,59}")


def resolve_server_path(text: str, roots: list[Path]) -> Path:
    """``text`` as a real path inside one of ``roots`` (a relative path is taken inside the first root).

    Raises :class:`~ogaudit.errors.DataError` naming ``$OGAUDIT_DATA_ROOTS`` when server paths are off, the path
    does not exist, or it (or a symlink on the way) leads outside every root.
    """
    if not roots:
        raise DataError(
            f"This server does not open server paths ({DATA_ROOTS_ENV} is not set). Use a built-in dataset or "
            f"upload a zip; the server's administrator can list data folders in {DATA_ROOTS_ENV}."
        )
    raw = Path(text.strip())
    candidate = raw if raw.is_absolute() else roots[0] / raw
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        resolved = None
    if resolved is None or not any(resolved.is_relative_to(root) for root in roots):
        # One message whether or not the path exists: a visitor learns nothing about the rest of the server.
        raise DataError(
            f"{text.strip()!r} is not an existing path inside the data folders this server opens "
            f"({DATA_ROOTS_ENV}: {', '.join(str(r) for r in roots)}). Copy the data there, or ask the "
            "administrator to add its folder."
        )
    return resolved


def check_project_name(name: str) -> str:
    """``name`` when it is a plain project name; :class:`DataError` for anything that could be a path."""
    if not isinstance(name, str) or not _PROJECT_NAME.fullmatch(name):
        raise DataError(
            "A project is named by letters, digits, '.', '_' and '-' (no '/', '..' or absolute paths); "
            f"{name!r} is not such a name."
        )
    return name
