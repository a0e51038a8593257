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
from ogaudit.data import Dataset, load_dataset
from ogaudit.detectors import (
    DEFAULT_DETECTOR,
    DETECTORS,
    GRADIENT_DETECTORS,
    MatrixEvidence,
    counterfactual_scores,
    flag_budget,
    make_detector,
)
from ogaudit.embedding import MAP_METHODS, gradient_map, start_umap_warm_up
from ogaudit.errors import DataError, SettingsError
from ogaudit.gradients import HeadEvidence
from ogaudit.metrics import detection_metrics
from ogaudit.models import MODEL_KINDS, AuditModel, build_model, choose_model, load_checkpoint
from ogaudit.noise import NOISE_KINDS, inject_label_noise
from ogaudit.progress import ProgressCallback, report
from ogaudit.storage import atomic_path, ensure_writable_dir, fingerprint, write_json
from ogaudit.training import (
    TrainSettings,
    batched_features,
    load_model_state,
    model_cache_key,
    save_model,
    train_model,
)

STAGES = ("load", "train", "gradients", "detect", "map")


def default_cache_dir() -> Path:
    """``$OGAUDIT_CACHE`` or ``~/.cache/ogaudit``: trained models, features and maps, keyed by their inputs."""
    return Path(os.environ.get("OGAUDIT_CACHE", Path.home() / ".cache" / "ogaudit"))


@dataclass(frozen=True)
class AuditSettings:
    """Everything that decides an audit's result. Validated on creation; saved in ``run.json``.

    model : "auto" (MLP for vectors, small CNN for images ≤ 64 px, pretrained EfficientNet-Lite0 above),
        "cnn", "mlp", "efficientnet", or a checkpoint path (TorchScript, or a state dict with ``arch``).
    detector : one of ``DETECTORS``; higher score = more suspicious.
    budget : fraction of samples to flag (0.05 = 5%) or, when ≥ 1, a count.
    layers : empty for the last layer in closed form; else names of Linear/Conv2d layers whose gradients are
        projected to ``projection_dim`` dimensions.
    noise_rate, noise_kind : plant label noise (demos, benchmarks); the true labels are kept for scoring.
    """

    model: str = "auto"
    arch: str | None = None
    epochs: int | None = None
    detector: str = DEFAULT_DETECTOR
    budget: float = 0.05
    map_method: str = "umap"
    seed: int = 0
    noise_rate: float = 0.0
    noise_kind: str = "symmetric"
    limit: int | None = None
    layers: tuple[str, ...] = ()
    projection_dim: int = 4096

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.model not in MODEL_KINDS and not Path(self.model).suffix:
            raise SettingsError(
                f"model {self.model!r} is not one of {MODEL_KINDS} and does not look like a checkpoint path."
            )
        if self.detector not in DETECTORS:
            raise SettingsError(f"detector {self.detector!r} is not one of {sorted(DETECTORS)}.")
        if self.layers and self.detector not in GRADIENT_DETECTORS:
            raise SettingsError(f"layers need a gradient detector {GRADIENT_DETECTORS}; got {self.detector!r}.")
        if self.map_method not in MAP_METHODS:
            raise SettingsError(f"map_method {self.map_method!r} is not one of {MAP_METHODS}.")
        if self.noise_kind not in NOISE_KINDS:
            raise SettingsError(f"noise_kind {self.noise_kind!r} is not one of {NOISE_KINDS}.")
        if not 0 <= self.noise_rate < 1:
            raise SettingsError(f"noise_rate must be in [0, 1); got {self.noise_rate}.")
        if self.budget <= 0 or (self.budget >= 1 and self.budget != int(self.budget)):
            raise SettingsError(f"budget must be a fraction in (0, 1) or a whole count ≥ 1; got {self.budget}.")
        if self.projection_dim < 16:
            raise SettingsError(f"projection_dim must be at least 16; got {self.projection_dim}.")
        TrainSettings(epochs=self.epochs, seed=self.seed)

    @property
    def train_settings(self) -> TrainSettings:
        return TrainSettings(epochs=self.epochs, seed=self.seed)


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
) -> AuditResult:
    """Run the Outlier Gradient Analysis pipeline on ``data`` and, with ``out_dir``, write its files.

    ``data`` is a built-in name, a path (ImageFolder, CSV manifest, .npz) or a loaded :class:`Dataset`.
    ``progress(stage, fraction, message)`` is called along the way; setting ``cancel`` stops at the next chunk.
    """
    settings = settings or AuditSettings()
    cache = ensure_writable_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    if out_dir is not None:
        ensure_writable_dir(out_dir)
    timings: dict[str, float] = {}

    with _stage("load", timings, progress):
        dataset = _prepare_dataset(data, settings)
    with _stage("train", timings, progress):
        if settings.map_method == "umap":
            start_umap_warm_up()  # compiles while the model trains; the map stage then finds it done
        model, model_info, trajectory = _obtain_model(dataset, settings, cache, progress, cancel)
    with _stage("gradients", timings, progress):
        evidence = _head_evidence(model, dataset, model_info["key"], cache, progress, cancel)
        evidence.trajectory = trajectory
        layer_matrix = _layer_gradients(model, dataset, settings, model_info["key"], cache, progress, cancel)
    with _stage("detect", timings, progress):
        scores, label_evidence = _detect(evidence, layer_matrix, dataset, settings)
    with _stage("map", timings, progress):
        vectors = layer_matrix if layer_matrix is not None else evidence.gradients()
        map_key = fingerprint(model_info["key"], settings.layers, settings.projection_dim, settings.map_method)
        coords = gradient_map(
            vectors,
            method=settings.map_method,
            seed=settings.seed,
            cache_path=cache / "maps" / f"{map_key}.npy",
            progress=progress,
            cancel=cancel,
        )
        del vectors
    map_frame = pd.DataFrame({"sample_id": dataset.sample_ids, "x": coords[:, 0], "y": coords[:, 1]})
    record = _run_record(data, dataset, settings, model_info, timings, scores)
    result = AuditResult(scores, map_frame, record, dataset, evidence, label_evidence)
    if out_dir is not None:
        write_outputs(result, Path(out_dir))
    return result


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


