"""Where the files a table lists may lie: a CSV manifest's paths, a Parquet/Arrow table's image paths, a FiftyOne
``data.json``. Every such path is untrusted (the table may come from anyone).

* A relative path is read against the folder of the table that lists it (``..`` may not lead out of it).
* An absolute path is read only when it lies, with every symlink followed, inside that folder or inside one of the
  data roots: the folders listed in ``$OGAUDIT_DATA_ROOTS`` (``os.pathsep``-separated), the same list that says
  which server paths the app opens (:mod:`ogaudit.server.sandbox`).
* Anything else is skipped with a reason that names the fix (a relative path, or the folder in
  ``$OGAUDIT_DATA_ROOTS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

DATA_ROOTS_ENV = "OGAUDIT_DATA_ROOTS"

PATH_COLUMNS = ("path", "filepath", "file_path", "image_path", "img_path", "filename", "file_name", "file", "image")
"""Column names a manifest's path column is found by (case and surrounding spaces ignored), in this order."""

OUTSIDE_REASON = "outside the dataset root"
"""How skip reasons for a path that leads out of the allowed folders begin (the loaders' fix hints key on it)."""


def data_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The folders listed in ``$OGAUDIT_DATA_ROOTS``, resolved; empty when it is unset."""
    text = (os.environ if environ is None else environ).get(DATA_ROOTS_ENV, "")
    return [Path(part.strip()).expanduser().resolve() for part in text.split(os.pathsep) if part.strip()]


def allowed_folders(folder: str | os.PathLike, roots: Iterable[str | os.PathLike] | None) -> tuple[Path, ...]:
    """``folder`` (the listing table's folder) and the data ``roots`` (default :func:`data_roots`), resolved."""
    roots = data_roots() if roots is None else [Path(r).expanduser().resolve() for r in roots]
    return (Path(folder).resolve(), *roots)


def outside_problem(candidate: Path, allowed: tuple[Path, ...], *, absolute: bool) -> str | None:
    """Why the file ``candidate`` may not be read (it resolves outside every folder of ``allowed``), or None.

    ``absolute``: the table listed it as an absolute path (the message then names ``$OGAUDIT_DATA_ROOTS``).
    """
    resolved = candidate.resolve()
    if any(resolved.is_relative_to(place) for place in allowed):
        return None
    if absolute:
        return (
            f"{OUTSIDE_REASON} (an absolute path outside the table's folder and the data roots "
            f"{[str(p) for p in allowed[1:]] or 'in $' + DATA_ROOTS_ENV}): not read"
        )
    return f"{OUTSIDE_REASON} (absolute path, '..' or a symlink leading out): not read"
