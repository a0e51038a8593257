"""The stages after loading, each one function that owns its cache entry and its on-disk format.

* train: :func:`obtain_model` (the user's checkpoint, a cached model, or one trained now),
  :func:`training_trajectory` (the per-epoch trajectory kept beside the model), :func:`training_margins` (its
  margins alone: the flags' stability across checkpoints) and :func:`training_dynamics` (the trajectory with the
  early checkpoint's features)
* gradients: :func:`frozen_features`, :func:`head_evidence` (the last layer's closed form) and
  :func:`layer_gradients` (projected gradients of chosen layers), written resumably into
  :class:`~ogaudit.cache.store.SampleStore` entries
* detect: :func:`detect` (outlier scores, label evidence, gradient neighbours, cached by model, data and detector)
* map: :func:`map_coordinates` (the 2-D gradient map)

Every function takes the :class:`~ogaudit.cache.artifacts.ArtifactCache`, reports progress and checks ``cancel``.
"""

from __future__ import annotations

import copy
import json
import threading
from contextlib import suppress
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ogaudit.cache.artifacts import ArtifactCache
from ogaudit.data.dataset import Dataset
from ogaudit.detectors.outliers import (
    counterfactual_scores,
    detector_params,
    detector_state,
    gradient_neighbours,
    make_detector,
)
from ogaudit.detectors.scoring import score_table
from ogaudit.engines.local import ForwardEngine
from ogaudit.errors import OgauditError
from ogaudit.gradients import GradientEvidence, HeadEvidence, ProjectedEvidence
from ogaudit.map.layout import gradient_map
from ogaudit.models.base import AuditModel
from ogaudit.models.nets import build_model, choose_model, load_checkpoint
from ogaudit.models.training import (
    Trajectory,
    batched_features,
    load_margins,
    load_model_state,
    load_trajectory,
    model_cache_key,
    model_recipe,
    save_model,
    save_trajectory,
    train_model,
)
from ogaudit.progress import ProgressCallback, check_cancel, report, within
from ogaudit.settings import MODEL_KINDS, AuditSettings
from ogaudit.storage import fingerprint


def obtain_model(
    dataset,
    settings: AuditSettings,
    cache: ArtifactCache,
    progress,
    cancel,
    notice,
    trust_code=False,
    engine=None,
    *,
    given=None,
):
    """A trained model: the user's (``given``, or their checkpoint), or one from the cache, or one trained now
    (then cached).

    ``given(dataset) -> AuditModel`` builds the user's in-memory model for the loaded data
    (:func:`~ogaudit.models.external.wrap_model`); it is never trained, and its cache key covers its weights, its
    features on the first samples (so another ``transform`` is another key) and the data.
    The model is built (and ``settings.layers`` checked against it) before any training starts.
    """
    if given is not None:
        from ogaudit.gradients.layers import model_fingerprint

        model = given(dataset)
        _check_layers(model, replace(settings, layers=model.qualify_layers(settings.layers)))
        probe = batched_features(model, dataset.x[:PROBE_ROWS])
        key = fingerprint("user-model-v1", model_fingerprint(model), probe, dataset.fingerprint())
        reason = "your model, audited as trained (never trained here)"
        return model, {"kind": model.kind, "reason": reason, "key": key, "cached": False, "history": []}
    if settings.model not in MODEL_KINDS:
        from ogaudit.models.hub import HF_PREFIX, is_hub_spec, load_file_model
        from ogaudit.models.nets import checkpoint_format

        if is_hub_spec(settings.model):
            folder = Path(settings.model[len(HF_PREFIX) :])
            model = load_file_model(settings.model, dataset)
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".txt"))
            content = [part for p in files for part in (p.name, p.read_bytes())]
        else:
            if Path(settings.model).is_file() and checkpoint_format(settings.model) == "torchscript":
                model = load_checkpoint(settings.model, dataset, arch=settings.arch, trust_code=trust_code)
            else:
                model = load_file_model(settings.model, dataset, arch=settings.arch)
            content = [Path(settings.model).read_bytes()]
        _check_layers(model, settings)
        key = fingerprint("checkpoint-v2", *content, settings.arch, dataset.fingerprint())
        return model, {"kind": model.kind, "reason": "user checkpoint", "key": key, "cached": False, "history": []}
    choice = choose_model(dataset, settings.model)
    train = settings.train_settings
    key = model_cache_key(dataset, choice.kind, train)
    model = build_model(choice.kind, dataset, seed=settings.seed)
    _check_layers(model, settings)
    info = {"kind": choice.kind, "reason": choice.reason, "key": key, "epochs": train.resolved_epochs(len(dataset))}
    entry = _model_entry(cache, choice.kind, dataset, train)

    def read(folder: Path) -> bool:
        load_model_state(model, folder / "model.pt")
        return True

    with entry.exclusive(cancel=cancel, on_wait=waiting(progress, "train")):  # a second scan waits, then loads
        damaged = entry.path.is_dir()
        if entry.load(read, notice=notice):
            return model, {**info, "cached": True, "history": []}
        if damaged:  # a failed load may have touched some weights: start from the seeded initial ones again
            model = build_model(choice.kind, dataset, seed=settings.seed)
        features = frozen_features(model, dataset, cache, progress, cancel, notice, engine, stage="train")
        run = train_model(model, dataset, train, progress=progress, cancel=cancel, features=features)

        def write(folder: Path) -> None:
            save_model(model, folder / "model.pt")
            save_trajectory(run, folder)  # the trajectory and early checkpoint of this very training, beside it

        entry.save(write)
    return model, {
        **info,
        "cached": False,
        "history": run.history,
        "epochs": run.epochs or info["epochs"],
        "notes": run.notes,
        "holdout": run.holdout,
    }


