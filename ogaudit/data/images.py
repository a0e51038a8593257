"""Image datasets from files: an ImageFolder (one sub-folder per class) or a CSV manifest (``path,label``).

Files that cannot be used are skipped and listed with the reason and its fix; a folder whose decoded pixels would
not fit the memory budget is read from its files a batch at a time (:class:`~ogaudit.data.imagefiles.ImageFiles`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from ogaudit.data.csvtext import read_csv_table
from ogaudit.data.dataset import Dataset, SkippedInput, add_notice, canonical_labels, check_labels, rare_class_notes
from ogaudit.data.imagefiles import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    MAX_SIDE,
    ImageFiles,
    common_layout,
    header_problem,
    image_headers,
    read_image,
    stack_images,
    tool_junk_reason,
)
from ogaudit.data.limits import check_budget, image_memory_estimate
from ogaudit.data.manifest import DATA_ROOTS_ENV, PATH_COLUMNS, allowed_folders, outside_problem
from ogaudit.errors import DataError


def load_image_folder(root: Path, *, fold_label_case: bool = False) -> Dataset:
    """A torchvision-style ImageFolder: ``root/<class name>/<image>``, classes sorted by name.

    Files and folders that tools leave behind (:func:`is_tool_junk`) are never classes or samples: they are
    listed in ``skipped``. Classes whose folder holds no usable image are left out (said in ``notes``), so
    that the class list is the classes present. See :func:`load_dataset` for ``fold_label_case``.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a folder. Give a folder with one sub-folder of images per class.")
    skipped: list[SkippedInput] = []
    class_dirs = []
    for entry in sorted(root.iterdir()):
        problem = _name_problem(entry.name) or tool_junk_reason(entry.name)
        if problem is None and entry.name == UNLABELED_FOLDER and entry.is_dir():
            problem = "unlabelled images (FiftyOne's ImageClassificationDirectoryTree): not audited"
        if problem:
            skipped.append(SkippedInput(_printable(entry.name) + ("/" if entry.is_dir() else ""), problem))
        elif entry.is_dir():
            class_dirs.append(entry)
        # other loose files beside the class folders (a README, a manifest) are not samples
    if not class_dirs:
        raise DataError(f"{str(root)!r} has no class sub-folders. {near_miss_hint(root)}")
    split_hint = _split_folders_hint(root, class_dirs) or _known_layouts_inside(root, class_dirs)
    if split_hint:
        raise DataError(split_hint)
    rel_paths, labels = [], []
    for class_dir in class_dirs:
        for directory, subdirs, files in os.walk(class_dir, onerror=_unreadable_folder):
            here = Path(directory)
            kept_dirs = []
            for name in sorted(subdirs):
                problem = _name_problem(name) or tool_junk_reason(name)
                if problem:
                    skipped.append(SkippedInput(_printable((here / name).relative_to(root).as_posix()) + "/", problem))
                else:
                    kept_dirs.append(name)
            subdirs[:] = kept_dirs  # junk folders are listed once, not walked
            for name in sorted(files):
                rel = (here / name).relative_to(root).as_posix()
                problem = _name_problem(name) or tool_junk_reason(name)
                if problem:
                    skipped.append(SkippedInput(shown_path(rel), problem))
                else:
                    rel_paths.append(rel)
                    labels.append(class_dir.name)
    dataset = _dataset_from_files(
        root, rel_paths, labels, kind="imagefolder", skipped=skipped, fold=fold_label_case, ordered=True
    )
    without_files = [d.name for d in class_dirs if d.name not in set(labels)]
    if without_files:
        dataset.notes.append(
            f"folder(s) {without_files[:10]} hold no image file (only what tools leave, or nothing) and are not classes."
        )
    return dataset


UNLABELED_FOLDER = "_unlabeled"
"""The folder of unlabelled images in FiftyOne's ImageClassificationDirectoryTree: never a class."""

SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing", "dev", "eval"}


