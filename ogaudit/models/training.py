"""Seeded in-process training, batched inference, and the on-disk model cache."""

from __future__ import annotations

import copy
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ogaudit.data.dataset import KEEP_WHOLE_CLASS_SIZE, Dataset
from ogaudit.data.imagefiles import ImageFiles
from ogaudit.models.base import AuditModel
from ogaudit.progress import ProgressCallback, check_cancel, report
from ogaudit.settings import TrainSettings
from ogaudit.storage import atomic_path, fingerprint, release_pages

__all__ = [
    "TrainSettings",
    "Trajectory",
    "TrainingRun",
    "batch_tensor",
    "batched_features",
    "train_model",
    "training_loss",
]

HOLDOUT_MAX_SAMPLES = 1000
"""At most this many samples, the automatic recipe picks its epochs on a held-out part (see :func:`train_model`):
small data are memorised within the fixed rule's epochs, wrong labels included."""
HOLDOUT_FOLDS = 4
RELEASE_EVERY_BATCHES = 64
"""Training batches between releases of a memory-mapped ``x``'s pages (:func:`~ogaudit.storage.release_pages`)."""
EARLY_FRACTION = 0.25
"""The early checkpoint is kept after this share of the epochs (at least one): the model has learnt the clean
majority but not yet memorised the wrong labels (the early-learning regime), so its features have not fitted the
noise (SimiFeat, Zhu et al. 2022, votes among neighbours in such features)."""


TRAJECTORY_MAX_CELLS = 10_000_000
"""A trajectory is recorded up to this many samples × classes (four (N, C) float32 sums: 160 MB at the cap);
above it, none (the detectors that read one say so)."""


GCE_Q = 0.7
"""Generalized cross-entropy's ``q`` (Zhang & Sabuncu 2018, their choice): ``(1 − p_y^q) / q``, cross-entropy as
q → 0, mean absolute error at q = 1."""
SCE_ALPHA, SCE_BETA, SCE_LOG_ZERO = 0.1, 1.0, -4.0
"""Symmetric cross-entropy's weights and its ``log 0`` (Wang et al. 2019, their CIFAR-10 choice):
``α · CE + β · RCE`` with the reverse cross-entropy ``RCE = −A (1 − p_y)``."""
LABEL_SMOOTHING = 0.1
"""The label-smoothing loss's ε: cross-entropy against ``(1 − ε) · onehot(y) + ε / C``."""


