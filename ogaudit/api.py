"""The functions a notebook calls: :func:`audit` (train, take gradients, score, optionally write a project),
:func:`score` (score outputs of a model you already trained, no training), and :class:`~ogaudit.project.Project`
for the review of a project folder.

The method is Outlier Gradient Analysis (Chhabra et al., "Outlier Gradient Analysis: Efficiently Identifying
Detrimental Training Samples for Deep Learning Models", ICML 2025, arXiv 2405.03869): a training sample whose
per-sample loss gradient is an outlier is likely detrimental, most often mislabelled. For the last linear layer
the gradient is closed-form, ``(softmax(z) − onehot(y)) ⊗ [h, 1]`` (:mod:`ogaudit.gradients.closed_form`).

This module imports torch and the pipeline only when a function runs, so ``import ogaudit`` stays light.
"""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ogaudit.data.dataset import Dataset
from ogaudit.errors import DataError, SettingsError
from ogaudit.progress import ProgressCallback
from ogaudit.project import Project
from ogaudit.results import RunFolder
from ogaudit.settings import DEFAULT_BUDGET, DEFAULT_DETECTOR, AuditSettings, check_budget

if TYPE_CHECKING:
    import pandas as pd

    from ogaudit.engines.local import ForwardEngine
    from ogaudit.gradients import GradientEvidence
    from ogaudit.pipeline.run import AuditResult

__all__ = ["AuditNotice", "Project", "audit", "export", "score"]

SCORE_COLUMNS = (
    "sample_id",
    "given_label",
    "predicted_label",
    "suggested_label",
    "score",
    "rank",
    "flagged",
    "confidence",
    "rare_class",
    "p_wrong",
    "p_wrong_low",
    "p_wrong_high",
    "ambiguous",
    "flag_stability",
    "flag_stability_basis",
    "flag_stability_of",
)
"""The columns of :func:`score`'s table, in order."""