def _prepare_dataset(data, settings: AuditSettings) -> Dataset:
    dataset = data if isinstance(data, Dataset) else load_dataset(data, limit=settings.limit, seed=settings.seed)
    if settings.noise_rate > 0:
        dataset = inject_label_noise(dataset, settings.noise_rate, kind=settings.noise_kind, seed=settings.seed)
    return dataset


def settings_from_record(record: dict) -> AuditSettings:
    """The :class:`AuditSettings` saved in a ``run.json``."""
    return AuditSettings(**record.get("settings", {}))


def load_run_dataset(record: dict) -> Dataset:
    """Rebuild the exact dataset a run audited (same subset, same planted noise) from its ``run.json``.

    Refuses to continue when the data on disk changed since the run: decisions are tied to a fingerprint.
    """
    dataset = _prepare_dataset(record["dataset"]["spec"], settings_from_record(record))
    if dataset.fingerprint() != record["dataset"]["fingerprint"]:
        raise DataError(
            f"The data at {record['dataset']['spec']!r} changed since the run (fingerprint "
            f"{dataset.fingerprint()} != {record['dataset']['fingerprint']}). Scan it again before reviewing."
        )
    return dataset


def _obtain_model(dataset, settings, cache, progress, cancel) -> tuple[AuditModel, dict, np.ndarray | None]:
    """A trained model and its training trajectory: the user's checkpoint (no trajectory), or one from the
    cache, or one trained now (then cached)."""
    if settings.model not in MODEL_KINDS:
        model = load_checkpoint(settings.model, dataset, arch=settings.arch)
        key = fingerprint("checkpoint", Path(settings.model).read_bytes(), settings.arch, dataset.fingerprint())
        info = {"kind": model.kind, "reason": "user checkpoint", "key": key, "cached": False, "history": []}
        return model, info, None
    choice = choose_model(dataset, settings.model)
    train = settings.train_settings
    key = model_cache_key(dataset, choice.kind, train)
    path = cache / "models" / f"{key}.pt"
    trajectory_path = cache / "models" / f"{key}.trajectory.npy"
    model = build_model(choice.kind, dataset, seed=settings.seed)
    info = {"kind": choice.kind, "reason": choice.reason, "key": key, "epochs": train.resolved_epochs(len(dataset))}
    if path.exists() and trajectory_path.exists():
        load_model_state(model, path)
        return model, {**info, "cached": True, "history": []}, np.load(trajectory_path)
    run = train_model(model, dataset, train, progress=progress, cancel=cancel)
    with atomic_path(trajectory_path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, run.trajectory)
    save_model(model, path)
    return model, {**info, "cached": False, "history": run.history}, run.trajectory