def training_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "cross-entropy") -> torch.Tensor:
    """The mean training loss of ``logits`` (B, C) at ``labels`` (B,) int64, a scalar tensor.

    ``"cross-entropy"``: ``−log p_y``. ``"gce"``: generalized cross-entropy ``(1 − p_y^q) / q`` with q =
    :data:`GCE_Q` (Zhang & Sabuncu 2018): its gradient is cross-entropy's weighted by ``p_y^q``, so a sample the model
    finds unlikely (a wrong label, often) pulls less. ``"sce"``: symmetric cross-entropy ``α · CE + β · (−A)(1 −
    p_y)`` (Wang et al. 2019, :data:`SCE_ALPHA`, :data:`SCE_BETA`, :data:`SCE_LOG_ZERO`). ``"label-smoothing"``:
    cross-entropy against ``(1 − ε) · onehot(y) + ε / C``, ε = :data:`LABEL_SMOOTHING`. ValueError for another
    name (:data:`ogaudit.settings.TRAIN_LOSSES` lists them).
    """
    if loss == "cross-entropy":
        return F.cross_entropy(logits, labels)
    if loss == "label-smoothing":
        return F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)
    log_p = torch.log_softmax(logits, dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    if loss == "gce":
        return ((1.0 - torch.exp(GCE_Q * log_p)) / GCE_Q).mean()
    if loss == "sce":
        return SCE_ALPHA * (-log_p).mean() + SCE_BETA * (-SCE_LOG_ZERO) * (1.0 - log_p.exp()).mean()
    raise ValueError(f"loss must be one of cross-entropy, gce, sce, label-smoothing; got {loss!r}.")


def early_epoch(epochs: int) -> int:
    """The epoch after which the early checkpoint is kept: ``max(1, round(EARLY_FRACTION · epochs))``."""
    return max(1, int(round(EARLY_FRACTION * epochs)))


@dataclass
class Trajectory:
    """The training trajectory of every sample, one record per epoch (not per batch): what the model said about
    each sample in the batch that trained on it, as AUM (Pleiss et al. 2020) and margin averaging (Pickler et al.
    2025, arXiv 2510.16211) read it.

    The per-class sums make the mean margin of *any* label exact without keeping (E, N, C) logits: the margin of
    label ``c`` at one epoch is ``z_c − max_{k≠c} z_k = z_c − top1 + [c = argmax] · (top1 − top2)``.

    epochs : E, the epochs recorded.
    margins : (E, N) float32, per epoch the logit margin of the given label, ``z_y − max_{k≠y} z_k``.
    logit_sum : (N, C) float32, the logits summed over epochs; ``logit_top`` (N,) the top logit summed;
        ``logit_gap`` (N, C) ``top1 − top2`` summed into the column of each epoch's argmax.
    prob_sum, prob_top, prob_gap : the same for the softmax probabilities.
    early_features : (N, d) float32 penultimate features of the early checkpoint (:func:`early_epoch`) or, for a
        frozen backbone, its (never noise-fitted) features; filled by the pipeline
        (:func:`~ogaudit.pipeline.stages.training_dynamics`), None until then.
    """

    epochs: int
    margins: np.ndarray
    logit_sum: np.ndarray
    logit_top: np.ndarray
    logit_gap: np.ndarray
    prob_sum: np.ndarray
    prob_top: np.ndarray
    prob_gap: np.ndarray
    early_features: np.ndarray | None = None

    ARRAYS = ("margins", "logit_sum", "logit_top", "logit_gap", "prob_sum", "prob_top", "prob_gap")

    @classmethod
    def empty(cls, epochs: int, n: int, n_classes: int) -> Trajectory:
        def zeros(*shape):
            return np.zeros(shape, dtype=np.float32)

        return cls(epochs, zeros(epochs, n), zeros(n, n_classes), zeros(n), zeros(n, n_classes),
                   zeros(n, n_classes), zeros(n), zeros(n, n_classes))  # fmt: skip

    def record(self, epoch: int, index: np.ndarray, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch's in-training ``logits`` (B, C) for samples ``index`` (B,) at ``epoch`` (0-based)."""
        for values, total, top_total, gap_total in (
            (logits, self.logit_sum, self.logit_top, self.logit_gap),
            (torch.softmax(logits, dim=1), self.prob_sum, self.prob_top, self.prob_gap),
        ):
            array = values.detach().float().numpy()
            best, second = torch.topk(values.detach().float(), 2, dim=1).values.numpy().T
            top = array.argmax(axis=1)
            total[index] += array
            top_total[index] += best
            gap_total[index, top] += best - second
            if values is logits:
                given = array[np.arange(len(index)), labels.numpy()]
                self.margins[epoch, index] = given - np.where(top == labels.numpy(), second, best)

    def aum(self, labels: np.ndarray) -> np.ndarray:
        """(N,) area under the margin: the logit margin of ``labels`` averaged over the epochs."""
        return self._mean_margin(self.logit_sum, self.logit_top, self.logit_gap, labels)

    def mean_margin(self, labels: np.ndarray) -> np.ndarray:
        """(N,) the probability margin ``p_y − max_{k≠y} p_k`` of ``labels`` averaged over the epochs, in [−1, 1]."""
        return self._mean_margin(self.prob_sum, self.prob_top, self.prob_gap, labels)

    def mean_probs(self) -> np.ndarray:
        """(N, C) float64 in-training softmax averaged over the epochs (an ensemble of the epochs' checkpoints,
        each sample scored as it trained); rows sum to 1."""
        probs = self.prob_sum.astype(np.float64) / max(self.epochs, 1)
        return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)

    def _mean_margin(self, total, top, gap, labels) -> np.ndarray:
        rows = np.arange(len(labels))
        labels = np.asarray(labels)
        return (total[rows, labels] - top + gap[rows, labels]).astype(np.float64) / max(self.epochs, 1)

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded arrays by name (what :meth:`from_arrays` reads back); ``early_features`` is not included."""
        return {name: getattr(self, name) for name in self.ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n: int, n_classes: int) -> Trajectory:
        """Read back :meth:`arrays`; ValueError when a shape does not fit ``n`` samples and ``n_classes``."""
        epochs = int(arrays["margins"].shape[0])
        expected = {"margins": (epochs, n), "logit_top": (n,), "prob_top": (n,)}
        for name in cls.ARRAYS:
            shape = expected.get(name, (n, n_classes))
            if arrays[name].shape != shape:
                raise ValueError(f"trajectory {name} has shape {arrays[name].shape}, not {shape}")
        return cls(epochs, *(np.asarray(arrays[name], dtype=np.float32) for name in cls.ARRAYS))


@dataclass
class TrainingRun:
    """What training left besides the weights.

    history : per epoch ``{"epoch", "loss", "accuracy"}`` of the final training.
    epochs : the epochs of the final training (chosen on a held-out part for small data with automatic epochs).
    holdout : for held-out epoch choice, ``{"samples", "folds", "max_epochs", "losses",
        "out_of_fold_confidence", "temperature"}``: the out-of-fold loss after each epoch, the mean out-of-fold
        confidence in the given labels, and the softmax temperature folded into the head; else None.
    notes : what the recipe decided and why, one sentence each (for the run record).
    trajectory : the final training's :class:`Trajectory`.
    early_state : the model's ``state_dict`` after :func:`early_epoch` epochs of the final training, for models
        whose body trains; None for a frozen body (its features never change).
    """

    history: list[dict]
    epochs: int = 0
    holdout: dict | None = None
    notes: list[str] = field(default_factory=list)
    trajectory: Trajectory | None = None
    early_state: dict | None = None


def train_model(
    model: AuditModel,
    dataset: Dataset,
    settings: TrainSettings,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    features: np.ndarray | None = None,
) -> TrainingRun:
    """Train ``model`` in place on the given labels (AdamW, seeded shuffles).

    Samples are read one batch at a time from ``dataset.x`` (which may be a memory map), so memory does not grow
    with the pixels. A model with a frozen body (``trainable == "head"``) trains its head on the penultimate
    features ``features`` (N, d) float32 when given (extracted once and cached by the caller), else on features
    computed here.

    With automatic epochs (``settings.epochs is None``) and at most ``HOLDOUT_MAX_SAMPLES`` samples, the epochs are
    chosen on data (not when fine-tuning an encoder, whose passes are too costly to repeat per fold): from the same
    initial weights, the model trains on each of ``HOLDOUT_FOLDS`` stratified folds' complement for up to
    :func:`~ogaudit.settings.auto_epochs` epochs, scoring the held-out fold (given labels) after each; the epoch count with the lowest
    out-of-fold loss is then trained on all samples from those initial weights. Last, the head's logits are divided by
    the softmax temperature (≥ 1) that brings the mean in-sample confidence in the given labels down to the out-of-fold
    one (:func:`matching_temperature`; the out-of-fold logits are first calibrated by :func:`fit_temperature`). A fixed
    epoch rule memorises a 20-image set, wrong labels included, and then reports them right with near-certain
    confidence.
    """
    torch.manual_seed(settings.seed)
    labels = torch.as_tensor(dataset.y)
    if model.trainable == "head":
        if features is None:
            features = batched_features(model, dataset.x, progress=progress, cancel=cancel)
        if len(features) != len(dataset):
            raise ValueError(f"features has {len(features)} rows for {len(dataset)} samples.")
        inputs = torch.as_tensor(np.asarray(features, dtype=np.float32))
        embed, parameters = nn.Identity(), model.head.parameters
    else:
        inputs, embed, parameters = dataset.x, model.features, model.parameters  # read batch by batch
    epochs, holdout, notes = settings.resolved_epochs(len(dataset)), None, []
    if settings.epochs is None and len(dataset) <= HOLDOUT_MAX_SAMPLES and not settings.fine_tune:
        inputs = _as_tensor(inputs)  # small data: the held-out folds index it freely
        epochs, holdout = _holdout_epochs(model, inputs, labels, embed, parameters, settings, epochs, progress, cancel)
        if holdout is not None:
            notes.append(
                f"small data ({len(dataset)} samples): {epochs} epoch(s), the lowest out-of-fold loss "
                f"({holdout['folds']} folds) of up to {holdout['max_epochs']}, so that wrong labels are not memorised"
            )
    n_classes = model.head.out_features
    record = len(dataset) * n_classes <= TRAJECTORY_MAX_CELLS
    trajectory = Trajectory.empty(epochs, len(dataset), n_classes) if record else None
    kept: dict = {}
    early = early_epoch(epochs)

    def keep_early(epoch: int) -> None:
        if epoch == early and model.trainable != "head":
            kept["state"] = copy.deepcopy(model.state_dict())

    history = _fit(
        model,
        inputs,
        labels,
        embed,
        parameters(),
        epochs,
        settings,
        progress,
        cancel,
        start=0.5 if holdout else 0.0,
        stage="all samples: " if holdout else "",
        trajectory=trajectory,
        after_epoch=keep_early,
    )
    model.eval()
    if holdout is not None:
        with torch.no_grad():
            logits = model.head(embed(inputs))
        holdout["temperature"] = matching_temperature(logits, labels, holdout["out_of_fold_confidence"])
        if holdout["temperature"] > 1.0:
            with torch.no_grad():  # softmax(z / T), folded into the head
                model.head.weight.div_(holdout["temperature"])
                if model.head.bias is not None:
                    model.head.bias.div_(holdout["temperature"])
            notes.append(
                f"confidences are tempered (softmax temperature {holdout['temperature']:.2f}) to the "
                f"{holdout['out_of_fold_confidence']:.0%} mean confidence in the given labels seen out of fold: a "
                "model is surer of the samples it trained on than it has reason to be"
            )
    return TrainingRun(
        history, epochs=epochs, holdout=holdout, notes=notes, trajectory=trajectory, early_state=kept.get("state")
    )


def _holdout_epochs(model, inputs, labels, embed, parameters, settings, max_epochs, progress, cancel):
    """``(epochs, record)``: the epoch count with the lowest out-of-fold loss over ``HOLDOUT_FOLDS`` folds.

    Every sample (but those of classes too rare to hold out) is held out once, so a wrong label counts in the
    held-out loss whichever fold it falls in; the out-of-fold logits at the chosen epoch also fit the softmax
    temperature.
    """
    folds = _fold_of(labels.numpy(), HOLDOUT_FOLDS, settings.seed)
    held = np.flatnonzero(folds >= 0)
    if len(held) == 0 or len(np.unique(folds[held])) < 2:
        return max_epochs, None
    initial = copy.deepcopy(model.state_dict())
    out_of_fold = torch.zeros(max_epochs, len(labels), model.head.out_features, dtype=torch.float64)
    fold_ids = np.unique(folds[held])
    for number, fold in enumerate(fold_ids):
        held_index = torch.as_tensor(np.flatnonzero(folds == fold))
        train_index = torch.as_tensor(np.flatnonzero(folds != fold))
        epoch = iter(range(max_epochs))

        def score_held_out(_done: int, held_index=held_index, epoch=epoch) -> None:
            model.eval()
            with torch.no_grad():
                out_of_fold[next(epoch), held_index] = model.head(embed(inputs[held_index])).double()
            model.train()

        model.load_state_dict(initial)
        _fit(
            model,
            inputs[train_index],
            labels[train_index],
            embed,
            parameters(),
            max_epochs,
            settings,
            progress,
            cancel,
            start=0.5 * number / len(fold_ids),
            share=0.5 / len(fold_ids),
            after_epoch=score_held_out,
            stage=f"choosing the epochs, held-out fold {number + 1}/{len(fold_ids)}: ",
        )
    model.load_state_dict(initial)
    held_t = torch.as_tensor(held)
    logits = out_of_fold[:, held_t]  # (epochs, M, C)
    target = labels[held_t]
    losses = [float(F.cross_entropy(logits[e], target)) for e in range(max_epochs)]
    best = int(np.argmin(losses)) + 1  # the first of equal losses: fewer epochs memorise less
    temperature = fit_temperature(logits[best - 1], target)
    confidence = torch.softmax(logits[best - 1] / temperature, dim=1).gather(1, target.view(-1, 1)).mean()
    record = {
        "samples": len(held),
        "folds": len(fold_ids),
        "max_epochs": max_epochs,
        "losses": [round(v, 5) for v in losses],
        "out_of_fold_confidence": round(float(confidence), 4),
    }
    return best, record


def _fold_of(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) fold number of each sample, stratified by class; -1 for classes too rare to hold out."""
    rng = np.random.default_rng(seed)
    fold = np.full(len(y), -1, dtype=np.int64)
    start = 0
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if len(members) <= KEEP_WHOLE_CLASS_SIZE:
            continue
        fold[rng.permutation(members)] = (start + np.arange(len(members))) % folds
        start += len(members)  # the next class continues the rotation, so folds stay balanced
    return fold


TEMPERATURES = np.exp(np.linspace(0.0, np.log(20.0), 61))
"""Softmax temperatures tried by :func:`fit_temperature`: 1 (unchanged) to 20, evenly in log scale."""


def matching_temperature(logits: torch.Tensor, labels: torch.Tensor, confidence: float) -> float:
    """The smallest T ≥ 1 (from ``TEMPERATURES``) at which the mean of ``softmax(logits / T)`` at ``labels`` is
    at most ``confidence``: in-sample confidence brought down to what out-of-sample predictions support.

    logits : (N, C) of the samples the model trained on; labels : (N,).
    """
    scaled = logits.double().unsqueeze(0) / torch.as_tensor(TEMPERATURES).view(-1, 1, 1)  # (T, N, C)
    index = labels.view(1, -1, 1).expand(len(TEMPERATURES), -1, 1)
    mean = torch.softmax(scaled, dim=2).gather(2, index).mean(dim=(1, 2)).numpy()
    fits = np.flatnonzero(mean <= confidence + 1e-9)
    return float(TEMPERATURES[fits[0]] if len(fits) else TEMPERATURES[-1])


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T ≥ 1 (from ``TEMPERATURES``) that minimises the cross-entropy of ``logits / T``.

    logits : (M, C) of samples the model did not train on; labels : (M,). Never below 1: a held-out part of a
    few samples can make a model look less sure than it should be, never surer.
    """
    scaled = logits.double().unsqueeze(0) / torch.as_tensor(TEMPERATURES).view(-1, 1, 1)  # (T, M, C)
    nll = -torch.log_softmax(scaled, dim=2).gather(2, labels.view(1, -1, 1).expand(len(TEMPERATURES), -1, 1))
    return float(TEMPERATURES[int(nll.mean(dim=(1, 2)).argmin())])


def _fit(
    model,
    inputs,
    labels,
    embed,
    parameters,
    epochs,
    settings,
    progress,
    cancel,
    *,
    start: float = 0.0,
    share: float | None = None,
    after_epoch=None,
    stage: str = "",
    trajectory: Trajectory | None = None,
):
    """The training loop: the per-epoch history; progress runs from ``start`` over ``share`` of the bar, its
    messages ``"<stage>epoch e/E"``. Each batch's logits go into ``trajectory`` (no extra pass);
    ``after_epoch(epochs_done)`` is called after each epoch."""
    share = 1.0 - start if share is None else share
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        total_loss, correct = 0.0, 0
        for first in range(0, len(order), settings.batch_size):
            check_cancel(cancel)
            index = order[first : first + settings.batch_size]
            features = embed(_rows(inputs, index))
            logits = model.head(features)
            loss = training_loss(logits, labels[index], settings.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if trajectory is not None:
                trajectory.record(epoch, index.numpy(), logits, labels[index])
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == labels[index]).sum())
            done = start + share * (epoch + (first + len(index)) / len(order)) / epochs
            report(progress, "train", done, f"{stage}epoch {epoch + 1}/{epochs}")
            if (first // settings.batch_size) % RELEASE_EVERY_BATCHES == 0:
                release_pages(inputs)  # a memory-mapped x: the rows read so far leave this process's RSS
        release_pages(inputs)
        history.append({"epoch": epoch + 1, "loss": total_loss / len(labels), "accuracy": correct / len(labels)})
        if after_epoch is not None:
            after_epoch(epoch + 1)
    return history


def _as_tensor(inputs: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(inputs, torch.Tensor):
        return inputs
    if isinstance(inputs, ImageFiles) or not inputs.flags.writeable:
        return torch.from_numpy(np.array(inputs))
    return torch.from_numpy(np.asarray(inputs))


def _rows(inputs: np.ndarray | torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` of ``inputs`` as a tensor; from an array (a memory map, say) only those rows are read."""
    if isinstance(inputs, torch.Tensor):
        return inputs[index]
    return torch.from_numpy(np.ascontiguousarray(inputs[index.numpy()]))  # ImageFiles: those files decoded


def batch_tensor(x: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of ``x`` (an array, a read-only memory map or :class:`~ogaudit.data.imagefiles.ImageFiles`) as a
    writable tensor."""
    part = x[start:stop]
    if isinstance(part, ImageFiles):
        return torch.from_numpy(np.asarray(part))
    return torch.from_numpy(np.array(part) if not part.flags.writeable else np.ascontiguousarray(part))


@torch.no_grad()
def batched_features(
    model: AuditModel,
    x: np.ndarray,
    *,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    stage: str = "features",
) -> np.ndarray:
    """Penultimate features ``h`` of every sample, (N, d) float32, in eval mode.

    ``x`` is read batch by batch: an array or memory map by slices, :class:`~ogaudit.data.imagefiles.ImageFiles` decoded by
    ``DataLoader`` worker processes while the model runs.
    """
    model.eval()
    batch_size = batch_size or getattr(model, "feature_batch", 256)
    if isinstance(x, ImageFiles):
        batches = (torch.from_numpy(batch) for batch in x.batches(batch_size))
    else:
        batches = (batch_tensor(x, start, start + batch_size) for start in range(0, len(x), batch_size))
    chunks, done = [], 0
    check_cancel(cancel)
    for batch in batches:
        chunks.append(model.features(batch).float().numpy())
        done += len(batch)
        report(progress, stage, done / len(x), "forward pass")
        check_cancel(cancel)
    release_pages(x)
    return np.concatenate(chunks)


def model_recipe(settings: TrainSettings) -> dict:
    """The training settings that key a trained model in the cache and are saved beside it (``entry.json``): those
    of ``settings``, less ``loss`` when it is the default cross-entropy, so that a model cached before the loss was a
    setting keeps both its key and its saved settings, and is reused rather than discarded as "saved for other
    settings"."""
    recipe = asdict(settings)
    if recipe["loss"] == "cross-entropy":
        del recipe["loss"]
    return recipe


def model_cache_key(dataset: Dataset, model_kind: str, settings: TrainSettings) -> str:
    recipe = model_recipe(settings)
    return fingerprint("model-v4", dataset.fingerprint(), model_kind, recipe)  # v4: with its trajectory


def save_model(model: nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def save_trajectory(run: TrainingRun, folder: Path) -> None:
    """Write ``run``'s trajectory (``trajectory.npz``) and early checkpoint (``early.pt``) into ``folder``."""
    if run.trajectory is not None:
        with atomic_path(folder / "trajectory.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **run.trajectory.arrays())
    if run.early_state is not None:
        with atomic_path(folder / "early.pt") as tmp:
            torch.save(run.early_state, tmp)


def load_trajectory(folder: Path, n: int, n_classes: int) -> Trajectory | None:
    """The trajectory :func:`save_trajectory` wrote, or None when there is none; ValueError when it does not fit."""
    path = folder / "trajectory.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as saved:
        return Trajectory.from_arrays({name: saved[name] for name in Trajectory.ARRAYS}, n, n_classes)


def load_margins(folder: Path, n: int) -> np.ndarray | None:
    """Only the (E, N) float32 ``margins`` of the trajectory :func:`save_trajectory` wrote (one member of the file
    read, not the (N, C) sums), or None when there is none; ValueError when they do not fit ``n`` samples."""
    path = folder / "trajectory.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as saved:
        margins = saved["margins"]
    if margins.ndim != 2 or margins.shape[1] != n:
        raise ValueError(f"trajectory margins have shape {margins.shape}, not (epochs, {n})")
    return np.asarray(margins, dtype=np.float32)


def load_model_state(model: nn.Module, path: Path) -> None:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