def predicted_evidence(dataset: Dataset, settings: AuditSettings) -> tuple[HeadEvidence, dict]:
    """The last layer's evidence from the user's predictions file (``settings.predictions``): their features and
    probabilities matched to the data's samples (:mod:`ogaudit.data.predictions`), and the model record (kind
    ``"predictions"``; the key covers the arrays, so the detector's cache entry follows the file's content)."""
    from ogaudit.data.predictions import aligned, read_predictions

    predictions = read_predictions(settings.predictions)
    features, probs = aligned(predictions, dataset.sample_ids, [str(c) for c in dataset.class_names])
    key = fingerprint("predictions-v1", features, probs, dataset.fingerprint())
    ones = np.ones((len(features), 1), dtype=np.float32)
    head = HeadEvidence(np.hstack([features, ones]), probs, dataset.y.copy())
    reason = f"your model's predictions from {Path(settings.predictions).name} (no model run, nothing trained)"
    return head, {"kind": "predictions", "reason": reason, "key": key, "cached": False, "history": []}


PROBE_ROWS = 8
"""Samples whose features, with the weights, key a user's model in the cache."""


def _model_entry(cache: ArtifactCache, kind: str, dataset, train):
    """The cache entry of the model of ``kind`` trained on ``dataset`` with ``train`` settings."""
    key = model_cache_key(dataset, kind, train)
    return cache.entry("model", key, {"kind": kind, "data": dataset.fingerprint(), "train": model_recipe(train)})


def training_trajectory(
    dataset: Dataset, settings: AuditSettings, cache: ArtifactCache, notice=None, *, model_key: str | None = None
) -> Trajectory | None:
    """The :class:`~ogaudit.models.training.Trajectory` that :func:`obtain_model` kept beside the model it trained,
    without its early features (no forward pass: one ``trajectory.npz`` read).

    None for a user's checkpoint, an in-memory model or predictions (``model_key``, the key :func:`obtain_model`
    gave, is not that of a model trained here), or a model trained without one (too many samples × classes:
    :data:`~ogaudit.models.training.TRAJECTORY_MAX_CELLS`). :func:`training_dynamics` adds the early features;
    :func:`training_margins` reads only the margins."""

    def read(folder: Path) -> Trajectory | None:
        return load_trajectory(folder, len(dataset), dataset.n_classes)

    return _trajectory_entry(dataset, settings, cache, notice, model_key, read)