def audit(
    data,
    settings: AuditSettings | None = None,
    *,
    out_dir: str | os.PathLike | RunFolder | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    trust_checkpoint_code: bool = False,
    engine: str | ForwardEngine | None = None,
    ray_address: str | None = None,
    class_names: Sequence[str] | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    path_column: str | None = None,
    model=None,
    transform=None,
    head: str | None = None,
    reference: str | os.PathLike | Dataset | None = None,
) -> AuditResult:
    """Audit a dataset for mislabelled samples: train a model, take every sample's last-layer loss gradient,
    score how much of an outlier it is, flag the most suspicious and suggest a label for each.

    The Outlier Gradient Analysis of Chhabra et al. (ICML 2025, arXiv 2405.03869), with the last layer's
    gradients in closed form, ``dL/dW = (softmax(z) − onehot(y)) ⊗ h`` and ``dL/db = softmax(z) − onehot(y)``,
    from one batched forward pass. What :command:`ogaudit scan` runs.

    Parameters
    ----------
    data : what to audit, one of

        * a built-in name (``"digits"``, ``"mnist5k"``, ``"fashion-mnist"``, ``"tweets"``, ``"rotten-tomatoes"``)
          or a path: an ImageFolder, a CSV manifest, an ``.npz``, a folder with ``x.npy``/``y.npy``, a text table
          (:func:`~ogaudit.data.load.load_dataset`);
        * a :class:`~ogaudit.data.dataset.Dataset`;
        * a tuple ``(x, y)`` or ``(x, y, class_names)``: ``x`` (N, F) feature vectors or (N, H, W[, C]) images
          (C = 1 or 3; channels-first is read too; ``uint8`` 0–255 or any float range), ``y`` (N,) labels as class
          indices or names; numpy arrays or torch tensors;
        * a pandas DataFrame, one row per sample: numeric feature columns and a label column (``label_column``);
        * a ``torch.utils.data.Dataset`` yielding ``(x, y)`` pairs (stacked with a ``DataLoader``; image tensors
          (C, H, W) become (H, W, C));
        * a Hugging Face ``datasets.Dataset`` of images (an ``Image`` feature, bytes or paths) and labels (a
          ``ClassLabel``'s names become the class names), read from its Arrow data (:mod:`ogaudit.data.hf`).

        Paths also name a Hugging Face ``save_to_disk`` folder, a ``.parquet`` / ``.arrow`` table of images and
        labels, and a FiftyOne image-classification export (``data/`` + ``labels.json``).

        In-memory data gives the same results as the same arrays saved as an ``.npz`` and audited by path.

        Instruction-tuning data (prompt/response pairs: a ``.jsonl`` with prompt and response fields or chat
        ``messages``, a ``.csv`` / ``.parquet`` with such columns, or the built-in ``"instruct-tasks"``) is audited
        for wrong or harmful responses by fine-tuning a causal LM (``settings.model``: ``"smollm2"``, the default
        for such data, or a Hugging Face model folder) with LoRA and scoring its per-sample LoRA gradients
        (:mod:`ogaudit.pipeline.instructions`).
    settings : model, epochs, detector, budget, map, planted noise, subset, seed ... (:class:`AuditSettings`);
        default ``AuditSettings()``.
    out_dir : a project folder to write (``run.json``, ``runs/<id>/scores.csv`` ...), opened later with
        :class:`Project`, ``ogaudit decisions`` or the app; a folder that already holds a review keeps it and a
        notice says when this scan audits other data. Default: nothing written.
    cache_dir : the artifact cache (models, features, gradients, maps); default ``$OGAUDIT_CACHE`` or
        ``~/.cache/ogaudit``.
    progress : ``progress(stage, fraction, message)`` called along the way (stage ``"notice"`` for notices).
        Without it (None), a ``tqdm.auto`` bar per stage in a notebook or a terminal
        (:class:`~ogaudit.progress.AutoBars`; nothing in a log) and notices as :class:`AuditNotice` warnings;
        ``False``: no bars (quiet), notices still as warnings.
    cancel : set it to stop the audit at the next chunk of work (:class:`~ogaudit.errors.Cancelled`).
    trust_checkpoint_code : let a TorchScript checkpoint load, which runs the file's code.
    engine, ray_address : where the per-sample stages run: ``"local"`` (default), ``"ray"`` (a Ray cluster at
        ``ray_address``) or a :class:`~ogaudit.engines.local.ForwardEngine`.
    class_names : in-memory data only: the name of each class index, or the allowed names (labels as names).
    label_column, id_column : the label column (default: found by name, ``label``, ``class``, ``target``, ``y``
        ..., or a ``ClassLabel``) of a DataFrame, a Hugging Face Dataset, a CSV manifest, an image table or a
        text table, and a column of unique sample ids (default: one named ``id``, ``sample_id`` ..., else the row
        numbers). Kept in the run's settings.
    path_column : the image column of a CSV manifest (default: found by name, ``path``, ``filepath``, ``file``
        ...), a Parquet/Arrow table or a Hugging Face Dataset (default: its ``Image`` feature). A manifest's
        relative paths are read against its folder; absolute ones only inside its folder or a folder listed in
        ``$OGAUDIT_DATA_ROOTS`` (:mod:`ogaudit.data.manifest`).
    model : your trained classifier, a ``torch.nn.Module`` whose ``forward(x)`` gives (B, C) logits, audited as
        it is instead of a model ogaudit trains: its own forward runs on every batch (in this process, on its
        device), a hook reads the input of its classification head (the last ``nn.Linear`` it calls, or
        ``head``), and the last layer's gradients follow in closed form (``settings.layers`` adds deeper layers,
        by your module's names). It is never trained (``settings.epochs`` is refused: train it first), its
        weights are not changed, and its train/eval mode is put back after the audit.
    transform : with ``model``: per-sample preprocessing, as a torchvision ``Dataset``'s ``transform`` (``uint8``
        images arrive as ``PIL.Image``, float images as (C, H, W) tensors, vectors as (F,) tensors; it returns a
        tensor). Default None: ``ToTensor()``'s convention, (B, C, H, W) float in [0, 1] with the stored channels
        (grey stays one channel; no resizing, no ImageNet statistics), float images as given, vectors as given
        (:mod:`ogaudit.models.external`).
    head : with ``model``: the module name (``"fc"``, ``"classifier.1"``) of the ``nn.Linear`` giving the logits.
    reference : instruction data only: held-out pairs (a path, ``"instruct-tasks-test"``, a Dataset) for the
        gradient-cosine score, the influence of every training pair on each of them and class detection; the
        built-in ``instruct-tasks`` uses ``instruct-tasks-test`` by default.

    Returns
    -------
    AuditResult
        ``scores`` (one row per sample: ``sample_id, given_label, predicted_label, suggested_label, score``
        (higher = more suspicious), ``rank`` (1 = most suspicious), ``flagged, confidence, rare_class``,
        ``p_wrong, p_wrong_low, p_wrong_high, ambiguous, flag_stability, flag_stability_basis,
        flag_stability_of`` as :func:`score` gives them (the same numbers for the same evidence, written to
        ``scores.csv``; ``sample_id`` is text in both) — but where ogaudit trained the model (at least 6 epochs),
        ``flag_stability`` counts the checkpoints of that training instead of resamples
        (``flag_stability_basis`` ``"checkpoints"``, :func:`ogaudit.review.calibration.checkpoint_stability`), plus
        ``true_label, is_noisy`` with planted noise; integers when the arrays' labels were integers, else the
        class names), ``map`` (sample_id, x, y), ``record`` (the run record;
        ``record["metrics"]`` has AUROC and average precision against planted noise), ``dataset``, ``evidence``
        (the closed-form :class:`~ogaudit.gradients.HeadEvidence`), ``label_evidence`` (N, C), ``out_dir``.

    Raises
    ------
    TypeError
        ``data`` of none of the forms above (the message lists them), or DataFrame options with other data.
    DataError
        data that cannot be used (a string that is neither a built-in nor an existing path, non-numeric
        DataFrame columns, labels not one per sample ...), with the fix.
    SettingsError
        a setting outside its allowed values, or one that trains a model given with ``model``.
    ModelError
        ``model`` cannot be audited on this data (its head's outputs are not one per class, it fails on the
        data, something runs after its head), with the fix.
    Cancelled
        ``cancel`` was set.
    """
    from ogaudit.data.containers import ACCEPTED, as_dataset, is_container

    settings = AuditSettings() if settings is None else settings
    if not isinstance(settings, AuditSettings):
        raise TypeError(
            f"settings must be an AuditSettings (or None for the defaults); got {type(settings).__name__}. "
            "Build one: ogaudit.AuditSettings(epochs=3, noise_rate=0.1)."
        )
    columns = {"label_column": label_column, "id_column": id_column, "path_column": path_column}
    given_columns = {name: value for name, value in columns.items() if value is not None}
    given_model = _given_model(model, transform, head, settings, engine)
    if is_container(data):
        if given_columns:  # kept in the run's settings: the review reads the DataFrame again
            settings = replace(settings, **given_columns)
        data = as_dataset(
            data,
            class_names=None if class_names is None else list(class_names),
            fold_label_case=settings.fold_labels,
            **given_columns,
        )
    elif isinstance(data, str | os.PathLike) and class_names is None and not _is_builtin_name(data):
        if given_columns:  # a manifest's, an image or text table's columns: read (and read again) from settings
            settings = replace(settings, **given_columns)
    elif isinstance(data, str | os.PathLike | Dataset):
        options = {"class_names": class_names, **columns}
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise TypeError(
                f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to in-memory data (arrays, a "
                f"DataFrame, a torch or Hugging Face Dataset) and to the columns of files (label_column, path_column, "
                f"id_column: a manifest, an image or text table); data is "
                f"{data.describe() if isinstance(data, Dataset) else repr(str(data)[:80])}. Leave "
                f"{'it' if len(given) == 1 else 'them'} out (a text table's columns are set with "
                "AuditSettings(label_column=..., id_column=...))."
            )
    else:
        raise TypeError(f"data must be {ACCEPTED}; got a {type(data).__module__}.{type(data).__qualname__}.")
    if progress is not None and progress is not False and not callable(progress):
        raise TypeError(
            f"progress must be a function progress(stage, fraction, message), None (bars in a notebook or terminal) "
            f"or False (quiet); got {type(progress).__name__}."
        )
    bars = None
    if progress is None:
        from ogaudit.progress import AutoBars

        progress = bars = AutoBars(lambda message: _warn_notices("notice", 0.0, message))
    elif progress is False:
        progress = _warn_notices
    if isinstance(data, str | os.PathLike):
        from ogaudit.data.load import check_spec

        check_spec(data)  # a mistyped name is refused before the engine (torch) is imported
    from ogaudit.pipeline.run import audit as run_audit

    model_was_training = getattr(model, "training", False)
    project = out_dir if out_dir is None or isinstance(out_dir, RunFolder) else Project(out_dir)
    created = project is not None and not project.path.exists()
    lock = None
    try:
        if project is not None:  # one live audit per project folder: the app's jobs hold the same lock
            from ogaudit.server.jobs import FolderLock

            lock = FolderLock(project.writable().path, "audit").acquire()
        result = run_audit(
            data,
            settings,
            out_dir=project,
            cache_dir=cache_dir,
            progress=progress,
            cancel=cancel,
            trust_checkpoint_code=trust_checkpoint_code,
            engine=engine,
            ray_address=ray_address,
            given_model=given_model,
            reference=reference,
        )
        if result.dataset.integer_labels:
            result.scores = _integer_label_columns(result.scores)
        return result
    except BaseException:
        if lock is not None:
            lock.release()
            lock = None
        if created and project.path.is_dir() and not {p.name for p in project.path.iterdir()} - {"job-audit.lock"}:
            shutil.rmtree(project.path)  # a failed audit leaves no empty project folder behind
        raise
    finally:
        if bars is not None:
            bars.close()
        if lock is not None:
            lock.release()
        if model is not None and hasattr(model, "train"):
            model.train(model_was_training)


def _given_model(model, transform, head, settings: AuditSettings, engine):
    """``audit``'s ``model=``: None, or a function building the :class:`~ogaudit.models.external.UserModel` for
    the loaded data; the settings that would train or replace it are refused first."""
    if model is None:
        given = [name for name, value in (("transform", transform), ("head", head)) if value is not None]
        if given:
            raise TypeError(f"{' and '.join(given)} apply only with model= (your own classifier); leave them out.")
        return None
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (your trained classifier); got {type(model).__module__}."
            f"{type(model).__qualname__}. A checkpoint file goes in AuditSettings(model=PATH, arch=...)."
        )
    if settings.model != "auto":
        raise SettingsError(
            f"model= gives your own classifier, so AuditSettings(model={settings.model!r}) has nothing to choose; "
            "leave settings.model at 'auto'."
        )
    if settings.epochs is not None:
        raise SettingsError(
            f"epochs={settings.epochs} trains ogaudit's own model; yours (model=...) is audited as trained and "
            "never changed. Train it first, then leave epochs out."
        )
    if engine not in (None, "local"):
        raise SettingsError(
            f"an in-memory model runs in this process, on the local engine; engine={engine!r} would need its code "
            "on every node. Leave engine out (or save its weights and use --model torchvision:NAME --weights FILE)."
        )
    from ogaudit.models.external import wrap_model

    return lambda dataset: wrap_model(model, dataset, transform=transform, head=head)


