"""Uploads in, archives out: unpack an uploaded ImageFolder safely, keep an uploaded text table, pack an exported
folder.

An upload is untrusted: an entry may try to escape the target folder (``..``, an absolute path, a drive letter,
a symlink), or the archive may be a zip bomb, or hold small images that decode to gigabytes. :func:`unpack_zip`
refuses all of these before writing anything (the images' pixel counts are read from their headers and held
against :mod:`ogaudit.data.limits`' memory budget) and counts the bytes it actually writes, since a zip header can
lie about sizes.
"""

from __future__ import annotations

import io
import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ogaudit.data.imagefiles import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, MAX_SIDE, is_tool_junk
from ogaudit.data.images import name_length_problem, shown_path
from ogaudit.data.limits import check_image_archive, upload_budget
from ogaudit.errors import DataError

MAX_UPLOAD_BYTES = 200 * 1024**2
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_FILES = 200_000
_CHUNK = 1024**2
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def _entry_problem(name: str) -> str | None:
    """Why an archive member name is unsafe to extract, or None."""
    if "\\" in name or "\x00" in name:
        return "has a backslash or NUL in its name"
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        return "is an absolute path"
    if ".." in path.parts:
        return "contains '..'"
    return name_length_problem(name)


def _clash_problem(members: list[zipfile.ZipInfo]) -> str | None:
    """Entries that would land on the same file: a name given twice, or a file where another entry needs a
    folder. Extracting them would overwrite one with the other, or fail half-way."""
    files: dict[str, str] = {}
    for member in members:
        key = PurePosixPath(member.filename).as_posix()
        if key in files:
            return f"the entry {shown_path(member.filename)!r} appears more than once"
        files[key] = member.filename
    folders = {parent.as_posix() for key in files for parent in PurePosixPath(key).parents}
    for key, name in files.items():
        if key in folders:
            return f"the entry {shown_path(name)!r} is a file, and other entries put files inside it as a folder"
    return None


def save_text_table(data: bytes, name: str, dest: str | Path, *, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Keep an uploaded text table (CSV, TSV, JSON Lines or Parquet) in the new folder ``dest``; return its path.

    The file keeps its own suffix (the reader and the cleaned split's format follow it) and a name cut down to
    letters, digits, ``.``, ``_`` and ``-`` (no path from the browser is used). Refused with :class:`DataError`,
    writing nothing: another suffix, or more than ``max_upload_bytes``. Its contents are checked when the audit
    reads it (:func:`~ogaudit.data.text.load_text_dataset`: size, encoding, columns).
    """
    from ogaudit.data.text import TEXT_SUFFIXES

    suffix = Path(name).suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise DataError(
            f"{name!r} is not a text table: upload a file ending in one of {', '.join(sorted(TEXT_SUFFIXES))} "
            "(or a zip of an image folder as 'Upload zip')."
        )
    if len(data) > max_upload_bytes:
        raise DataError(
            f"{name!r} is {len(data) / 1024**2:.0f} MB; uploads are limited to {max_upload_bytes // 1024**2} MB. "
            "Put larger tables on the server and give their path."
        )
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem).strip("_")[:80] or "texts"
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=False)
    target = folder / f"{stem}{suffix}"
    target.write_bytes(data)
    return target


def unpack_zip(
    source: bytes | str | Path,
    dest: str | Path,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
    max_files: int = MAX_FILES,
) -> Path:
    """Extract a zip of an ImageFolder into the new folder ``dest``; return the folder holding the class folders.

    Refuses (with :class:`DataError`, writing nothing) archives over ``max_upload_bytes``, with more than
    ``max_files`` files or more than ``max_unpacked_bytes`` declared, or with an unsafe entry (``..``, absolute
    path, symlink). Stops and removes ``dest`` if the data written exceed ``max_unpacked_bytes``. When the
    archive wraps everything in one top folder, that folder is returned.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) > max_upload_bytes:
        raise DataError(f"The upload is {len(data) / 1e6:.0f} MB; the limit is {max_upload_bytes / 1e6:.0f} MB.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise DataError(f"The upload is not a zip archive ({error}). Zip an image folder and upload that.") from None
    with archive:
        for member in archive.infolist():
            problem = _entry_problem(member.filename)
            if stat.S_ISLNK(member.external_attr >> 16):
                problem = "is a symbolic link"
            if problem:
                raise DataError(f"Refused the upload: the entry {shown_path(member.filename)!r} {problem}.")
        members = [m for m in archive.infolist() if not m.is_dir() and not is_tool_junk(m.filename)]
        clash = _clash_problem(members)
        if clash:
            raise DataError(f"Refused the upload: {clash}. Zip the folder again with one file per name.")
        if len(members) > max_files:
            raise DataError(f"The upload has {len(members):,} files; the limit is {max_files:,}.")
        declared = sum(m.file_size for m in members)
        if declared > max_unpacked_bytes:
            raise DataError(
                f"The upload unpacks to {declared / 1e6:,.0f} MB; the limit is {max_unpacked_bytes / 1e6:,.0f} MB."
            )
        if not members:
            raise DataError("The upload holds no files. Zip a folder with one sub-folder of images per class.")
        check_image_archive(  # pixel counts from the images' headers, against the memory budget
            archive,
            members,
            what="the upload",
            suffixes=IMAGE_SUFFIXES,
            max_image_pixels=MAX_IMAGE_PIXELS,
            max_side=MAX_SIDE,
            budget=upload_budget(),
        )
        dest = Path(dest)
        dest.mkdir(parents=True)
        try:
            _extract(archive, members, dest, max_unpacked_bytes)
        except BaseException as error:
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(error, _DAMAGED):  # a bad CRC (a header that lied), corrupt deflate data, encryption
                raise DataError(
                    f"Refused the upload: it is a damaged or unsupported zip archive ({error}). Zip the image folder "
                    "again, without encryption, and upload that."
                ) from error
            if isinstance(error, OSError):  # a name this file system refuses, a full disk: nothing is left
                raise DataError(
                    f"Could not unpack the upload: {error.strerror or error}"
                    f"{f' ({shown_path(error.filename)})' if getattr(error, 'filename', None) else ''}. Nothing was "
                    "kept; free disk space, or rename the entries, and upload it again."
                ) from error
            raise
    return image_folder_root(dest)


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], dest: Path, limit: int) -> None:
    written = 0
    for member in members:
        target = dest.joinpath(*PurePosixPath(member.filename).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as source, open(target, "wb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise DataError(f"The upload unpacks to more than {limit / 1e6:,.0f} MB (its header said less).")
                out.write(chunk)


def image_folder_root(folder: Path) -> Path:
    """``folder``, or its only sub-folder when everything was zipped inside one top folder."""
    entries = [p for p in folder.iterdir() if not is_tool_junk(p.name)]
    if len(entries) == 1 and entries[0].is_dir() and any(p.is_dir() for p in entries[0].iterdir()):
        return entries[0]
    return folder


def zip_folder(folder: str | Path) -> bytes:
    """The files under ``folder`` as a zip (paths relative to it), e.g. a cleaned split for download."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