def near_miss_hint(root: Path) -> str:
    """What a folder with no class sub-folders looks like instead, and the fix (always ends with the layout)."""
    layout = "Arrange images as ROOT/<class name>/<image file>."
    try:
        entries = [e for e in root.iterdir() if not tool_junk_reason(e.name)]
    except OSError:
        return layout
    files = [e for e in entries if e.is_file()]
    images = [e for e in files if e.suffix.lower() in IMAGE_SUFFIXES]
    tables = [e for e in files if e.suffix.lower() in (".csv", ".parquet", ".arrow", ".jsonl", ".tsv", ".npz")]
    arrays = sorted(e.name for e in files if e.suffix.lower() == ".npy")
    if arrays:
        return (
            f"It holds the arrays {arrays[:4]}, but not x.npy and y.npy: name the samples x.npy ((N, ...) images or "
            "vectors) and the labels y.npy ((N,) class indices or names) to audit the folder as arrays."
        )
    zips = sorted(e.name for e in files if e.suffix.lower() == ".zip")
    if zips and not images:
        return f"It holds {zips[:3]}: unzip the archive and give the folder it holds (or upload the zip in the app)."
    if any(e.name == "labels.json" for e in files):
        return (
            "It holds a labels.json like a FiftyOne image-classification export, but no data/ folder (or data.json) "
            f"beside it. Put the images in {str(root / 'data')!r} (named by the uuids in labels.json), or export "
            "again with fo.types.FiftyOneImageClassificationDataset."
        )
    if tables:
        shown = ", ".join(repr(e.name) for e in sorted(tables)[:3])
        return (
            f"It holds {shown}: give the table's path instead (a CSV manifest of image paths and labels, or a "
            f"Parquet/Arrow table of images and labels), e.g. {str(sorted(tables)[0])!r}. {layout}"
        )
    if images:
        return (
            f"It holds {len(images)} image file(s) directly, with no labels: put each in a folder named by its "
            f"class, or list them with their labels in a CSV manifest (path,label). {layout}"
        )
    return layout


def _known_layouts_inside(root: Path, class_dirs: list[Path]) -> str | None:
    """An error when the would-be class folders are datasets of another kind (Hugging Face ``save_to_disk``
    folders, FiftyOne exports): the folder above them was given."""
    known = [
        d
        for d in class_dirs
        if (d / "state.json").is_file() or (d / "dataset_info.json").is_file() or (d / "labels.json").is_file()
    ]
    if not known:
        return None
    kind = "FiftyOne exports" if (known[0] / "labels.json").is_file() else "Hugging Face save_to_disk folders"
    return (
        f"{str(root)!r} holds {kind} ({', '.join(sorted(d.name for d in known)[:4])}), which would be read as classes "
        f"of an ImageFolder. Give one of them: {str(sorted(known)[0])!r}."
    )


def _split_folders_hint(root: Path, class_dirs: list[Path]) -> str | None:
    """An error when every 'class' is a split name (train/val/test) holding class folders: a dataset of splits."""
    names = {d.name.strip().lower() for d in class_dirs}
    if not names or not names <= SPLIT_NAMES:
        return None
    inner = [d for d in class_dirs if any(e.is_dir() and not tool_junk_reason(e.name) for e in d.iterdir())]
    if len(inner) != len(class_dirs):
        return None
    first = sorted(class_dirs)[0]
    return (
        f"{str(root)!r} holds the split folders {sorted(d.name for d in class_dirs)}, each with its own class folders: "
        f"these would be read as classes. Audit one split: give {str(first)!r} (the folder whose sub-folders are "
        "the classes)."
    )


def _unreadable_folder(error: OSError) -> None:
    """``os.walk``'s ``onerror``: a folder we may not read is not skipped in silence (its images would be missing
    from the audit): the PermissionError goes up, and :func:`~ogaudit.data.load.load_dataset` names the folder.
    Other errors (a folder removed while being walked) leave it out, as ``os.walk`` does by default."""
    if isinstance(error, PermissionError):
        raise error


def _name_problem(name: str) -> str | None:
    """A file name that is not valid UTF-8 (Python keeps its bytes as surrogates): it cannot be stored or shown."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8 (written by another system's encoding): rename it"
    return None


def _printable(text: str) -> str:
    """``text`` with undecodable bytes shown as ``\\xNN``, safe for JSON, CSV and the screen."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


WINDOWS_ABSOLUTE = re.compile(r"^([A-Za-z]:[\\/]|\\\\|//)")