def training_margins(
    dataset: Dataset, settings: AuditSettings, cache: ArtifactCache, notice=None, *, model_key: str | None = None
) -> np.ndarray | None:
    """(E, N) the per-epoch margins of the given labels in the training that made the model (only that member of
    the trajectory is read), for the flags' stability across checkpoints
    (:func:`ogaudit.review.calibration.checkpoint_stability`); None where :func:`training_trajectory` gives none."""
    return _trajectory_entry(
        dataset, settings, cache, notice, model_key, lambda folder: load_margins(folder, len(dataset))
    )


def _trajectory_entry(dataset, settings, cache, notice, model_key, read):
    """``read(folder)`` on the cache entry of the model trained here for ``dataset`` and ``settings``; None when
    the model was not trained here (another ``model_key``), or there is no such entry or nothing in it."""
    if settings.model not in MODEL_KINDS:
        return None
    kind = choose_model(dataset, settings.model).kind
    train = settings.train_settings
    if model_key is not None and model_key != model_cache_key(dataset, kind, train):
        return None
    return _model_entry(cache, kind, dataset, train).load(read, notice=notice)


def training_dynamics(
    model: AuditModel,
    dataset: Dataset,
    settings: AuditSettings,
    head: HeadEvidence,
    cache: ArtifactCache,
    progress,
    cancel,
    notice,
    *,
    model_key: str | None = None,
) -> Trajectory | None:
    """The :class:`~ogaudit.models.training.Trajectory` of the training that made ``model``, with its
    ``early_features`` filled; None where :func:`training_trajectory` gives none.

    Early features: a model whose body trained runs its early checkpoint (kept beside the model by
    :func:`obtain_model`) over the data once, the result cached (kind ``"features"``) by the model's key; a frozen
    body's features (the head evidence's, without its bias column) never fitted the labels and are used as they are.
    """

    def read(folder: Path):
        path = folder / "early.pt"
        state = torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
        return load_trajectory(folder, len(dataset), dataset.n_classes), state

    loaded = _trajectory_entry(dataset, settings, cache, notice, model_key, read)
    if loaded is None or loaded[0] is None:
        return None
    kind = choose_model(dataset, settings.model).kind
    train = settings.train_settings
    trajectory, state = loaded
    if state is None:
        trajectory.early_features = np.ascontiguousarray(head.features[:, :-1])
        return trajectory
    early_model = copy.deepcopy(model)
    early_model.load_state_dict(state)
    early_model.eval()
    key = fingerprint("early-features-v1", model_cache_key(dataset, kind, train), dataset.fingerprint())
    features = cache.entry("features", key, {"model": kind, "data": dataset.fingerprint(), "early": True})

    def compute(start: int, stop: int) -> dict[str, np.ndarray]:
        return {"features": batched_features(early_model, dataset.x[start:stop])}

    stored = _stored_rows(features, len(dataset), {"features": None}, compute, progress, cancel, notice, "detect")
    trajectory.early_features = stored["features"]
    return trajectory


def _check_layers(model: AuditModel, settings: AuditSettings) -> None:
    if settings.layers:
        from ogaudit.gradients.layers import resolve_layers

        resolve_layers(model, settings.layers)


EVIDENCE_CHUNK_ROWS = 8192
"""Rows per shard of the feature and evidence stores: progress and Cancel come at least once per shard."""


def frozen_features(model, dataset, cache: ArtifactCache, progress, cancel, notice, engine=None, *, stage: str):
    """A frozen backbone's penultimate features (N, d) float32, extracted once per backbone and data.

    Training the head, the head evidence (hence gradients and the map) all read them from this cache entry, so the
    backbone's forward pass over the data runs once per audit (and not again for another head on the same data).
    None for models whose body trains (their features change with training).
    """
    if getattr(model, "trainable", None) != "head":
        return None
    from ogaudit.gradients.layers import model_fingerprint

    body = model_fingerprint(torch.nn.Sequential(model.preprocess, model.body))
    key = fingerprint("features-v1", model.kind, body, dataset.fingerprint())
    entry = cache.entry("features", key, {"model": model.kind, "data": dataset.fingerprint()})

    def compute(start: int, stop: int) -> dict[str, np.ndarray]:
        return {"features": batched_features(model, dataset.x[start:stop])}

    if not _in_process(engine):
        everything = _engine_outputs(engine, model, dataset, progress, cancel)

        def compute(start: int, stop: int) -> dict[str, np.ndarray]:
            return {"features": everything()[0][start:stop]}

    return _stored_rows(entry, len(dataset), {"features": None}, compute, progress, cancel, notice, stage)["features"]


