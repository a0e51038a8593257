"""The whole audit in one call: load → train → gradients → detect → map, with progress and a disk cache.

>>> from ogaudit import audit, AuditSettings
>>> result = audit("mnist5k", AuditSettings(noise_rate=0.1), out_dir="runs/demo")
>>> result.scores.head()
"""

from __future__ import annotations

import os
import platform
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ogaudit import __version__
from ogaudit.cache import ArtifactCache, default_cache_dir
from ogaudit.data import Dataset, rare_class_mask
from ogaudit.detectors import counterfactual_scores, flag_budget, make_detector
from ogaudit.embedding import gradient_map, start_umap_warm_up
from ogaudit.errors import OgauditError
from ogaudit.gradients import GradientEvidence, HeadEvidence, ProjectedEvidence
from ogaudit.metrics import detection_metrics
from ogaudit.models import AuditModel, build_model, choose_model, load_checkpoint
from ogaudit.progress import ProgressCallback, report
from ogaudit.project import Project, prepare_dataset
from ogaudit.settings import MODEL_KINDS, AuditSettings
from ogaudit.storage import fingerprint
from ogaudit.training import batched_features, load_model_state, model_cache_key, save_model, train_model

__all__ = ["AuditResult", "AuditSettings", "STAGES", "audit", "default_cache_dir"]

STAGES = ("load", "train", "gradients", "detect", "map")


@dataclass
class AuditResult:
    """What an audit produced.

    scores : one row per sample: sample_id, given_label, predicted_label, suggested_label, score (higher = more
        suspicious), rank (1 = most suspicious), flagged, confidence; true_label / is_noisy when noise was planted.
    map : sample_id, x, y (the gradient map).
    record : the run record (settings, fingerprints, versions, timings, skipped inputs, metrics).
    label_evidence : (N, C) counterfactual outlier score of each sample under each class (lowest = suggested).
    """

    scores: pd.DataFrame
    map: pd.DataFrame
    record: dict
    dataset: Dataset
    evidence: HeadEvidence
    label_evidence: np.ndarray
    out_dir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)


def audit(
    data: str | os.PathLike | Dataset,
    settings: AuditSettings | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    trust_checkpoint_code: bool = False,
) -> AuditResult:
    """Run the Outlier Gradient Analysis pipeline on ``data`` and, with ``out_dir``, write its project files.

    ``data`` is a built-in name, a path (ImageFolder, CSV manifest, .npz) or a loaded :class:`Dataset`.
    ``progress(stage, fraction, message)`` is called along the way; setting ``cancel`` stops at the next chunk.
    Everything that can be checked before training is: the output and cache folders take files, and the layer
    names of ``settings.layers`` exist in the built model. Cached artifacts that are damaged or stale are
    recomputed; each such event is listed in ``record["notices"]``.

    ``trust_checkpoint_code`` lets a TorchScript checkpoint load, which runs the file's code
    (:func:`~ogaudit.models.load_checkpoint`); the app never sets it.

    Raises :class:`~ogaudit.errors.OgauditError` subclasses with readable messages; ``Cancelled`` on cancel.
    """
    settings = settings or AuditSettings()
    cache = ArtifactCache(cache_dir)
    project = Project(out_dir).writable() if out_dir is not None else None
    notices: list[str] = []

    def notice(text: str) -> None:
        notices.append(text)
        report(progress, "notice", 0.0, text)

    timings: dict[str, float] = {}
    with _stage("load", timings, progress):
        dataset = prepare_dataset(data, settings, cache_dir=cache.root, progress=progress, cancel=cancel)
    with _stage("train", timings, progress):
        if settings.map_method == "umap":
            start_umap_warm_up()  # numba compiles while the model trains; the map stage then finds it done
        model, model_info = _obtain_model(dataset, settings, cache, progress, cancel, notice, trust_checkpoint_code)
    with _stage("gradients", timings, progress):
        head = _head_evidence(model, dataset, model_info["key"], cache, progress, cancel, notice)
        layers = _layer_gradients(model, dataset, head, settings, model_info["key"], cache, progress, cancel, notice)
    with _stage("detect", timings, progress):
        scores, label_evidence = _detect(head, layers, dataset, settings)
    with _stage("map", timings, progress):
        coords = _gradient_map(
            head if layers is None else layers, settings, model_info["key"], cache, progress, cancel, notice
        )
    map_frame = pd.DataFrame({"sample_id": dataset.sample_ids, "x": coords[:, 0], "y": coords[:, 1]})
    record = _run_record(data, dataset, settings, model_info, timings, scores, notices)
    result = AuditResult(scores, map_frame, record, dataset, head, label_evidence)
    if project is not None:
        _warn_about_an_earlier_review(project, dataset, notice)
        label_frame = pd.DataFrame(label_evidence, columns=[str(c) for c in dataset.class_names])
        label_frame.insert(0, "sample_id", dataset.sample_ids)
        result.paths = project.write_run(
            scores,
            map_frame,
            record,
            label_evidence=label_frame,
            head_evidence={"features": head.features, "probs": head.probs, "labels": head.labels},
        )
        result.out_dir = project.path
    return result