class AuditNotice(UserWarning):
    """Something an audit without a ``progress`` callback wants said: a cache entry recomputed, a review in
    ``out_dir`` made for other data ... (also in ``result.record["notices"]``)."""


def _warn_notices(stage: str, fraction: float, message: str) -> None:
    """The progress callback of an audit called without one: notices become :class:`AuditNotice` warnings."""
    if stage == "notice":
        warnings.warn(message, AuditNotice, stacklevel=2)


def score(
    features=None,
    probs=None,
    labels=None,
    *,
    logits=None,
    evidence: GradientEvidence | None = None,
    detector: str = DEFAULT_DETECTOR,
    budget: float = DEFAULT_BUDGET,
    class_names: Sequence[str] | None = None,
    sample_ids=None,
    seed: int = 0,
) -> pd.DataFrame:
    """Score the outputs of a model you trained yourself for wrong labels, without training anything.

    A ``find_label_issues``-style call (as in cleanlab: the data first, options by keyword) over the
    per-sample last-layer loss gradients of Outlier Gradient Analysis (Chhabra et al., ICML 2025, arXiv
    2405.03869): from the penultimate features ``h`` and the softmax ``p`` each sample's gradient is
    ``(p − onehot(y)) ⊗ [h, 1]`` (:class:`~ogaudit.gradients.HeadEvidence`, kept factored), and the detector
    scores how much of an outlier it is. Give the features of the layer your model's last linear layer reads
    and its probabilities (or logits) on the same samples, ideally out-of-sample (cross-validated) ones.

    Parameters
    ----------
    features : array (N, d), float, or a file
        Penultimate features: the input of the model's last linear layer, one row per sample (numpy or torch).
        Or the path of a predictions file (``.npz`` or ``.parquet`` with features, probs or logits, labels and
        optionally sample ids and class names: :mod:`ogaudit.data.predictions`); arguments given here
        (``labels``, ``sample_ids``, ``class_names``) take precedence over the file's.
    probs : array (N, C), float
        The model's predicted class probabilities (softmax), rows summing to 1. Give ``probs`` or ``logits``.
    labels : array (N,)
        The given (possibly wrong) labels: class indices ``0 … C−1`` into the columns of ``probs``, or class
        names (strings; with ``class_names``, or else the columns are taken to be the names in sorted order, as
        scikit-learn's ``classes_``).
    logits : array (N, C), float, keyword-only
        The last layer's outputs before the softmax, instead of ``probs``.
    evidence : GradientEvidence, keyword-only
        Instead of the arrays above: any :class:`~ogaudit.gradients.GradientEvidence` (e.g.
        :class:`~ogaudit.gradients.HeadEvidence`, or an audit's ``result.evidence``); it carries its labels.
    detector : str
        A detector of :data:`ogaudit.detectors.outliers.DETECTORS`; default ``"posterior-auto"`` (the model's
        softmax fused with the labels of the 20 samples with the most similar gradient directions, scored by how
        unlikely the given label is or by how much likelier another label is, as the data's estimated confusions
        are spread or concentrated).
    budget : float
        How many samples to flag: a fraction in (0, 1) (0.05 = 5%) or a whole count ≥ 1.
    class_names : sequence of C str
        The name of each class (column of ``probs``); default the label names, or ``"0" … "C−1"``.
    sample_ids : array (N,)
        Unique ids, returned as text (as :func:`audit` and a project's ledger hold them); default the row numbers
        ``"0" … "N−1"``.
    seed : int
        Seeds the detectors that draw random numbers (IsolationForest).

    Returns
    -------
    pandas.DataFrame
        One row per sample, in the given order, with columns ``sample_id, given_label, predicted_label,
        suggested_label`` (the class whose counterfactual gradient is least outlying; integers when ``labels``
        are, names otherwise), ``score`` (higher = more
        suspicious), ``rank`` (1 = most suspicious), ``flagged`` (the top ``budget``), ``confidence`` (the
        model's probability of the given label), ``rare_class`` (the given class has fewer than 5 samples),
        ``p_wrong``: the probability that the given label is wrong, estimated on these samples
        (:func:`ogaudit.review.calibration.estimate_wrong`: the noise rate from the confident joint of given and
        true labels, each sample's share of it by Bayes' rule with the data's noise transition applied to the
        ``posterior`` fusion ``π`` of softmax and gradient-neighbour labels) whatever ``detector`` ranks the samples, the number an audit writes in ``scores.csv`` and the
        review cards start from; ``p_wrong_low``, ``p_wrong_high`` its 90% interval (a Beta prior per band of the
        estimate, widened by the noise rate's own uncertainty: :func:`ogaudit.review.calibration.noise_rates`);
        ``ambiguous`` (the model or the neighbours split between the given label and one other class) and ``flag_stability`` (flagged
        samples: the share of 30 bootstrap resamples of the neighbours that keep the evidence in the flagged
        share — a model given here has no training checkpoints to compare; NaN elsewhere; ≥ 0.8 reads stable;
        it says whether the verdict may flip, not whether the label is wrong: docs/BENCHMARKS.md,
        *Calibration*), ``flag_stability_basis`` (``"neighbours"`` where flagged, ``""`` elsewhere) and
        ``flag_stability_of`` (30 where flagged: the resamples counted).
        Its ``attrs`` (pandas' metadata, kept by copies) say how it was scored, as an audit's ``run.json`` does:
        ``attrs["detector"]`` the detector's name and ``attrs["detector_state"]`` what it read from the data
        (:func:`ogaudit.detectors.outliers.detector_state`: for ``posterior-auto`` the concentration ``κ`` of
        the estimated wrong labels, its 90% lower bound ``concentration_low`` and the weight ``ratio_weight`` on
        ``posterior-ratio``; {} for the others).

    Raises
    ------
    DataError
        arrays of the wrong shape, non-finite values, probabilities that are not probabilities, labels outside
        the classes, repeated ids; the message names the parameter, what it got and the fix.
    SettingsError
        an unknown ``detector`` or a bad ``budget``.
    TypeError
        ``evidence`` that is not a GradientEvidence, or both ``evidence`` and arrays.

    Examples
    --------
    >>> issues = ogaudit.score(features, probs, labels)          # doctest: +SKIP
    >>> issues[issues.flagged].sort_values("rank")              # doctest: +SKIP
    """
    from ogaudit.detectors.base import flag_budget
    from ogaudit.detectors.outliers import (
        DETECTORS,
        counterfactual_scores,
        detector_state,
        gradient_neighbours,
        make_detector,
    )
    from ogaudit.detectors.scoring import score_table
    from ogaudit.gradients import GradientEvidence, HeadEvidence
    from ogaudit.review.evidence import RunEvidence

    if not isinstance(detector, str) or detector not in DETECTORS:
        raise SettingsError(f"detector={detector!r} is not one of {sorted(DETECTORS)}. Pick one, e.g. 'posterior'.")
    try:
        if isinstance(budget, bool | np.bool_):  # True would be a count of 1, False nothing: never meant
            raise SettingsError(
                f"budget must be a fraction in (0, 1) such as 0.05, or a whole count ≥ 1 such as 200; got {budget!r}."
            )
        budget = check_budget(budget)
    except SettingsError as error:
        raise SettingsError(f"{error} Pass budget=0.05 (5%) or budget=100 (a count).") from None
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SettingsError(
            f"seed must be a whole number ≥ 0 (it seeds the detectors that draw random numbers); got {seed!r}. "
            "Pass e.g. seed=0."
        )
    seed = int(seed)
    if isinstance(features, str | os.PathLike):
        from ogaudit.data.predictions import read_predictions

        if probs is not None or logits is not None:
            raise TypeError(
                "features is a predictions file, which holds the probabilities (or logits): leave out probs/logits."
            )
        saved = read_predictions(features)
        if labels is None and saved.labels is None:
            raise DataError(f"{saved.source} holds no labels (names looked for: labels, label, y); pass labels=.")
        features, probs = saved.features, saved.probs
        labels = saved.labels if labels is None else labels
        sample_ids = saved.sample_ids if sample_ids is None else sample_ids
        class_names = saved.class_names if class_names is None else class_names
    if evidence is not None:
        if not isinstance(evidence, GradientEvidence):
            raise TypeError(
                f"evidence must be a GradientEvidence (e.g. ogaudit.gradients.HeadEvidence or result.evidence); got "
                f"{type(evidence).__name__}. Or pass the arrays: ogaudit.score(features, probs, labels)."
            )
        given = [
            n
            for n, v in (("features", features), ("probs", probs), ("labels", labels), ("logits", logits))
            if v is not None
        ]
        if given:
            raise TypeError(
                f"Give evidence or the arrays, not both: evidence was given with {', '.join(given)}. The evidence "
                "carries its own probabilities and labels."
            )
        source = evidence
        n, n_classes, label_index = _check_evidence(evidence)
        names = _class_names(class_names, n_classes, None)
    else:
        x = _matrix(features, "features", "(N, d) penultimate features, one row per sample")
        n = len(x)
        if (probs is None) == (logits is None):
            raise DataError(
                f"Give exactly one of probs= (N, C) softmax probabilities or logits= (N, C); got "
                f"{'both' if probs is not None else 'neither'}."
            )
        outputs = _matrix(probs if logits is None else logits, "probs" if logits is None else "logits", "(N, C)")
        name = "probs" if logits is None else "logits"
        if len(outputs) != n:
            raise DataError(
                f"{name} has {len(outputs)} rows but features has {n}; give both for the same samples, in the "
                "same order."
            )
        n_classes = outputs.shape[1]
        if n_classes < 2:
            raise DataError(f"{name} has shape {outputs.shape}: one column per class, at least two classes.")
        if logits is None:
            _check_probabilities(outputs)
        label_index, names = _labels(labels, n, n_classes, class_names)
        if logits is None:
            ones = np.ones((n, 1), dtype=np.float32)
            source = HeadEvidence(np.hstack([x.astype(np.float32), ones]), outputs.astype(np.float32), label_index)
        else:
            source = HeadEvidence.from_head(x, outputs, label_index)
    ids = _sample_ids(sample_ids, n)

    fitted = make_detector(detector, seed=seed).fit(source)
    outlier = np.asarray(fitted.outlier_scores(source), dtype=np.float64)
    try:
        label_evidence = counterfactual_scores(fitted, source)
    except SettingsError:  # fixed (projected) gradients and a detector without a posterior: no counterfactuals
        label_evidence = -np.log(np.clip(np.asarray(source.probs, dtype=np.float64), 1e-12, None))
    features_with_bias = (
        source.features
        if isinstance(source, HeadEvidence)
        else np.hstack([source.directions(), np.ones((n, 1), dtype=np.float32)])
    )
    review = RunEvidence(
        features_with_bias, source.probs, label_index, label_evidence, neighbours=gradient_neighbours(fitted)
    )
    flagged, _ = flag_budget(outlier, budget)
    table = score_table(
        outlier,
        label_evidence,
        source.probs,
        label_index,
        class_names=names,
        sample_ids=ids,
        budget=budget,
        columns=review.table_columns(flagged, seed=seed),
    )
    if evidence is None and class_names is None and _integer_labels_given(labels):
        table = _integer_label_columns(table)
    table = table[list(SCORE_COLUMNS)].copy()
    table.attrs["detector"] = detector
    table.attrs["detector_state"] = detector_state(fitted)
    return table