def _stored_rows(
    entry, n: int, widths: dict, compute, progress, cancel, notice, stage: str, *, ones: bool = False
) -> dict[str, np.ndarray]:
    """Fields of a :class:`~ogaudit.cache.store.SampleStore` in ``entry``: read when complete, else filled chunk by chunk
    in the entry's work folder (resuming what an interrupted run left) and committed.

    ``widths`` maps each field to its row width, or None to take it from the first chunk computed. With ``ones``,
    ``features`` is read with a trailing column of ones (``h̃``, the bias input) without a second copy.
    """
    from ogaudit.cache.store import SampleStore

    def layout(folder: Path) -> dict:
        saved = json.loads((folder / "store.json").read_text(encoding="utf-8"))
        return {name: (tuple(spec["shape"]), spec["dtype"]) for name, spec in saved["fields"].items()}

    def read_all(store) -> dict[str, np.ndarray]:
        result = {}
        for name in widths:
            if ones and name == "features":
                (width,) = store.fields[name][0]
                result[name] = np.ones((n, width + 1), dtype=np.float32)
                store.read(name, out=result[name][:, :width])
            else:
                result[name] = store.read(name, "float32")
        return result

    def read(folder: Path) -> dict[str, np.ndarray]:
        return read_all(SampleStore.open(folder, n_rows=n, chunk_rows=EVIDENCE_CHUNK_ROWS))

    with entry.exclusive(cancel=cancel, on_wait=waiting(progress, stage)):
        cached = entry.load(read, notice=notice)
        if cached is not None:
            return cached
        folder = entry.work_dir()
        fields = None
        with suppress(OSError, ValueError, KeyError):  # no store yet, or a damaged one: laid out anew
            fields = layout(folder)
        first = None
        if fields is None or set(fields) != set(widths):
            check_cancel(cancel)
            first = compute(0, min(EVIDENCE_CHUNK_ROWS, n))  # its shapes give the layout; it is written as chunk 0
            fields = {name: (tuple(first[name].shape[1:]), "float32") for name in widths}
        store = SampleStore(folder, n, fields, chunk_rows=EVIDENCE_CHUNK_ROWS)
        if first is not None and not store.done[0]:
            store.write(0, **first)
        store.fill(compute, progress=progress, cancel=cancel, stage=stage)
        result = read_all(store)
        entry.commit()
        return result


def waiting(progress: ProgressCallback | None, stage: str):
    """What a scan says while another one computes the cache entry it needs (:meth:`CacheEntry.exclusive`)."""
    return lambda: report(progress, stage, 0.0, "waiting for another scan that computes the same result")


def _in_process(engine: ForwardEngine | None) -> bool:
    """Whether ``engine`` is this process (the chunked, resumable local path) rather than a cluster."""
    return engine is None or getattr(engine, "name", None) == "local"


def _engine_outputs(engine: ForwardEngine, model, dataset, progress, cancel):
    """A function giving ``engine.head_outputs`` (features (N, d), logits (N, C)) for the whole dataset, run once
    on first call (after a cache miss), then kept."""
    kept: list = []

    def everything():
        if not kept:
            kept.append(engine.head_outputs(model, dataset, progress=progress, cancel=cancel))
        return kept[0]

    return everything


