"""FiftyOne's image-classification export, ``fiftyone.types.FiftyOneImageClassificationDataset``, read from its
files (FiftyOne itself, and its database, are not needed)::

    export/
        data/<uuid>.<ext>       the images (sub-folders allowed)
        labels.json             {"classes": [...] or absent, "labels": {"<uuid>": <target>, ...}}

``<uuid>`` is the image's path under ``data/`` without its extension; a target is a class index into ``classes``,
a class name, ``{"label": name, ...}`` (a ``Classification``) or ``null`` (unlabelled: left out, listed). Instead of
``data/``, a ``data.json`` may map each uuid to the image's path; such paths are untrusted and read as a manifest's
(:mod:`ogaudit.data.manifest`). Multi-label targets (a list) are refused: ogaudit audits one label per image.

FiftyOne's other classification layout, ``ImageClassificationDirectoryTree`` (``<class>/<image>``), is an
ImageFolder: :func:`~ogaudit.data.images.load_image_folder` reads it, its ``_unlabeled`` folder left out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from ogaudit.data.dataset import Dataset, SkippedInput
from ogaudit.data.limits import check_budget, format_bytes
from ogaudit.errors import DataError

LABELS_FILE = "labels.json"
DATA_FOLDER = "data"
DATA_MAP = "data.json"
MAX_LABELS_BYTES = 256 * 1024**2
"""A larger ``labels.json`` is refused before it is parsed (a million images take about 60 MB)."""
FIFTYONE_KIND = "fiftyone"
JSON_BYTES_PER_BYTE = 16
"""Memory Python's ``json`` needs per byte of a ``labels.json`` it parses (dicts of short strings), counted
against the memory budget before parsing."""


def is_fiftyone_export(path: Path) -> bool:
    """Whether the folder ``path`` holds a ``labels.json`` beside a ``data/`` folder or a ``data.json``."""
    return (path / LABELS_FILE).is_file() and ((path / DATA_FOLDER).is_dir() or (path / DATA_MAP).is_file())


def data_folder_of_export(path: Path) -> str | None:
    """The error for a folder that is the ``data/`` folder of an export (read as an ImageFolder it would give
    wrong classes), or None."""
    if path.name == DATA_FOLDER and (path.parent / LABELS_FILE).is_file():
        return f"{str(path)!r} is the data/ folder of a FiftyOne export: give its parent, {str(path.parent)!r}."
    return None


def load_fiftyone_export(
    path: Path, *, fold_label_case: bool = False, data_roots: list[str | os.PathLike] | None = None
) -> Dataset:
    """A FiftyOne image-classification export (see the module) as a :class:`Dataset` of ``kind`` ``"fiftyone"``.

    Sample ids are the image paths relative to ``path`` (``data/<uuid>.<ext>``); classes in ``classes`` order
    when the file lists them (every listed class kept), else sorted by name. Images are read as an ImageFolder's
    (headers checked against the memory budget before decoding, damaged files skipped and listed).

    Raises
    ------
    DataError : a ``labels.json`` that is too large, not JSON, of another FiftyOne type (detections,
        segmentations), with multi-label or out-of-range targets; no usable image.
    """
    from ogaudit.data.images import _dataset_from_files
    from ogaudit.data.manifest import allowed_folders

    path = Path(path).resolve()
    what = repr(str(path / LABELS_FILE))
    labels_file = path / LABELS_FILE
    size = labels_file.stat().st_size
    if size > MAX_LABELS_BYTES:
        raise DataError(
            f"{what} is {format_bytes(size)}; ogaudit reads a labels.json of at most {format_bytes(MAX_LABELS_BYTES)}."
        )
    check_budget(size * JSON_BYTES_PER_BYTE, what=what, detail=f"a {format_bytes(size)} JSON file parsed")
    try:
        content = json.loads(labels_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(f"{what} is not valid JSON ({exc}). Export it again from FiftyOne.") from exc
    if not isinstance(content, dict) or not isinstance(content.get("labels"), dict):
        raise DataError(_other_layout_message(what, content))
    classes = content.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise DataError(f'{what}: "classes" must be a list of class names; got {str(classes)[:80]}.')
    files = _image_files(path)
    skipped: list[SkippedInput] = []
    rels, names = [], []
    for uuid, target in content["labels"].items():
        name, problem = _target(target, classes, uuid, what)
        if problem:
            skipped.append(SkippedInput(str(uuid)[:200], problem))
            continue
        rel = files.get(str(uuid))
        if rel is None:
            skipped.append(SkippedInput(str(uuid)[:200], "file not found (no image with this uuid in data/)"))
            continue
        rels.append(rel)
        names.append(name)
    if not rels:
        raise DataError(
            f"{what} names no image that is in {str(path / DATA_FOLDER)!r} with a label ({len(skipped)} skipped, "
            f"e.g. {[(s.path, s.reason) for s in skipped[:3]]}). Export it again from FiftyOne."
        )
    dataset = _dataset_from_files(
        path,
        rels,
        names,
        kind=FIFTYONE_KIND,
        source=path,
        skipped=skipped,
        fold=fold_label_case,
        ordered=False,
        allowed=allowed_folders(path, data_roots)[1:],
        class_order=classes,
    )
    return dataset


def _image_files(path: Path) -> dict[str, str]:
    """``{uuid: path relative to the export}`` from ``data/`` (every file, found recursively, its uuid the path
    under ``data/`` without the extension) or from ``data.json`` (``{uuid: path}``, untrusted paths)."""
    from ogaudit.data.imagefiles import tool_junk_reason

    folder = path / DATA_FOLDER
    found: dict[str, str] = {}
    if folder.is_dir():
        for directory, subdirs, names in os.walk(folder):
            subdirs[:] = sorted(d for d in subdirs if not tool_junk_reason(d))
            for name in sorted(names):
                if tool_junk_reason(name):
                    continue
                rel = (Path(directory) / name).relative_to(path).as_posix()
                uuid = PurePosixPath(rel).relative_to(DATA_FOLDER).with_suffix("").as_posix()
                found.setdefault(uuid, rel)
        return found
    mapping_file = path / DATA_MAP
    size = mapping_file.stat().st_size
    if size > MAX_LABELS_BYTES:
        raise DataError(f"{str(mapping_file)!r} is too large ({format_bytes(size)}).")
    check_budget(
        size * JSON_BYTES_PER_BYTE, what=repr(str(mapping_file)), detail=f"a {format_bytes(size)} JSON file parsed"
    )
    try:
        mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(f"{str(mapping_file)!r} is not valid JSON ({exc}).") from exc
    if not isinstance(mapping, dict):
        raise DataError(f'{str(mapping_file)!r} must map each uuid to its image\'s path ({{"uuid": "path"}}).')
    return {str(k): str(v) for k, v in mapping.items() if isinstance(v, str)}


def _target(target, classes: list[str] | None, uuid: str, what: str) -> tuple[str | None, str | None]:
    """``(class name, None)`` or ``(None, why the sample is left out)``."""
    if isinstance(target, dict):
        if "label" not in target:
            raise DataError(_other_layout_message(what, {"labels": {uuid: target}}))
        target = target["label"]
    if target is None:
        return None, "unlabelled (null target)"
    if isinstance(target, list):
        raise DataError(
            f"{what}: the image {uuid!r} has several labels ({str(target)[:80]}): a multi-label export. ogaudit audits "
            "one label per image: export a single Classification field."
        )
    if isinstance(target, bool) or not isinstance(target, int | str):
        raise DataError(f"{what}: the image {uuid!r} has the target {str(target)[:80]!r}; a class index or name.")
    if isinstance(target, int):
        if classes is None or not 0 <= target < len(classes):
            raise DataError(
                f"{what}: the image {uuid!r} has the class index {target}, "
                + ("but the file lists no classes." if classes is None else f"outside its {len(classes)} classes.")
            )
        return classes[target], None
    return (target, None) if target.strip() else (None, "empty label")


def _other_layout_message(what: str, content) -> str:
    """The error for a labels.json of another FiftyOne dataset type, naming it when it can."""
    sample = next(iter((content or {}).get("labels", {}).values()), None) if isinstance(content, dict) else None
    kind = "an unknown layout"
    if isinstance(sample, dict):
        if "detections" in sample or (isinstance(sample.get("label"), str) and "bounding_box" in sample):
            kind = "FiftyOneImageDetectionDataset (detections)"
        elif "mask" in sample or "mask_path" in sample:
            kind = "a segmentation export"
        else:
            kind = f"targets with the keys {sorted(sample)[:6]}"
    elif isinstance(content, list):
        kind = "a JSON list (COCO or Label Studio?)"
    return (
        f"{what} is not FiftyOne's image-classification labels file (it looks like {kind}). Export with "
        "dataset.export(export_dir, dataset_type=fo.types.FiftyOneImageClassificationDataset, "
        "label_field='ground_truth'), or as an ImageFolder with fo.types.ImageClassificationDirectoryTree."
    )
