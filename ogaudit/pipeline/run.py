"""The whole audit in one call: load → train → gradients → detect → map, with progress, cancel and a disk cache.

Each stage is one function of :mod:`ogaudit.pipeline.stages` (the load stage: :mod:`ogaudit.pipeline.load`) that
owns its cache entry and its format; this module runs them in order, times them, and writes the run through
:class:`~ogaudit.results.RunFolder`.

>>> from ogaudit import audit, AuditSettings
>>> result = audit("mnist5k", AuditSettings(noise_rate=0.1), out_dir="runs/demo")
>>> result.scores.head()
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ogaudit.cache.artifacts import ArtifactCache
from ogaudit.data.dataset import Dataset
from ogaudit.engines.local import ForwardEngine, resolve_engine
from ogaudit.errors import SettingsError
from ogaudit.gradients import HeadEvidence
from ogaudit.map.layout import start_umap_warm_up
from ogaudit.pipeline.load import prepare_dataset
from ogaudit.pipeline.record import run_record
from ogaudit.pipeline.stages import (
    _head_inputs_fixed,
    detect,
    frozen_features,
    head_evidence,
    layer_gradients,
    map_coordinates,
    obtain_model,
    predicted_evidence,
    training_dynamics,
)
from ogaudit.progress import ProgressCallback, report, within
from ogaudit.results import RunFolder
from ogaudit.settings import DYNAMICS_DETECTORS, AuditSettings

__all__ = ["AuditResult", "AuditSettings", "audit"]


@dataclass
class AuditResult:
    """What an audit produced.

    scores : one row per sample: sample_id, given_label, predicted_label, suggested_label, score (higher = more
        suspicious), rank (1 = most suspicious), flagged, confidence; true_label / is_noisy when noise was planted.
    map : sample_id, x, y (the gradient map).
    record : the run record (settings, fingerprints, versions, timings, skipped inputs, metrics).
    label_evidence : (N, C) counterfactual outlier score of each sample under each class (lowest = suggested).
    neighbours : ``(positions (N, k), cosines (N, k))`` of each sample's gradient neighbours as the detector found
        them; None for a detector without a neighbour search.
    """

    scores: pd.DataFrame
    map: pd.DataFrame
    record: dict
    dataset: Dataset
    evidence: HeadEvidence
    label_evidence: np.ndarray
    out_dir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    neighbours: tuple[np.ndarray, np.ndarray] | None = None
    llm: dict | None = None
    """Instruction audits: the projected LoRA gradients, reference pairs and adapters (``llm.npz``), and ``lm`` /
    ``top``, the fine-tuned model (:mod:`ogaudit.pipeline.instructions`)."""


def audit(
    data: str | os.PathLike | Dataset,
    settings: AuditSettings | None = None,
    *,
    out_dir: str | os.PathLike | RunFolder | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    trust_checkpoint_code: bool = False,
    engine: str | ForwardEngine | None = None,
    ray_address: str | None = None,
    given_model=None,
    reference: str | os.PathLike | Dataset | None = None,
) -> AuditResult:
    """Run the Outlier Gradient Analysis pipeline on ``data`` and, with ``out_dir``, write its project files.

    ``data`` is a built-in name, a path (ImageFolder, CSV manifest, .npz) or a loaded :class:`Dataset`.
    ``progress(stage, fraction, message)`` is called along the way; setting ``cancel`` stops at the next chunk.
    Everything that can be checked before training is: the output and cache folders take files, and the layer
    names of ``settings.layers`` exist in the built model. Cached artifacts that are damaged or stale are
    recomputed; each such event is listed in ``record["notices"]``.

    ``trust_checkpoint_code`` lets a TorchScript checkpoint load, which runs the file's code
    (:func:`~ogaudit.models.nets.load_checkpoint`); the app never sets it.

    ``engine`` runs the per-sample stages (forward pass, closed-form and projected gradients): ``"local"`` (the
    default) in this process, ``"ray"`` on a Ray cluster at ``ray_address`` (:mod:`ogaudit.engines.ray_engine`), or a
    :class:`~ogaudit.engines.local.ForwardEngine`. Results and cache entries are the same on every engine; training,
    detection and the map run here. The record's ``engine`` says which ran.

    ``given_model(dataset) -> AuditModel``: the user's own model for the loaded data
    (:func:`~ogaudit.models.external.wrap_model`), audited as it is instead of one trained here.
    Instruction data (prompt/response pairs: :mod:`ogaudit.data.instructions`) or a causal LM as ``settings.model``
    (``"smollm2"``, a Hugging Face folder) runs the instruction audit (:mod:`ogaudit.pipeline.instructions`): LoRA
    fine-tuning, projected per-sample LoRA gradients, the paper's and the baseline scores; ``reference`` names
    held-out pairs for the gradient-cosine score, the influence view and class detection.

    Raises :class:`~ogaudit.errors.OgauditError` subclasses with readable messages; ``Cancelled`` on cancel.
    """
    settings = settings or AuditSettings()
    if _instruction_audit(data, settings):
        return _audit_instructions(data, settings, out_dir, cache_dir, progress, cancel, engine, reference)
    engine_name = engine if isinstance(engine, str) or engine is None else getattr(engine, "name", "?")
    if settings.model == "lora" and engine_name not in (None, "local"):  # said before any data is read
        raise SettingsError(
            f"model 'lora' (fine-tuning the text encoder) runs on the local engine only, not on {engine_name!r}: "
            "drop --engine, or use the default frozen encoder (model 'auto'), which Ray can run."
        )
    engine_given = engine
    engine = resolve_engine(engine, ray_address=ray_address)
    cache = ArtifactCache(cache_dir)
    project = out_dir if out_dir is None or isinstance(out_dir, RunFolder) else RunFolder(out_dir)
    if project is not None:
        project.writable()
    notices: list[str] = []

    def notice(text: str) -> None:
        notices.append(text)
        report(progress, "notice", 0.0, text)

    timings: dict[str, float] = {}
    with _stage("load", timings, progress):
        loaded = prepare_dataset(data, settings, cache_dir=cache.root, progress=progress, cancel=cancel)
        dataset = loaded.pinned()  # hashed once for the whole run (every stage keys its cache entry by it)
    if project is not None:  # said now, before training, and kept in the record
        warning = project.review_notice(dataset.fingerprint())
        if warning is not None:
            notice(warning)
    with _stage("train", timings, progress):
        if settings.map_method == "umap":
            start_umap_warm_up()  # numba compiles while the model trains; the map stage then finds it done
        if settings.predictions is not None:  # the user's predictions: no model at all
            model, (predicted, model_info) = None, predicted_evidence(dataset, settings)
        else:
            model, model_info = obtain_model(
                dataset, settings, cache, progress, cancel, notice, trust_checkpoint_code, engine, given=given_model
            )
    if settings.layers and hasattr(model, "qualify_layers"):  # the user's names (conv1) as the wrapper's
        settings = replace(settings, layers=model.qualify_layers(settings.layers))
    if not settings.layers and getattr(model, "gradient_layers", ()):  # the fine-tuned text model: its adapters
        settings = replace(settings, layers=tuple(model.gradient_layers))
    with _stage("gradients", timings, progress):
        split = LAYER_PASS_FROM if settings.layers else 1.0  # one bar: the head's pass, then the layers' passes
        first, rest = within(progress, "gradients", 0.0, split), within(progress, "gradients", split, 1.0)
        try:
            if model is None:
                head, layers = predicted, None
            else:
                frozen = frozen_features(model, dataset, cache, first, cancel, notice, engine, stage="gradients")
                head = head_evidence(
                    model, dataset, model_info["key"], cache, first, cancel, notice, engine, features=frozen
                )
                del frozen  # the head evidence holds its own copy (with the bias column): N x d floats fewer
                layers = layer_gradients(
                    model, dataset, head, settings, model_info["key"], cache, rest, cancel, notice, engine
                )
        finally:
            if engine is not engine_given:  # made here from a name: release what it started
                engine.close()
    with _stage("detect", timings, progress):
        trajectory = None
        if settings.detector in DYNAMICS_DETECTORS and model is not None:
            trajectory = training_dynamics(
                model, dataset, settings, head, cache, progress, cancel, notice, model_key=model_info["key"]
            )
        scores, label_evidence, neighbours, detector_fit = detect(
            head,
            layers,
            dataset,
            settings,
            model_info["key"],
            cache,
            notice,
            progress=progress,
            cancel=cancel,
            head_inputs_fixed=_head_inputs_fixed(model, settings),
            trajectory=trajectory,
        )
    with _stage("map", timings, progress):
        coords = map_coordinates(
            head if layers is None else layers, settings, model_info["key"], cache, progress, cancel, notice
        )
    map_frame = pd.DataFrame({"sample_id": dataset.sample_ids, "x": coords[:, 0], "y": coords[:, 1]})
    record = run_record(data, dataset, settings, model_info, timings, scores, notices, detector_state=detector_fit)
    record["engine"] = engine.describe()
    result = AuditResult(scores, map_frame, record, loaded, head, label_evidence, neighbours=neighbours)
    if project is not None:
        label_frame = pd.DataFrame(label_evidence, columns=[str(c) for c in dataset.class_names])
        label_frame.insert(0, "sample_id", dataset.sample_ids)
        result.paths = project.write_run(
            scores,
            map_frame,
            record,
            label_evidence=label_frame,
            head_evidence={"features": head.features, "probs": head.probs, "labels": head.labels},
            neighbours=neighbours,
        )
        result.out_dir = project.path
    return result


def _instruction_audit(data, settings: AuditSettings) -> bool:
    if settings.is_causal_lm:
        return True
    if isinstance(data, Dataset):
        return data.kind == "instructions"
    if isinstance(data, str | os.PathLike):
        from ogaudit.data.instructions import is_instruction_spec

        return is_instruction_spec(data)
    return False


def _audit_instructions(data, settings, out_dir, cache_dir, progress, cancel, engine, reference) -> AuditResult:
    from ogaudit.pipeline.instructions import run_instruction_audit

    if engine not in (None, "local"):
        raise SettingsError("Instruction audits (a causal LM) run on the local engine only: drop --engine.")
    cache = ArtifactCache(cache_dir)
    project = out_dir if out_dir is None or isinstance(out_dir, RunFolder) else RunFolder(out_dir)
    if project is not None:
        project.writable()
    dataset, scores, map_frame, record, out, paths = run_instruction_audit(
        data, settings, project=project, cache=cache, reference=reference, progress=progress, cancel=cancel
    )
    labels = dataset.y
    onehot = np.eye(dataset.n_classes, dtype=np.float32)[labels]
    from ogaudit.gradients import ProjectedEvidence

    evidence = ProjectedEvidence(out["llm"]["train_gradients"], onehot, labels)
    result = AuditResult(scores, map_frame, record, dataset, evidence, -onehot, paths=paths, llm=out)  # type: ignore[arg-type]
    result.out_dir = None if project is None else project.path
    return result


LAYER_PASS_FROM = 0.25
"""Where the gradients stage's progress bar hands over from the last layer's forward pass to the projected layer
gradients (a forward and a backward pass per sample), when layers are asked for."""


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