def _integer_labels_given(labels) -> bool:
    """Whether :func:`score`'s ``labels`` are integers (numpy, torch or a list): then its table's labels are too."""
    dtype = getattr(labels, "dtype", None)
    if dtype is None and isinstance(labels, list | tuple):
        dtype = np.asarray(labels).dtype
    if dtype is None:
        return False
    text = str(dtype)
    return text.startswith(("torch.int", "torch.uint")) or (getattr(dtype, "kind", "") in ("i", "u"))


def _integer_label_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its label columns (given, predicted, suggested, true) as int64 when every value is a whole
    number written plainly, as the labels given were; otherwise unchanged."""
    from ogaudit.review.exports import integer_labels

    columns = [c for c in ("given_label", "predicted_label", "suggested_label", "true_label") if c in table]
    values = sorted({str(v) for c in columns for v in table[c]})
    if not columns or not integer_labels(values):
        return table
    table = table.copy()
    for column in columns:
        table[column] = table[column].astype(str).astype(np.int64)
    return table


def export(
    source,
    path: str | os.PathLike,
    *,
    format: str,
    data=None,
    url_prefix: str | None = None,
):
    """Hand an audit's flags (and a project's review decisions) to another tool, in that tool's own format.

    Parameters
    ----------
    source : what to export: an :class:`~ogaudit.pipeline.run.AuditResult` (``ogaudit.audit``'s; with its
        ``out_dir``, that project's decisions too), ``ogaudit.score``'s table, a :class:`Project` or a project
        folder's path.
    path : where to write; nothing else is written (never into the data): a new or empty folder for
        ``fiftyone``, ``label-studio`` and ``hf``; a ``.parquet`` / ``.csv`` file for ``parquet`` / ``cleanlab``.
    format : keyword-only, one of

        * ``"fiftyone"``: FiftyOne's ``FiftyOneImageClassificationDataset`` (``data/`` + ``labels.json``);
          ``fo.Dataset.from_dir(path, fo.types.FiftyOneImageClassificationDataset)`` gives each image a
          ``ground_truth`` classification (the given label) with attributes ``score, rank, flagged, p_wrong,
          p_wrong_low, p_wrong_high, p_wrong_calibrated, suggested_label, predicted_label, decision, reviewed_label``. Images only.
        * ``"label-studio"``: ``tasks.json`` (one task per sample, most suspicious first, the suggested label as a
          prediction scored by P(wrong)) and ``label_config.xml`` (the image- or text-classification template);
          images under ``images/``, served by Label Studio's local-files storage with
          ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=path`` (or from ``url_prefix``).
        * ``"hf"``: a ``datasets.Dataset`` ``save_to_disk`` folder (``datasets.load_from_disk``), label columns as
          ``ClassLabel``, with ``image`` / ``text`` when the data has them.
        * ``"parquet"``: the same table as one Parquet file (labels as they were given).
        * ``"cleanlab"``: cleanlab's label-issues frame (``is_label_issue``, ``label_score`` = 1 − P(wrong),
          ``given_label``, ``predicted_label``) as CSV, then ``sample_id`` and the four P(wrong) columns.

        Every table has ``sample_id, given_label, predicted_label, suggested_label, score`` (higher = more
        suspicious), ``rank`` (1 = most suspicious), ``flagged, p_wrong, p_wrong_low, p_wrong_high,
        p_wrong_calibrated, decision, reviewed_label, annotator, decided_at``: ``p_wrong`` with its 90% interval as
        the review card shows it (with the project's decisions applied), and ``p_wrong_calibrated`` False where the
        card reads "not yet calibrated: between p_wrong_low and p_wrong_high" (read the interval, not the number).
        Integer labels stay integers.
    data : the audited data when it is not at hand: for a project, where it is now (or the same in-memory data
        again); for ``ogaudit.score``'s table, the data scored (a :class:`Dataset` or what :func:`audit` takes).
    url_prefix : Label Studio only: the URL before each image's path in the export folder.

    Returns
    -------
    pathlib.Path : the folder or file written.

    Raises
    ------
    DataError : an unknown format, data a format cannot hold (FiftyOne: images; Label Studio: images or texts),
        data that is not the audited data, a path inside the data or among a project's own files.
    StorageError : a path that is taken or not writable.
    TypeError : a ``source`` of another kind.

    Examples
    --------
    >>> result = ogaudit.audit((x, y))                                        # doctest: +SKIP
    >>> ogaudit.export(result, "flags-fo", format="fiftyone")                 # doctest: +SKIP
    >>> ogaudit.export("runs/demo", "demo.parquet", format="parquet")         # doctest: +SKIP
    """
    from pathlib import Path

    import pandas as pd

    from ogaudit.review.exports import LABEL_STUDIO_URL_PREFIX, reviewed_table, write_export

    prefix = url_prefix or LABEL_STUDIO_URL_PREFIX
    if isinstance(source, str | os.PathLike) and not isinstance(source, RunFolder):
        source = Project(source)
    if isinstance(source, Project):
        return source.export(path, format=format, data=data, url_prefix=url_prefix)
    if isinstance(source, RunFolder):
        return Project(source.path).export(path, format=format, data=data, url_prefix=url_prefix)
    if isinstance(source, pd.DataFrame):
        dataset = None
        if data is not None:
            from ogaudit.data.containers import as_dataset, is_container
            from ogaudit.data.load import load_dataset

            dataset = (
                data if isinstance(data, Dataset) else as_dataset(data) if is_container(data) else load_dataset(data)
            )
        names = sorted({*source["given_label"].astype(str), *source["suggested_label"].astype(str)})
        if dataset is not None:
            names = list(dataset.class_names)
        elif all(n.lstrip("-").isdigit() for n in names):
            names = sorted(names, key=int)
        integer = source["given_label"].dtype.kind in "iu"  # ogaudit.score's table: integers when labels were
        table = reviewed_table(source, None, names, integer=integer)
        _check_outside_data(Path(path), dataset)
        return write_export(table, path, format=format, class_names=names, dataset=dataset, url_prefix=prefix)
    if hasattr(source, "scores") and hasattr(source, "dataset") and hasattr(source, "evidence"):
        out_dir = getattr(source, "out_dir", None)
        if out_dir is not None and Project(out_dir).has_run():
            project = Project(out_dir)
            if project.read_record().get("fingerprint") == source.record.get("fingerprint"):
                return project.export(path, format=format, data=source.dataset, url_prefix=url_prefix)
        from ogaudit.review.evidence import RunEvidence

        evidence = source.evidence
        p_wrong = None  # the scores' own p_wrong column when they have one
        if "p_wrong" not in source.scores and hasattr(evidence, "features") and source.label_evidence is not None:
            review = RunEvidence(
                evidence.features,
                evidence.probs,
                evidence.labels,
                np.asarray(source.label_evidence),
                neighbours=getattr(source, "neighbours", None),
            )
            p_wrong = review.p_wrong()
        names = list(source.dataset.class_names)
        table = reviewed_table(source.scores, None, names, integer=source.dataset.integer_labels, p_wrong=p_wrong)
        _check_outside_data(Path(path), source.dataset)
        return write_export(table, path, format=format, class_names=names, dataset=source.dataset, url_prefix=prefix)
    raise TypeError(
        f"source must be an AuditResult (ogaudit.audit's), ogaudit.score's table, a Project or a project folder's "
        f"path; got {type(source).__module__}.{type(source).__qualname__}."
    )


def _check_outside_data(target, dataset: Dataset | None) -> None:
    """Refuse an export path inside the audited data's folder (exports never write into the user's data)."""
    if dataset is None:
        return
    roots = [r for r in (dataset.root, dataset.source) if r and os.path.isabs(str(r))]
    inside = target.expanduser().absolute().resolve()
    for root in roots:
        from pathlib import Path

        root = Path(root).resolve()
        if root.exists() and (inside == root or (root.is_dir() and inside.is_relative_to(root))):
            raise DataError(
                f"{str(target)!r} is inside the audited data {str(root)!r}, which exports never write to. "
                "Choose a path outside it."
            )


def _array(value, name: str) -> np.ndarray:
    """``value`` as numpy: torch tensors detached and moved to the CPU (bfloat16/float16 as float32; sparse,
    nested and 'meta' tensors, scipy sparse matrices and masked arrays with masked values refused with the fix),
    as :func:`ogaudit.audit` reads them."""
    from ogaudit.data.containers import _to_numpy

    if _is_array_like_container(value):
        return _to_numpy(value, name)
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise DataError(f"{name} cannot be read as an array ({error}); give a numpy array or a torch tensor.") from None


def _is_array_like_container(value) -> bool:
    """A torch tensor, scipy sparse matrix or numpy masked array: read by the containers' own conversion."""
    module = type(value).__module__
    return module.startswith(("torch", "scipy.sparse")) or isinstance(value, np.ma.MaskedArray)