def head_evidence(
    model,
    dataset,
    model_key,
    cache: ArtifactCache,
    progress,
    cancel,
    notice,
    engine: ForwardEngine | None = None,
    *,
    features: np.ndarray | None = None,
) -> HeadEvidence:
    """Penultimate features and probabilities from one batched forward pass, cached by model and data.

    Written chunk by chunk into a :class:`~ogaudit.cache.store.SampleStore` (progress and Cancel per chunk; an
    interrupted pass resumes). ``features``: a frozen backbone's features (N, d), reused instead of a forward pass.
    """
    entry = cache.entry("evidence", fingerprint("store-v1", model_key, dataset.fingerprint()), {"model": model_key})

    def compute(start: int, stop: int) -> dict[str, np.ndarray]:
        rows = batched_features(model, dataset.x[start:stop]) if features is None else features[start:stop]
        with torch.no_grad():
            logits = model.head(torch.as_tensor(np.ascontiguousarray(rows, dtype=np.float32)))
        probs = torch.softmax(logits.float(), dim=1).numpy()
        return {"features": rows, "probs": probs}

    if features is None and not _in_process(engine):  # the forward pass runs on the engine's cluster
        everything = _engine_outputs(engine, model, dataset, progress, cancel)

        def compute(start: int, stop: int) -> dict[str, np.ndarray]:
            outputs, logits = everything()
            probs = torch.softmax(torch.as_tensor(logits[start:stop]).float(), dim=1).numpy()
            return {"features": outputs[start:stop], "probs": probs}

    fields = {"features": None, "probs": None}
    stored = _stored_rows(entry, len(dataset), fields, compute, progress, cancel, notice, "gradients", ones=True)
    if stored["probs"].shape != (len(dataset), dataset.n_classes):
        raise OgauditError(f"the cached probabilities {stored['probs'].shape} do not fit the data")
    return HeadEvidence(stored["features"], stored["probs"], dataset.y.copy())


def layer_gradients(model, dataset, head, settings, model_key, cache, progress, cancel, notice, engine=None):
    """Projected gradients of ``settings.layers``, written resumably into a cache entry's work folder.

    The entry is a :func:`~ogaudit.gradients.layers.layer_store` (a :class:`~ogaudit.cache.store.SampleStore`)
    filled by the engine, local or Ray: an interrupted run resumes from its done chunks on either. The entry's key
    covers the model, data (inputs and labels) and layer settings; the store's source fingerprint adds the model's
    weights, so rows of another training under the same key are never mixed in.
    """
    if not settings.layers:
        return None
    from ogaudit.cache.store import SampleStore
    from ogaudit.engines.local import LocalEngine
    from ogaudit.gradients.layers import GRADIENT_FIELD, LayerGradientSettings, layer_store_layout

    layer_settings = LayerGradientSettings(layers=settings.layers, dim=settings.projection_dim, seed=settings.seed)
    key = fingerprint(model_key, dataset.fingerprint(), asdict(layer_settings))
    entry = cache.entry("layer-gradients", key, {"model": model_key, "layers": asdict(layer_settings)})
    layout = layer_store_layout(model, dataset.y, layer_settings, inputs_fingerprint=dataset.fingerprint())

    def read(folder: Path):
        store = SampleStore.open(folder, **layout)  # another layout or source: ValueError, the entry is recomputed
        return store.rows(GRADIENT_FIELD)

    with entry.exclusive(cancel=cancel, on_wait=waiting(progress, "gradients")):
        matrix = entry.load(read, notice=notice)
        if matrix is None:
            store = SampleStore(entry.work_dir(), **layout)  # resumes an interrupted run from its done chunks
            (engine or LocalEngine()).layer_gradients(
                model, dataset, layer_settings, store=store, progress=progress, cancel=cancel
            )
            entry.commit()
            matrix = read(entry.path)
    return ProjectedEvidence(matrix, head.probs, head.labels)


def map_coordinates(evidence: GradientEvidence, settings, model_key, cache, progress, cancel, notice) -> np.ndarray:
    """The 2-D gradient map of ``evidence``, cached by model, layers and layout."""
    from ogaudit.map.layout import MAP_DIM, MAP_SAMPLE

    n = len(evidence.labels)
    map_settings = {
        "model": model_key,
        "layers": list(settings.layers),
        "projection_dim": settings.projection_dim,
        "method": settings.map_method,
        "seed": settings.seed,
        "map_dim": MAP_DIM,
    }
    if n > MAP_SAMPLE:  # fitted on a sample, the rest transformed: another sample size gives another map
        map_settings["map_sample"] = MAP_SAMPLE
    return cached_map(
        cache.entry("map", fingerprint(map_settings), map_settings),
        n,
        lambda: gradient_map(
            evidence, method=settings.map_method, seed=settings.seed, progress=progress, cancel=cancel
        ),
        notice,
    )