def _head_evidence(model, dataset, model_key, cache, progress, cancel) -> HeadEvidence:
    """Penultimate features and logits from one batched forward pass, cached by model and data."""
    path = cache / "evidence" / f"{model_key}.npz"
    if path.exists():
        with np.load(path) as saved:
            return HeadEvidence(saved["features"], saved["probs"], dataset.y.copy())
    features = batched_features(model, dataset.x, progress=progress, cancel=cancel, stage="gradients")
    with torch.no_grad():
        logits = model.head(torch.as_tensor(features)).numpy()
    evidence = HeadEvidence.from_head(features, logits, dataset.y)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, features=evidence.features, probs=evidence.probs)
    return evidence


def _layer_gradients(model, dataset, settings, model_key, cache, progress, cancel) -> np.ndarray | None:
    if not settings.layers:
        return None
    from ogaudit.gradients.layers import LayerGradientSettings, project_layer_gradients

    layer_settings = LayerGradientSettings(layers=settings.layers, dim=settings.projection_dim, seed=settings.seed)
    key = fingerprint(model_key, asdict(layer_settings))
    return project_layer_gradients(
        model,
        torch.as_tensor(dataset.x),
        torch.as_tensor(dataset.y),
        layer_settings,
        out_path=cache / "layer-gradients" / f"{key}.npy",
        input_fingerprint=fingerprint(model_key, dataset.fingerprint()),
        progress=lambda _stage, fraction, message: report(progress, "gradients", fraction, message),
        cancel=cancel,
    )


def _detect(evidence: HeadEvidence, layer_matrix, dataset: Dataset, settings: AuditSettings):
    """Scores, ranks, flags and suggested labels as the per-sample table."""
    source = evidence if layer_matrix is None else MatrixEvidence(layer_matrix, evidence.probs, evidence.labels)
    detector = make_detector(settings.detector, seed=settings.seed).fit(source)
    score = detector.outlier_scores(source)
    # Suggestions need counterfactual gradients, which only the last layer's closed form gives.
    head_detector = (
        detector if layer_matrix is None else make_detector(settings.detector, seed=settings.seed).fit(evidence)
    )
    label_evidence = counterfactual_scores(head_detector, evidence)
    flagged, rank = flag_budget(score, settings.budget)
    names = np.asarray(dataset.class_names, dtype=object)
    predicted = evidence.probs.argmax(axis=1)
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
            "confidence": evidence.probs[np.arange(len(dataset)), dataset.y],
        }
    )
    if dataset.true_y is not None:
        table["true_label"] = names[dataset.true_y]
        table["is_noisy"] = dataset.true_y != dataset.y
    return table, label_evidence


def _run_record(data, dataset: Dataset, settings: AuditSettings, model_info: dict, timings: dict, scores) -> dict:
    import sklearn

    spec = dataset.source if isinstance(data, Dataset) else str(data)
    settings_dict = asdict(settings)
    record = {
        "ogaudit_version": __version__,
        "fingerprint": fingerprint(model_info["key"], settings_dict),
        "settings": settings_dict,
        "dataset": {
            "spec": spec,
            "kind": dataset.kind,
            "fingerprint": dataset.fingerprint(),
            "samples": len(dataset),
            "shape": list(dataset.x.shape[1:]),
            "class_names": dataset.class_names,
            "skipped_count": len(dataset.skipped),
            "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
        },
        "model": dict(model_info),
        "flagged": int(scores["flagged"].sum()),
        "timings_s": timings,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
        },
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "is_noisy" in scores:
        record["metrics"] = detection_metrics(
            scores["is_noisy"].to_numpy(), scores["score"].to_numpy(), budget=settings.budget
        )
    return record


def write_outputs(result: AuditResult, out_dir: Path) -> None:
    """Write scores.csv, map.csv, label_evidence.csv, head_evidence.npz and run.json (each atomically)."""
    ensure_writable_dir(out_dir)
    paths = {
        "scores": out_dir / "scores.csv",
        "map": out_dir / "map.csv",
        "label_evidence": out_dir / "label_evidence.csv",
        "head_evidence": out_dir / "head_evidence.npz",
        "run": out_dir / "run.json",
    }
    with atomic_path(paths["scores"]) as tmp:
        result.scores.to_csv(tmp, index=False)
    with atomic_path(paths["map"]) as tmp:
        result.map.to_csv(tmp, index=False)
    evidence = pd.DataFrame(result.label_evidence, columns=result.dataset.class_names)
    evidence.insert(0, "sample_id", result.dataset.sample_ids)
    with atomic_path(paths["label_evidence"]) as tmp:
        evidence.to_csv(tmp, index=False)
    with atomic_path(paths["head_evidence"]) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, features=result.evidence.features, probs=result.evidence.probs, labels=result.evidence.labels)
    result.record["files"] = {name: path.name for name, path in paths.items()}
    write_json(paths["run"], result.record)
    result.out_dir, result.paths = out_dir, paths