def _matrix(value, name: str, shape: str) -> np.ndarray:
    """A finite (N, k) float array, N > 0, or a DataError naming ``name``."""
    if value is None:
        raise DataError(f"{name} is missing: give {shape} (numpy or torch).")
    array = _array(value, name)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        hint = " (one sample? use array.reshape(1, -1))" if array.ndim == 1 else ""
        raise DataError(f"{name} must be a 2-D array {shape}; got shape {array.shape}{hint}.")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name} must be numeric; got dtype {array.dtype}. Convert it: {name}.astype('float32').")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise DataError(
            f"{name} has NaN or infinite values in {int(bad.sum())} row(s), first at row {int(np.flatnonzero(bad)[0])}. "
            "Drop or fix those samples in every array."
        )
    huge = np.abs(array).max(axis=1) > np.finfo(np.float32).max
    if huge.any():
        raise DataError(
            f"{name} has values beyond the float32 range (±3.4e38) in {int(huge.sum())} row(s), first at row "
            f"{int(np.flatnonzero(huge)[0])}; scores are computed in float32, where they become infinite. "
            f"Rescale {name} (e.g. divide by its largest absolute value, or standardise each column)."
        )
    return array


def _check_evidence(evidence: GradientEvidence) -> tuple[int, int, np.ndarray]:
    """``(N, C, labels)`` of ``evidence``, checked as the arrays of :func:`score` are: (N, C) probabilities
    summing to 1 per row, (N,) labels indexing its columns, finite features within float32."""
    probs = _matrix(evidence.probs, "evidence.probs", "(N, C) probabilities")
    n, n_classes = probs.shape
    if n_classes < 2:
        raise DataError(f"evidence.probs has shape {probs.shape}: one column per class, at least two classes.")
    _check_probabilities(probs, "evidence.probs")
    labels = _array(evidence.labels, "evidence.labels")
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise DataError(
            f"evidence.labels must be (N,) = ({n},) integer class indices; got shape {labels.shape}, dtype "
            f"{labels.dtype}. Build the evidence with the labels as indices into the columns of its probs."
        )
    outside = (labels < 0) | (labels >= n_classes)
    if outside.any():
        raise DataError(
            f"evidence.labels must be class indices 0 … {n_classes - 1} (the columns of evidence.probs); "
            f"{int(outside.sum())} are outside, e.g. {labels[outside][:3].tolist()}."
        )
    features = getattr(evidence, "features", None)
    if features is not None:
        matrix = _matrix(features, "evidence.features", "(N, d + 1) features with a bias column")
        if len(matrix) != n:
            raise DataError(
                f"evidence.features has {len(matrix)} rows but evidence.probs has {n}; give both per sample."
            )
    return n, n_classes, labels.astype(np.int64)