def cached_map(entry, n: int, compute, notice=None) -> np.ndarray:
    """(n, 2) map coordinates from the cache ``entry`` (a ``map`` entry of
    :class:`~ogaudit.cache.artifacts.ArtifactCache`), else ``compute()``'s, saved there. A cached map of another
    size is discarded (the entry's ``load`` reports it through ``notice``) and laid out again."""

    def read(folder: Path) -> np.ndarray:
        coords = np.load(folder / "map.npy")
        if coords.shape != (n, 2):
            raise ValueError(f"shape {coords.shape} does not fit {n} samples")
        return coords

    coords = entry.load(read, notice=notice)
    if coords is not None:
        return coords
    coords = compute()

    def write(folder: Path) -> None:
        with open(folder / "map.npy", "wb") as handle:
            np.save(handle, coords)

    entry.save(write)
    return coords


def detect(
    head: HeadEvidence,
    layers: ProjectedEvidence | None,
    dataset: Dataset,
    settings: AuditSettings,
    model_key: str | None = None,
    cache: ArtifactCache | None = None,
    notice=None,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    head_inputs_fixed: bool = False,
    trajectory: Trajectory | None = None,
):
    """Scores, ranks, flags and suggested labels as the per-sample table, the (N, C) label evidence, the
    gradient neighbours the detector found (``(positions (N, k), cosines (N, k))``, or None), and what the detector
    read from the data (:func:`~ogaudit.detectors.outliers.detector_state`: ``posterior-auto``'s ``κ`` and ``w``;
    {} for the others).

    With ``cache``, the outlier scores, label evidence and neighbours are cached by model (``model_key``), data,
    detector and layers: a rerun, or another budget, skips the neighbour search. With ``head_inputs_fixed`` (the
    last layer's inputs do not change in training: a frozen encoder or backbone, a linear model, a user's
    checkpoint), the last layer's neighbour search is also cached by its directions alone
    (:func:`_cached_search`), so that a scan after labels change (a review round, planted noise) skips it too.
    ``trajectory`` (:func:`training_dynamics`) goes to the detectors that read one; it is fixed by the model's key.
    The flags' stability is counted across the training's checkpoints (its per-epoch margins: ``trajectory``, or
    :func:`training_margins` read from ``cache`` when ogaudit trained the model), else across resamples of the
    gradient neighbours (:func:`ogaudit.review.calibration.evidence_columns`).
    Reports ``progress("detect", ...)`` and checks ``cancel`` at every chunk of the neighbour search, every class of
    the label evidence and before flagging; raises :class:`~ogaudit.errors.Cancelled`.
    """
    search = _cached_search(cache, notice) if cache is not None and head_inputs_fixed else None
    if trajectory is None and cache is not None and model_key is not None:
        margins = training_margins(dataset, settings, cache, notice, model_key=model_key)
    else:
        margins = None if trajectory is None else trajectory.margins
    if cache is None:
        score, label_evidence, neighbours, state = _outlier_scores(
            head, layers, settings, progress, cancel, trajectory=trajectory
        )
        table = _score_table(head, dataset, settings, score, label_evidence, progress, cancel, neighbours, margins)
        return table, label_evidence, neighbours, state
    from ogaudit.detectors.neighbours import APPROXIMATE_ABOVE

    detect_settings = {
        "model": model_key,
        "data": dataset.fingerprint(),
        "detector": settings.detector,
        "seed": settings.seed,
        "layers": list(settings.layers),
        "projection_dim": settings.projection_dim,
        "approximate_above": APPROXIMATE_ABOVE,
    }
    if params := detector_params(settings.detector):  # only where there are any: other detectors keep their entries
        detect_settings["detector_params"] = params
    entry = cache.entry("scores", fingerprint(detect_settings), detect_settings)
    shapes = {"score": (len(dataset),), "label_evidence": (len(dataset), dataset.n_classes)}

    def read(folder: Path) -> tuple[np.ndarray, np.ndarray, tuple | None, dict]:
        with np.load(folder / "scores.npz", allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in shapes}
            found = {name: saved[name] for name in ("neighbours", "cosines") if name in saved.files}
            state = json.loads(str(saved["detector_state"])) if "detector_state" in saved.files else {}
        if not isinstance(state, dict):
            raise ValueError(f"detector_state is a {type(state).__name__}, not an object")
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise ValueError(f"{name} has shape {arrays[name].shape}, not {shape}")
        neighbours = None
        if len(found) == 2:
            if found["neighbours"].shape != found["cosines"].shape or len(found["neighbours"]) != len(dataset):
                raise ValueError(f"neighbours have shape {found['neighbours'].shape}, not ({len(dataset)}, k)")
            neighbours = (found["neighbours"].astype(np.int64), found["cosines"].astype(np.float32))
        return arrays["score"], arrays["label_evidence"], neighbours, state

    cached = entry.load(read, notice=notice)
    if cached is None:
        cached = _outlier_scores(head, layers, settings, progress, cancel, search=search, trajectory=trajectory)
        score, label_evidence, neighbours, state = cached

        def write(folder: Path) -> None:
            extra = {} if neighbours is None else {"neighbours": neighbours[0], "cosines": neighbours[1]}
            with open(folder / "scores.npz", "wb") as handle:
                np.savez(
                    handle,
                    score=score,
                    label_evidence=label_evidence,
                    detector_state=np.array(json.dumps(state)),
                    **extra,
                )

        entry.save(write)
    score, label_evidence, neighbours, state = cached
    table = _score_table(head, dataset, settings, score, label_evidence, progress, cancel, neighbours, margins)
    return table, label_evidence, neighbours, state