def _warn_about_an_earlier_review(project: Project, dataset: Dataset, notice) -> None:
    """A re-scan of other data into a folder with a review: say so (the review is kept, never changed)."""
    if not project.ledger_path().exists() or not project.has_run():
        return
    try:
        previous = project.read_record()["dataset"]["fingerprint"]
    except OgauditError:
        return
    if previous != dataset.fingerprint():
        notice(
            f"{str(project.ledger_path())!r} holds a review of the data this folder audited before (dataset "
            f"{previous}); this scan audits other data ({dataset.fingerprint()}). The review is kept as it is, but "
            "its decisions may not fit these samples: export them and move ledger.sqlite away, or scan into a new "
            "folder."
        )


@contextmanager
def _stage(name: str, timings: dict[str, float], progress: ProgressCallback | None):
    """Time one stage into ``timings`` and report its start and, if it succeeds, its end."""
    report(progress, name, 0.0, "starting")
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 3)
    report(progress, name, 1.0, "done")


def _obtain_model(dataset, settings: AuditSettings, cache: ArtifactCache, progress, cancel, notice, trust_code=False):
    """A trained model: the user's checkpoint, or one from the cache, or one trained now (then cached).

    The model is built (and ``settings.layers`` checked against it) before any training starts.
    """
    if settings.model not in MODEL_KINDS:
        model = load_checkpoint(settings.model, dataset, arch=settings.arch, trust_code=trust_code)
        _check_layers(model, settings)
        key = fingerprint("checkpoint", Path(settings.model).read_bytes(), settings.arch, dataset.fingerprint())
        return model, {"kind": model.kind, "reason": "user checkpoint", "key": key, "cached": False, "history": []}
    choice = choose_model(dataset, settings.model)
    train = settings.train_settings
    key = model_cache_key(dataset, choice.kind, train)
    model = build_model(choice.kind, dataset, seed=settings.seed)
    _check_layers(model, settings)
    info = {"kind": choice.kind, "reason": choice.reason, "key": key, "epochs": train.resolved_epochs(len(dataset))}
    entry = cache.entry("model", key, {"kind": choice.kind, "data": dataset.fingerprint(), "train": asdict(train)})

    def read(folder: Path) -> bool:
        load_model_state(model, folder / "model.pt")
        return True

    damaged = entry.path.is_dir()
    if entry.load(read, notice=notice):
        return model, {**info, "cached": True, "history": []}
    if damaged:  # a failed load may have touched some weights: start from the seeded initial ones again
        model = build_model(choice.kind, dataset, seed=settings.seed)
    run = train_model(model, dataset, train, progress=progress, cancel=cancel)
    entry.save(lambda folder: save_model(model, folder / "model.pt"))
    return model, {
        **info,
        "cached": False,
        "history": run.history,
        "epochs": run.epochs or info["epochs"],
        "notes": run.notes,
        "holdout": run.holdout,
    }


def _check_layers(model: AuditModel, settings: AuditSettings) -> None:
    if settings.layers:
        from ogaudit.gradients.layers import resolve_layers

        resolve_layers(model, settings.layers)


def _head_evidence(model, dataset, model_key, cache: ArtifactCache, progress, cancel, notice) -> HeadEvidence:
    """Penultimate features and probabilities from one batched forward pass, cached by model and data."""
    entry = cache.entry("evidence", fingerprint(model_key, dataset.fingerprint()), {"model": model_key})

    def read(folder: Path) -> HeadEvidence:
        with np.load(folder / "evidence.npz") as saved:
            evidence = HeadEvidence(saved["features"], saved["probs"], dataset.y.copy())
        if evidence.features.shape[0] != len(dataset) or evidence.probs.shape != (len(dataset), dataset.n_classes):
            raise ValueError(f"shapes {evidence.features.shape}, {evidence.probs.shape} do not fit the data")
        return evidence

    cached = entry.load(read, notice=notice)
    if cached is not None:
        return cached
    features = batched_features(model, dataset.x, progress=progress, cancel=cancel, stage="gradients")
    with torch.no_grad():
        logits = model.head(torch.as_tensor(features)).numpy()
    evidence = HeadEvidence.from_head(features, logits, dataset.y)

    def write(folder: Path) -> None:
        with open(folder / "evidence.npz", "wb") as handle:
            np.savez(handle, features=evidence.features, probs=evidence.probs)

    entry.save(write)
    return evidence