def _check_probabilities(probs: np.ndarray, name: str = "probs") -> None:
    sums = probs.sum(axis=1)
    off = (probs < 0).any(axis=1) | (probs > 1).any(axis=1) | ~np.isclose(sums, 1.0, atol=1e-3)
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise DataError(
            f"{name} must hold probabilities, each row in [0, 1] summing to 1; {int(off.sum())} row(s) do not, first "
            f"row {row}: {np.round(probs[row][:6], 4).tolist()} (sum {sums[row]:.4g}). If these are raw scores, "
            "pass them as logits= instead."
        )


def _class_names(class_names, n_classes: int, inferred: list[str] | None) -> list[str]:
    if class_names is None:
        return inferred if inferred is not None else [str(c) for c in range(n_classes)]
    names = [str(c) for c in _array(class_names, "class_names").tolist()]
    if len(names) != n_classes:
        raise DataError(
            f"class_names has {len(names)} names but probs has {n_classes} columns; give one name per column, in "
            "the columns' order."
        )
    if len(set(names)) != len(names):
        raise DataError(f"class_names repeats names: {sorted({c for c in names if names.count(c) > 1})[:5]}.")
    return names


def _labels(labels, n: int, n_classes: int, class_names) -> tuple[np.ndarray, list[str]]:
    """(N,) int64 class indices and the C class names, from ``labels`` as indices or names."""
    if labels is None:
        raise DataError("labels is missing: give the (N,) given labels, class indices or names.")
    categorical = _categorical(labels)
    if categorical is not None:
        categories, codes = categorical
        if (codes < 0).any():
            raise DataError(
                f"labels is a pandas Categorical with {int((codes < 0).sum())} missing value(s), first at row "
                f"{int(np.flatnonzero(codes < 0)[0])}; give every sample a label."
            )
        if class_names is None:  # the categories' order is the class order: column c of probs is categories[c]
            if len(categories) != n_classes:
                raise DataError(
                    f"labels is a pandas Categorical of {len(categories)} categories ({categories[:10]}) but probs "
                    f"has {n_classes} columns; its categories are taken as the columns, in order. Set them "
                    "(labels.cat.set_categories([...])) or give class_names= naming each column."
                )
            if len(codes) != n:
                raise DataError(f"labels must be (N,) = ({n},), one label per row of features; got {len(codes)}.")
            return codes.astype(np.int64), categories
        labels = np.asarray(categories, dtype=object)[codes].astype(str)  # names, placed by class_names
    y = _array(labels, "labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"labels must be (N,) = ({n},), one label per row of features; got shape {y.shape}.")
    if y.dtype.kind in "USO":
        text = y.astype(str)
        if class_names is None:
            present = sorted(set(text.tolist()))
            if len(present) != n_classes:
                raise DataError(
                    f"labels are names of {len(present)} classes ({present[:10]}) but probs has {n_classes} "
                    "columns; give class_names= naming each column, in the columns' order."
                )
            names = present
        else:
            names = _class_names(class_names, n_classes, None)
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(set(text.tolist()) - set(index))
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not in class_names {names[:20]}. Add them or fix the labels.")
        return np.array([index[v] for v in text.tolist()], dtype=np.int64), names
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and np.array_equal(y, np.round(y))):
            raise DataError(
                "labels must be class indices or names; got non-integer floats, e.g. "
                f"{y[~np.isfinite(y) | (y != np.round(y))][:3].tolist()}. For probabilities use probs=."
            )
    elif y.dtype.kind not in "iub":
        raise DataError(f"labels must be class indices or names; got dtype {y.dtype}.")
    index = y.astype(np.int64)
    outside = (index < 0) | (index >= n_classes)
    if outside.any():
        raise DataError(
            f"labels must be class indices 0 … {n_classes - 1} (the columns of probs); {int(outside.sum())} are "
            f"outside, e.g. {index[outside][:3].tolist()}. Map your classes to column positions first."
        )
    return index, _class_names(class_names, n_classes, None)