def _head_inputs_fixed(model: AuditModel | None, settings: AuditSettings) -> bool:
    """Whether the last layer's inputs ``h`` are the same whatever labels the model is trained on: the user's
    predictions (``model`` None), a user's
    checkpoint or in-memory model (never retrained), a frozen body (``trainable == "head"``) or no parameters outside the head."""
    if model is None or settings.model not in MODEL_KINDS or getattr(model, "trainable", None) in ("head", "none"):
        return True
    head = {id(parameter) for parameter in model.head.parameters()}
    return all(id(parameter) in head for parameter in model.parameters())


def _cached_search(cache: ArtifactCache, notice):
    """A :func:`~ogaudit.detectors.neighbours.nearest_neighbours` whose results are kept in the cache (kind
    ``"neighbours"``), keyed by a fingerprint of the directions searched (every byte), ``k`` and the size above
    which the search is approximate. Directions that do not depend on the labels (:func:`_head_inputs_fixed`)
    are searched once per data and features: the same texts relabelled find their neighbours in the cache."""
    from ogaudit.detectors.neighbours import APPROXIMATE_ABOVE, nearest_neighbours

    def search(directions: np.ndarray, k: int, *, progress=None, stage: str = "detect", **options):
        settings = {"directions": fingerprint(directions), "k": k, "approximate_above": APPROXIMATE_ABOVE}
        entry = cache.entry("neighbours", fingerprint("neighbours-v1", settings), settings)
        expected = (len(directions), min(k, len(directions) - 1))

        def read(folder: Path) -> tuple[np.ndarray, np.ndarray]:
            with np.load(folder / "neighbours.npz", allow_pickle=False) as saved:
                found, cosines = saved["neighbours"], saved["cosines"]
            _check_neighbours(found, cosines, directions, expected)
            return found.astype(np.int64), cosines.astype(np.float32)

        loaded = entry.load(read, notice=notice)
        if loaded is not None:
            report(progress, stage, 1.0, "gradient neighbours from the cache")
            return loaded
        found, cosines = nearest_neighbours(directions, k, progress=progress, stage=stage, **options)

        def write(folder: Path) -> None:
            with open(folder / "neighbours.npz", "wb") as handle:
                np.savez(handle, neighbours=found, cosines=cosines)

        entry.save(write)
        return found, cosines

    return search


NEIGHBOUR_CHECK_ROWS = 1024
"""Rows of a cached neighbour search whose cosines are recomputed from the directions when it is read."""