def load_csv_manifest(
    path: Path,
    *,
    fold_label_case: bool = False,
    path_column: str | None = None,
    label_column: str | None = None,
    data_roots: list[str | os.PathLike] | None = None,
) -> Dataset:
    """A CSV manifest: one row per image, a path column and a label column.

    Parameters
    ----------
    path : the CSV file. The delimiter (``,`` ``;`` tab ``|``) and encoding (UTF-8 with or without BOM, UTF-16)
        are found from the file (:func:`ogaudit.data.csvtext.read_csv_table`).
    path_column, label_column : the columns' names (case and surrounding spaces ignored); by default the first
        column named as in :data:`~ogaudit.data.manifest.PATH_COLUMNS` (``path``, ``filepath``, ``filename``,
        ``file``, ``image`` ...) and :data:`~ogaudit.data.text.LABEL_COLUMNS` (``label``, ``class``,
        ``category`` ...).
    fold_label_case : see :func:`~ogaudit.data.load.load_dataset`.
    data_roots : folders whose images an absolute path may name (default ``$OGAUDIT_DATA_ROOTS``); see
        :mod:`ogaudit.data.manifest`. Relative paths are read against the CSV's folder; Windows separators
        (``images\\Bag\\1.png``) are read as ``/``.

    Rows naming junk (:func:`is_tool_junk`), missing files, non-images or files outside the allowed folders are
    skipped and listed; when none is usable the error shows a few rows and the fix.

    Raises
    ------
    DataError : a named column that the header lacks, no path or label column found, repeated paths, no usable row.
    """
    from ogaudit.data.text import LABEL_COLUMNS

    path = Path(path).resolve()
    wanted_path = path_column.strip().lower() if path_column else None
    wanted_label = label_column.strip().lower() if label_column else None
    candidates = (
        (wanted_path,) if wanted_path else PATH_COLUMNS,
        (wanted_label,) if wanted_label else LABEL_COLUMNS,
    )
    table = read_csv_table(  # the delimiter: the split that finds most of the named and the common columns
        path.read_bytes(),
        required=tuple(dict.fromkeys(candidates[0] + candidates[1] + PATH_COLUMNS + LABEL_COLUMNS)),
        what=repr(str(path)),
        error=DataError,
    )
    path_name = next((name for name in candidates[0] if name in table.header), None)
    label_name = next((name for name in candidates[1] if name in table.header and name != path_name), None)
    if path_name is None or label_name is None:
        raise DataError(_manifest_columns_message(path, table, path_column, label_column, path_name, label_name))
    if not table.rows:
        raise DataError(f"{str(path)!r} has a header but no rows.")
    at_path, at_label = table.column(path_name), table.column(label_name)
    rel_paths = [_manifest_path(cells[at_path] if at_path < len(cells) else "") for cells in table.rows]
    labels = [cells[at_label] if at_label < len(cells) else "" for cells in table.rows]
    duplicates = [p for p, n in Counter(rel_paths).items() if n > 1 and p]
    if duplicates:
        raise DataError(
            f"{str(path)!r} lists {len(duplicates)} path(s) more than once, e.g. {[shown_path(d) for d in duplicates[:3]]}. "
            "Each image may appear once: remove the repeated rows."
        )
    allowed = allowed_folders(path.parent, data_roots)[1:]
    return _dataset_from_files(
        path.parent, rel_paths, labels, kind="csv", source=path, fold=fold_label_case, ordered=False, allowed=allowed
    )


def _manifest_columns_message(path: Path, table, path_column, label_column, path_name, label_name) -> str:
    """Why a manifest's path or label column was not found, and the fix (CLI flags, API keywords)."""
    from ogaudit.data.text import LABEL_COLUMNS

    what = repr(str(path))
    if path_column and path_name is None:
        return f"{what} has no column {path_column!r} (--path-column); its columns are {table.header}. Fix the name."
    if label_column and label_name is None:
        return f"{what} has no column {label_column!r} (--label-column); its columns are {table.header}. Fix the name."
    role, names, flag = (
        ("image path", PATH_COLUMNS, "--path-column")
        if path_name is None
        else ("label", LABEL_COLUMNS, "--label-column")
    )
    return (
        f"{what} has columns {table.header}; a manifest needs an image path column and a label column (paths "
        f"relative to the CSV file), and none is a {role} column by its name ({', '.join(names)}); "
        f"{table.delimiter_note()}. Name the columns: {flag} NAME on the command line, path_column= / label_column= "
        "in Python, or the column fields in the app; for a table of texts, name its text column text (or give "
        "--text-column NAME)."
    )


def _manifest_path(text: str) -> str:
    """A manifest cell as a relative POSIX path: stripped, ``\\`` read as ``/`` (Windows), ``./`` dropped."""
    text = text.strip()
    if WINDOWS_ABSOLUTE.match(text):
        return text  # refused by _path_problem as it is, so the user sees what they wrote
    posix = text.replace("\\", "/")
    return PurePosixPath(posix).as_posix() if posix else posix