def _categorical(labels) -> tuple[list[str], np.ndarray] | None:
    """``(categories as str, codes)`` of a pandas Categorical or categorical Series, else None."""
    if not type(labels).__module__.startswith("pandas"):
        return None
    values = getattr(labels, "array", labels)  # a Series' Categorical
    categories, codes = getattr(values, "categories", None), getattr(values, "codes", None)
    if categories is None or codes is None:
        return None
    return [str(c) for c in categories], np.asarray(codes, dtype=np.int64)


def _sample_ids(sample_ids, n: int) -> np.ndarray:
    """(N,) str ids, as :func:`audit` gives them (a Dataset's ids are text): the given ids as text, or the row
    numbers ``"0" … "N−1"``."""
    if sample_ids is None:
        return np.arange(n).astype(str).astype(object)
    ids = _array(sample_ids, "sample_ids")
    if ids.shape != (n,):
        raise DataError(f"sample_ids must be (N,) = ({n},), one id per sample; got shape {ids.shape}.")
    text = ids.astype(str)
    if len(set(text.tolist())) != n:
        repeated = [v for v, k in zip(*np.unique(text, return_counts=True), strict=True) if k > 1]
        raise DataError(f"sample_ids must be unique; {len(repeated)} repeat, e.g. {repeated[:3]}.")
    return text.astype(object)


def _is_builtin_name(data) -> bool:
    """Whether ``data`` names a built-in dataset (which has no columns to choose)."""
    from ogaudit.data.builtins import BUILTINS
    from ogaudit.data.text import TEXT_BUILTINS

    return isinstance(data, str) and (data in BUILTINS or data in TEXT_BUILTINS)