def _layer_gradients(model, dataset, head, settings, model_key, cache, progress, cancel, notice):
    """Projected gradients of ``settings.layers``, written resumably into a cache entry's work folder."""
    if not settings.layers:
        return None
    from ogaudit.gradients.layers import LayerGradientSettings, project_layer_gradients

    layer_settings = LayerGradientSettings(layers=settings.layers, dim=settings.projection_dim, seed=settings.seed)
    key = fingerprint(model_key, dataset.fingerprint(), asdict(layer_settings))
    entry = cache.entry("layer-gradients", key, {"model": model_key, "layers": asdict(layer_settings)})

    def compute(folder: Path) -> np.ndarray:
        # The engine's own sidecar checks settings and fingerprints; on a complete entry every chunk is done.
        return project_layer_gradients(
            model,
            torch.as_tensor(dataset.x),
            torch.as_tensor(dataset.y),
            layer_settings,
            out_path=folder / "gradients.npy",
            input_fingerprint=fingerprint(model_key, dataset.fingerprint()),
            progress=lambda _stage, fraction, message: report(progress, "gradients", fraction, message),
            cancel=cancel,
        )

    matrix = entry.load(compute, notice=notice)
    if matrix is None:
        matrix = compute(entry.work_dir())  # resumes an interrupted run from its done mask
        entry.commit()
    return ProjectedEvidence(matrix, head.probs, head.labels)


def _gradient_map(evidence: GradientEvidence, settings, model_key, cache, progress, cancel, notice) -> np.ndarray:
    """The 2-D gradient map of ``evidence``, cached by model, layers and layout."""
    from ogaudit.embedding import MAP_DIM

    map_settings = {
        "model": model_key,
        "layers": list(settings.layers),
        "projection_dim": settings.projection_dim,
        "method": settings.map_method,
        "seed": settings.seed,
        "map_dim": MAP_DIM,
    }
    entry = cache.entry("map", fingerprint(map_settings), map_settings)
    n = len(evidence.labels)

    def read(folder: Path) -> np.ndarray:
        coords = np.load(folder / "map.npy")
        if coords.shape != (n, 2):
            raise ValueError(f"shape {coords.shape} does not fit {n} samples")
        return coords

    coords = entry.load(read, notice=notice)
    if coords is not None:
        return coords
    coords = gradient_map(evidence, method=settings.map_method, seed=settings.seed, progress=progress, cancel=cancel)

    def write(folder: Path) -> None:
        with open(folder / "map.npy", "wb") as handle:
            np.save(handle, coords)

    entry.save(write)
    return coords


def _detect(head: HeadEvidence, layers: ProjectedEvidence | None, dataset: Dataset, settings: AuditSettings):
    """Scores, ranks, flags and suggested labels as the per-sample table, and the (N, C) label evidence."""
    source: GradientEvidence = head if layers is None else layers
    detector = make_detector(settings.detector, seed=settings.seed).fit(source)
    score = detector.outlier_scores(source)
    # Suggestions need counterfactual gradients, which only the last layer's closed form gives.
    head_detector = (
        detector if source.counterfactual else make_detector(settings.detector, seed=settings.seed).fit(head)
    )
    label_evidence = counterfactual_scores(head_detector, head)
    flagged, rank = flag_budget(score, settings.budget)
    names = np.asarray(dataset.class_names, dtype=object)
    predicted = head.probs.argmax(axis=1)
    suggested = label_evidence.argmin(axis=1)
    table = pd.DataFrame(
        {
            "sample_id": dataset.sample_ids,
            "given_label": names[dataset.y],
            "predicted_label": names[predicted],
            "suggested_label": names[suggested],
            "score": score,
            "rank": rank,
            "flagged": flagged,
            "confidence": head.probs[np.arange(len(dataset)), dataset.y],
            "rare_class": rare_class_mask(dataset),  # flagged maybe for being rare: a caveat beside the flag
        }
    )
    if dataset.true_y is not None:
        table["true_label"] = names[dataset.true_y]
        table["is_noisy"] = dataset.true_y != dataset.y
    return table, label_evidence


def _run_record(data, dataset: Dataset, settings, model_info: dict, timings: dict, scores, notices) -> dict:
    import sklearn

    if isinstance(data, Dataset):
        spec = dataset.source
    else:
        path = Path(data).expanduser()
        spec = str(path.resolve()) if path.exists() else str(data)  # a path that works from any folder
    record = {
        "ogaudit_version": __version__,
        "fingerprint": fingerprint(model_info["key"], settings.to_dict()),
        "settings": settings.to_dict(),
        "dataset": {
            "spec": spec,
            "kind": dataset.kind,
            "fingerprint": dataset.fingerprint(),
            "samples": len(dataset),
            "shape": list(dataset.x.shape[1:]),
            "class_names": [str(c) for c in dataset.class_names],
            "skipped_count": len(dataset.skipped),
            "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
            "notes": list(getattr(dataset, "notes", []) or []),
        },
        "model": dict(model_info),
        "flagged": int(scores["flagged"].sum()),
        "timings_s": timings,
        "notices": list(notices),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
        },
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if dataset.is_text:
        from ogaudit.encoders import DEFAULT_ENCODER

        origin = dataset.text_origin
        record["dataset"]["text"] = {
            "encoder": DEFAULT_ENCODER,
            "format": origin.format,
            "text_column": origin.text_column,
            "label_column": origin.label_column,
            "id_column": origin.id_column,
        }
    if "is_noisy" in scores:
        record["metrics"] = detection_metrics(
            scores["is_noisy"].to_numpy(), scores["score"].to_numpy(), budget=settings.budget
        )
    return record