def _dataset_from_files(
    root: Path,
    rel_paths: list[str],
    labels: list[str],
    *,
    kind: str,
    source: Path | None = None,
    skipped: list[SkippedInput] | None = None,
    fold: bool = False,
    ordered: bool = True,
    allowed: tuple[Path, ...] = (),
    class_order: list[str] | None = None,
) -> Dataset:
    """Read the images at ``rel_paths`` under ``root`` with their ``labels``; skip what cannot be used.

    ``ordered``: classes in order of first appearance (ImageFolder, sorted folders); else sorted by name.
    ``class_order``: the class names in their given order (a Hugging Face ``ClassLabel``); every class is kept.
    ``allowed``: folders besides ``root`` that listed paths may lead to (:mod:`ogaudit.data.manifest`).

    Every file's header is read first (size as shown, mode). When the stacked pixels would exceed
    ``STREAM_ABOVE_BYTES``, nothing is decoded: the files usable by their headers become an :class:`ImageFiles`
    (memory then grows with N by paths only, and the memory budget does not apply); otherwise the images are
    decoded now, within the memory budget (:mod:`ogaudit.data.limits`), and damaged files are skipped with a reason.
    """
    skipped = list(skipped or [])
    notes: list[str] = []
    usable: list[tuple[str, str]] = []
    for rel, label in zip(rel_paths, labels, strict=True):
        problem = _path_problem(root, rel, allowed) or (None if label.strip() else "empty label")
        if problem:
            skipped.append(SkippedInput(shown_path(rel), problem))
        else:
            usable.append((rel, label))
    where = f"the images of {str(source or root)!r}"
    rels = [rel for rel, _ in usable]
    headers = image_headers(root, rels)
    layout = common_layout([h for h in headers if h is not None and header_problem(h) is None])
    streamed = layout is not None and len(rels) * layout[0] * layout[1] * layout[2] > STREAM_ABOVE_BYTES
    if streamed:
        images, kept = [], []
        for (rel, label), header in zip(usable, headers, strict=True):
            problem = "not a readable image" if header is None else header_problem(header)
            if problem:
                skipped.append(SkippedInput(rel, problem))
            else:
                images.append(rel)
                kept.append((rel, label))
    else:
        estimate, detail = image_memory_estimate(
            [h for h in headers if h is not None], max_image_pixels=MAX_IMAGE_PIXELS, max_side=MAX_SIDE
        )
        check_budget(estimate, what=where, detail=detail)
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
            decoded = list(pool.map(lambda item: read_image(root / item[0]), usable))
        images, kept = [], []
        for (rel, label), (image, problem) in zip(usable, decoded, strict=True):
            if problem:
                skipped.append(SkippedInput(rel, problem))
            else:
                images.append(image)
                kept.append((rel, label))
    if not images:
        raise DataError(
            f"No usable image in {str(source or root)!r} ({len(skipped)} skipped). {_skipped_summary(skipped, root)}"
        )
    mapping, fold_notes = canonical_labels([label for _, label in kept], fold=fold, what=repr(str(source or root)))
    for text in fold_notes:
        add_notice(notes, text)
    names_in_order = list(dict.fromkeys(mapping[label] for _, label in kept))
    class_names = names_in_order if ordered else sorted(names_in_order)
    if class_order is not None:
        class_names = list(dict.fromkeys(mapping.get(name, name) for name in class_order))
    empty = sorted({label.strip() for label in labels if label.strip()} - {label.strip() for _, label in kept})
    if empty:
        notes.append(
            f"class(es) {empty[:10]} have no usable image and are left out of the class list; see the skipped inputs."
        )
    if skipped:
        notes.append(f"{len(skipped)} input(s) skipped. {_skipped_summary(skipped, root)}")
    if streamed:
        height, width, channels = layout
        x = ImageFiles(root, np.array(images), (width, height), "RGB" if channels == 3 else "L")
        notes.append(
            f"{len(images):,} images are read from their files batch by batch ({width}x{height}, "
            f"{'RGB' if channels == 3 else 'grey'}), not held in memory; a file that cannot be decoded then stops "
            "the scan with its name."
        )
    else:
        x = stack_images(images)
    class_index = {name: i for i, name in enumerate(class_names)}
    y = np.array([class_index[mapping[label]] for _, label in kept], dtype=np.int64)
    paths = np.array([rel for rel, _ in kept])
    dataset = Dataset(
        x=x,
        y=y,
        sample_ids=paths.copy(),
        class_names=list(class_names),
        kind=kind,
        source=str(source or root),
        paths=paths,
        root=str(root),
        skipped=skipped,
        notes=notes,
    )
    check_labels(dataset)
    dataset.notes.extend(rare_class_notes(dataset))
    return dataset