def _check_neighbours(found: np.ndarray, cosines: np.ndarray, directions: np.ndarray, expected: tuple) -> None:
    """Raise ValueError unless ``found`` / ``cosines`` read from the cache are a search of ``directions``: the
    shape, integer positions in range and never the row itself, finite cosines most similar first, and the
    cosines of :data:`NEIGHBOUR_CHECK_ROWS` seeded rows equal to their recomputed dot products."""
    if found.shape != expected or cosines.shape != expected:
        raise ValueError(f"neighbours have shape {found.shape}, not {expected}")
    if not np.issubdtype(found.dtype, np.integer) or not np.issubdtype(cosines.dtype, np.floating):
        raise ValueError(f"neighbours are {found.dtype} and cosines {cosines.dtype}")
    n = len(directions)
    if not found.size:
        return
    if not ((found >= 0) & (found < n)).all() or (found == np.arange(n)[:, None]).any():
        raise ValueError("neighbour positions out of range, or a row listed as its own neighbour")
    if not np.isfinite(cosines).all() or (np.diff(cosines, axis=1) > 1e-6).any():
        raise ValueError("cosines not finite, or not most similar first")
    rows = np.random.default_rng(0).choice(n, min(n, NEIGHBOUR_CHECK_ROWS), replace=False)
    recomputed = np.einsum("rd,rkd->rk", directions[rows], directions[found[rows]])
    if not np.allclose(recomputed, cosines[rows], atol=1e-4):
        raise ValueError("cosines differ from the directions' own")


def _outlier_scores(
    head: HeadEvidence,
    layers: ProjectedEvidence | None,
    settings: AuditSettings,
    progress,
    cancel,
    *,
    search=None,
    trajectory=None,
):
    """(N,) outlier scores of the chosen evidence, the (N, C) counterfactual label evidence of the last layer, the
    last layer's gradient neighbours (:func:`~ogaudit.detectors.outliers.gradient_neighbours`; None without a search)
    and what the scoring detector read from the data (:func:`~ogaudit.detectors.outliers.detector_state`).
    ``search`` replaces the last layer's neighbour search (:func:`_cached_search`)."""
    source: GradientEvidence = head if layers is None else layers
    fits = 1 if source.counterfactual else 2
    fit_share = 0.8 / fits  # the neighbour searches dominate; the label evidence and flags are vectorised

    detector = make_detector(
        settings.detector, seed=settings.seed, search=search if layers is None else None, trajectory=trajectory
    ).fit(source, progress=within(progress, "detect", 0.0, fit_share), cancel=cancel)
    check_cancel(cancel)
    score = detector.outlier_scores(source)
    # Suggestions need counterfactual gradients, which only the last layer's closed form gives.
    head_detector = (
        detector
        if source.counterfactual
        else make_detector(settings.detector, seed=settings.seed, search=search, trajectory=trajectory).fit(
            head, progress=within(progress, "detect", fit_share, 2 * fit_share), cancel=cancel
        )
    )
    label_evidence = counterfactual_scores(head_detector, head, progress=progress, cancel=cancel, span=(0.8, 0.95))
    return (
        np.asarray(score, dtype=np.float64),
        np.asarray(label_evidence, dtype=np.float64),
        gradient_neighbours(head_detector),
        detector_state(detector),
    )


def _score_table(
    head, dataset, settings, score, label_evidence, progress, cancel, neighbours=None, margins=None
) -> pd.DataFrame:
    """The per-sample table of this run (:func:`~ogaudit.detectors.scoring.score_table`), with the review's
    evidence columns (``p_wrong`` estimated on this run, its interval, ``ambiguous``, ``flag_stability`` and its
    basis: :meth:`~ogaudit.review.evidence.RunEvidence.table_columns`, from the detector's ``neighbours`` when it
    kept them and the training's per-epoch ``margins`` (E, N) when ogaudit trained the model)."""
    from ogaudit.detectors.base import flag_budget
    from ogaudit.review.evidence import RunEvidence

    report(progress, "detect", 0.95, "flagging")
    check_cancel(cancel)
    flagged, _ = flag_budget(score, settings.budget)
    review = RunEvidence(head.features, head.probs, head.labels, label_evidence, neighbours=neighbours)
    columns = review.table_columns(flagged, seed=settings.seed, cancel=cancel, margins=margins)
    return score_table(
        score,
        label_evidence,
        head.probs,
        dataset.y,
        class_names=dataset.class_names,
        sample_ids=dataset.sample_ids,
        budget=settings.budget,
        true_labels=dataset.true_y,
        columns=columns,
    )
