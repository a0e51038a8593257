"""The setup form's choices turned into an audit request: a project folder, a data spec and settings.

Kept apart from the widgets so that tests can call it: it validates everything (raising
:class:`~ogaudit.errors.OgauditError` with a readable message), unpacks an uploaded zip safely, saves an uploaded
checkpoint, and removes the new project folder again when anything is wrong.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ogaudit.data.builtins import BUILTINS
from ogaudit.data.instructions import INSTRUCTION_BUILTINS
from ogaudit.data.text import TEXT_BUILTINS, TEXT_SUFFIXES
from ogaudit.data.uploads import save_text_table, unpack_zip
from ogaudit.errors import DataError, ModelError
from ogaudit.project import Project, slugify
from ogaudit.server import sandbox
from ogaudit.settings import DEFAULT_BUDGET, DEFAULT_DETECTOR, AuditSettings, check_budget

SOURCES = ("Built-in", "Path", "Upload zip", "Upload text table")
MODEL_CHOICES = ("auto", "cnn", "mlp", "efficientnet", "linear", "lora", "checkpoint")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


@dataclass(frozen=True)
class SetupChoices:
    """What a person chose in the setup panel (uploads as bytes with their file names)."""

    source: str = "Built-in"
    builtin: str = "mnist5k"
    path: str = ""
    upload: bytes | None = None
    upload_name: str = ""
    text_upload: bytes | None = None
    text_upload_name: str = ""
    text_column: str = ""
    label_column: str = ""
    id_column: str = ""
    path_column: str = ""
    model: str = "auto"
    checkpoint: bytes | None = None
    checkpoint_name: str = ""
    arch: str = ""
    predictions: bytes | None = None
    predictions_name: str = ""
    detector: str = DEFAULT_DETECTOR
    budget: float = DEFAULT_BUDGET
    map_method: str = "umap"
    noise_rate: float = 0.0
    noise_kind: str = "symmetric"
    epochs: int = 0
    limit: int = 0
    name: str = ""


def prepare_audit(choices: SetupChoices, root: str | Path, *, data_roots: list[Path] | None = None):
    """Create the project folder for ``choices`` under ``root``; return ``(folder, data spec, AuditSettings)``.

    A server path must lie inside ``data_roots`` (default: ``$OGAUDIT_DATA_ROOTS``; see :mod:`ogaudit.server.sandbox`),
    checked before anything is created.
    """
    roots = sandbox.data_roots() if data_roots is None else data_roots
    if choices.source not in SOURCES:
        raise DataError(f"Unknown data source {choices.source!r}; choose one of {SOURCES}.")
    if choices.source == "Path" and not choices.path.strip():
        raise DataError(
            "Give the path of an image folder, a CSV manifest, a Hugging Face save_to_disk folder or .parquet/.arrow "
            "table, a FiftyOne export or an .npz file."
        )
    if choices.source == "Upload zip" and not choices.upload:
        raise DataError("Upload a zip of an image folder (one sub-folder of images per class) first.")
    if choices.source == "Upload text table" and not choices.text_upload:
        raise DataError(
            f"Upload a text table ({', '.join(sorted(TEXT_SUFFIXES))}) with a text and a label column first."
        )
    if choices.model == "checkpoint" and not choices.checkpoint:
        raise ModelError("Upload a checkpoint file (.pt, .pth) or choose another model.")
    server_path = sandbox.resolve_server_path(choices.path, roots) if choices.source == "Path" else None
    label = {
        "Built-in": choices.builtin,
        "Path": _data_name(server_path) if server_path is not None else "",
        "Upload zip": Path(choices.upload_name).stem or "upload",
        "Upload text table": Path(choices.text_upload_name).stem or "texts",
    }
    project = Project.create(root, choices.name.strip() or slugify(label[choices.source])).path
    try:
        data = str(server_path) if server_path is not None else _data_spec(choices, project)
        model = _model_spec(choices, project)
        predictions = _predictions_spec(choices, project)
        settings = AuditSettings(
            model=model,
            arch=choices.arch.strip() or None,
            epochs=choices.epochs or None,
            detector=choices.detector,
            budget=check_budget(choices.budget),
            map_method=choices.map_method,
            noise_rate=float(choices.noise_rate),
            noise_kind=choices.noise_kind,
            limit=choices.limit or None,
            text_column=choices.text_column.strip() or None,
            label_column=choices.label_column.strip() or None,
            id_column=choices.id_column.strip() or None,
            path_column=choices.path_column.strip() or None,
            predictions=predictions,
        )
    except BaseException:
        shutil.rmtree(project, ignore_errors=True)
        raise
    return project, data, settings


def _data_name(path: Path) -> str:
    """A project's default name from its data's path: a folder's name, a file's without its suffix
    ("reviews.csv" → "reviews", "train.parquet" → "train"; a compressed "reviews.csv.gz" → "reviews")."""
    if not path.is_file():
        return path.name
    stem = Path(path.stem)
    if path.suffix.lower() in (".gz", ".bz2", ".xz", ".zst", ".zip") and stem.suffix:
        stem = Path(stem.stem)  # the compression and the format: "reviews.csv.gz" → "reviews"
    return stem.name or path.name


def _data_spec(choices: SetupChoices, project: Path) -> str:
    if choices.source == "Built-in":
        if choices.builtin not in (*BUILTINS, *TEXT_BUILTINS, *INSTRUCTION_BUILTINS):
            names = ", ".join((*BUILTINS, *TEXT_BUILTINS, *INSTRUCTION_BUILTINS))
            raise DataError(f"{choices.builtin!r} is not a built-in dataset; choose one of {names}.")
        return choices.builtin
    if choices.source == "Upload text table":
        return str(save_text_table(choices.text_upload, choices.text_upload_name, Project(project).upload_dir()))
    return str(unpack_zip(choices.upload, Project(project).upload_dir()))


def _predictions_spec(choices: SetupChoices, project: Path) -> str | None:
    """The uploaded predictions file (features + probabilities of the user's model), kept in the project folder and
    read by the audit (:mod:`ogaudit.data.predictions`: no pickles, sizes checked before decoding); None without."""
    if not choices.predictions:
        return None
    from ogaudit.data.predictions import SUFFIXES

    suffix = Path(choices.predictions_name).suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"The predictions file {choices.predictions_name!r} should be one of {', '.join(SUFFIXES)} (features and "
            "probs or logits per sample; README, Your own model)."
        )
    if choices.model != "auto" or choices.epochs:
        raise ModelError(
            "Predictions replace the model (nothing is trained or run): leave Model at auto and Epochs at 0, or "
            "remove the predictions file."
        )
    path = Project(project).predictions_path(suffix)
    path.write_bytes(choices.predictions)
    return str(path)


def _model_spec(choices: SetupChoices, project: Path) -> str:
    if choices.model != "checkpoint":
        return choices.model
    suffix = Path(choices.checkpoint_name).suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ModelError(f"The checkpoint {choices.checkpoint_name!r} should end in one of {CHECKPOINT_SUFFIXES}.")
    path = Project(project).checkpoint_path(suffix)
    path.write_bytes(choices.checkpoint)
    from ogaudit.models.nets import TRUST_CODE_FLAG, checkpoint_format

    if checkpoint_format(path) == "torchscript":  # refused now, not in the job: the app never runs a file's code
        raise ModelError(
            f"The checkpoint {choices.checkpoint_name!r} is a TorchScript program: loading it would run its code on "
            f"this server, so uploads of TorchScript are refused (only its owner can allow it, on the command line "
            f"with {TRUST_CODE_FLAG}). Upload a state dict (torch.save(model.state_dict(), path)) or .safetensors."
        )
    return str(path)