SKIP_FIXES = {
    "file not found": "paths are relative to {root}; check the spelling, the folder and the file extension",
    "outside the dataset root": "give paths relative to {root}, without '..' or a drive letter, or list the "
    f"folder of absolute paths in ${DATA_ROOTS_ENV}",
    "not an image file type": "list only image files ({suffixes})",
    "left by a tool": "nothing to do: these are not data",
    "empty label": "give every row a label",
}


def _skipped_summary(skipped: list[SkippedInput], root: Path) -> str:
    """Most common reasons, each with up to three examples as written and the fix."""
    by_reason: dict[str, list[str]] = {}
    for item in skipped:
        key = item.reason.split(":")[0].split(" (")[0]
        by_reason.setdefault(key, []).append(item.path)
    parts = []
    for reason, examples in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[:4]:
        fix = next((f for k, f in SKIP_FIXES.items() if reason.startswith(k)), None)
        fix_text = (
            ""
            if fix is None
            else "; fix: " + fix.format(root=repr(str(root)), suffixes=" ".join(sorted(IMAGE_SUFFIXES)))
        )
        parts.append(f"{len(examples)} {reason}, e.g. {examples[:3]}{fix_text}")
    return "Reasons: " + " | ".join(parts) + "."


MAX_NAME_BYTES = 255
"""The longest file or folder name most file systems take (ext4, APFS, NTFS: 255)."""
MAX_PATH_CHARS = 4096
"""The longest path Linux takes (PATH_MAX); a manifest cell longer is no path."""
SHOWN_PATH_CHARS = 200
"""A path longer than this is shown cut, with its length, in skip reasons and messages."""


def name_length_problem(rel: str) -> str | None:
    """Why ``rel`` (``/``-separated) cannot name a file here because of its length, or None."""
    if len(rel) > MAX_PATH_CHARS:
        return f"path too long ({len(rel):,} characters; the limit is {MAX_PATH_CHARS:,})"
    longest = max((part for part in rel.split("/")), key=lambda part: len(part.encode("utf-8", "surrogateescape")))
    size = len(longest.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        return f"a file or folder name too long ({size:,} bytes; the limit is {MAX_NAME_BYTES}): shorten it"
    return None


def shown_path(text: str) -> str:
    """``text`` printable and at most about ``SHOWN_PATH_CHARS`` characters, with its full length when cut."""
    text = _printable(text)
    if len(text) <= SHOWN_PATH_CHARS:
        return text
    return f"{text[: SHOWN_PATH_CHARS // 2]}…{text[-SHOWN_PATH_CHARS // 4 :]} ({len(text):,} characters)"


def _path_problem(root: Path, rel: str, allowed: tuple[Path, ...] = ()) -> str | None:
    if not rel:
        return "empty path"
    too_long = name_length_problem(rel)
    if too_long:
        return too_long
    try:
        return _file_problem(root, rel, allowed)
    except OSError as error:  # a name the file system refuses, a folder it cannot read
        return f"cannot be read ({error.strerror or error})"


def _file_problem(root: Path, rel: str, allowed: tuple[Path, ...] = ()) -> str | None:
    """Why ``root/rel`` cannot be a sample. ``allowed``: folders besides ``root`` whose files may be named by an
    absolute path or a relative one leading there (:mod:`ogaudit.data.manifest`); empty: ``root`` only."""
    if WINDOWS_ABSOLUTE.match(rel):  # a drive letter or a network share: no place on this machine
        return "outside the dataset root (an absolute path): not read"
    absolute = Path(rel).is_absolute()
    junk = tool_junk_reason(rel)
    if junk:
        return junk
    candidate = root / rel
    problem = outside_problem(candidate, (root.resolve(), *allowed), absolute=absolute)
    if problem:
        return problem
    if not candidate.exists():
        return "file not found"
    if candidate.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file type ({candidate.suffix or 'no suffix'})"
    if candidate.stat().st_size == 0:
        return "empty file (0 bytes)"
    return None


STREAM_ABOVE_BYTES = 256 * 1024**2
"""Image files whose stacked pixels would take more than this are read batch by batch from the files
(:class:`ImageFiles`) instead of decoded into one array; below, they are decoded at load (a damaged file is then
skipped with its reason at once)."""
