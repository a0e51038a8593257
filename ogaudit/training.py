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

from ogaudit.data import Dataset, stratified_split
from ogaudit.errors import DataError, SettingsError
from ogaudit.models import AuditModel
from ogaudit.progress import ProgressCallback, check_cancel, report
from ogaudit.storage import atomic_path, fingerprint

SAMPLE_PASSES = 150_000
"""Auto epochs aim at this many sample visits: ~15 epochs on 10k samples, more on small data, fewer on big."""


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained. ``epochs=None`` picks :func:`auto_epochs` for the data size."""

    epochs: int | None = None
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self):
        if self.epochs is not None and not 1 <= self.epochs <= 500:
            raise SettingsError(f"epochs must be between 1 and 500; got {self.epochs}.")
        if not 1 <= self.batch_size <= 65536:
            raise SettingsError(f"batch_size must be between 1 and 65536; got {self.batch_size}.")
        if not 0 < self.learning_rate < 10:
            raise SettingsError(f"learning_rate must be in (0, 10); got {self.learning_rate}.")

    def resolved_epochs(self, n_samples: int) -> int:
        return self.epochs if self.epochs is not None else auto_epochs(n_samples)


def auto_epochs(n_samples: int) -> int:
    """Enough passes to fit the clean majority, few enough not to memorise the noisy labels."""
    return int(np.clip(round(SAMPLE_PASSES / max(n_samples, 1)), 5, 30))


HOLDOUT_MAX_SAMPLES = 1000
"""At most this many samples, the automatic recipe picks its epochs on a held-out part (see :func:`train_model`):
small data are memorised within the fixed rule's epochs, wrong labels included."""
HOLDOUT_FRACTION = 0.25


@dataclass
class TrainingRun:
    """What training left besides the weights.

    history : per epoch ``{"epoch", "loss", "accuracy"}`` of the final training.
    trajectory : (2, epochs, N) float32, the two factors of each sample's last-layer gradient L2 norm at the
        step that visited it, per epoch: ``‖p − e_y‖`` (the logit gradient) and ``‖[h, 1]‖`` — recorded for
        free from the training forward passes.
    epochs : the epochs of the final training (chosen on a held-out part for small data with automatic epochs).
    holdout : for held-out epoch choice, ``{"samples", "max_epochs", "losses", "temperature"}``: the held-out
        loss after each epoch of the probe training and the softmax temperature folded into the head; else None.
    notes : what the recipe decided and why, one sentence each (for the run record).
    """

    history: list[dict]
    trajectory: np.ndarray
    epochs: int = 0
    holdout: dict | None = None
    notes: list[str] = field(default_factory=list)


def train_model(
    model: AuditModel,
    dataset: Dataset,
    settings: TrainSettings,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> TrainingRun:
    """Train ``model`` in place on the given labels (AdamW, seeded shuffles).

    With automatic epochs (``settings.epochs is None``) and at most ``HOLDOUT_MAX_SAMPLES`` samples, the epochs
    are chosen on data: a probe copy of the model trains on a stratified 75% for up to :func:`auto_epochs`
    epochs, scoring the held-out 25% (given labels) after each; the epoch count with the lowest held-out loss is
    then trained on all samples from the same initial weights, and the head's logits are divided by the softmax
    temperature (≥ 1) that fits the probe's held-out predictions best (:func:`fit_temperature`). A fixed epoch rule
    memorises a 20-image set, wrong labels included, and then reports them right with near-certain confidence.
    """
    torch.manual_seed(settings.seed)
    labels = torch.as_tensor(dataset.y)
    if model.trainable == "head":
        inputs = torch.as_tensor(batched_features(model, dataset.x, progress=progress, cancel=cancel))
        embed, parameters = nn.Identity(), model.head.parameters
    else:
        inputs, embed, parameters = torch.as_tensor(dataset.x), model.features, model.parameters
    epochs, holdout, notes = settings.resolved_epochs(len(dataset)), None, []
    if settings.epochs is None and len(dataset) <= HOLDOUT_MAX_SAMPLES:
        epochs, holdout = _holdout_epochs(model, inputs, labels, embed, parameters, settings, epochs, progress, cancel)
        if holdout is not None:
            notes.append(
                f"small data ({len(dataset)} samples): {epochs} epoch(s), the lowest loss on a held-out "
                f"{holdout['samples']} of up to {holdout['max_epochs']}, so that wrong labels are not memorised"
            )
    history, trajectory = _fit(
        model, inputs, labels, embed, parameters(), epochs, settings, progress, cancel, start=0.5 if holdout else 0.0
    )
    if holdout is not None and holdout["temperature"] > 1.0:
        with torch.no_grad():  # softmax(z / T): the confidence the held-out part supports, folded into the head
            model.head.weight.div_(holdout["temperature"])
            if model.head.bias is not None:
                model.head.bias.div_(holdout["temperature"])
        notes.append(
            f"confidences are tempered (softmax temperature {holdout['temperature']:.2f}, fitted on the held-out "
            "part): a small model is otherwise surer than its accuracy"
        )
    model.eval()
    return TrainingRun(history, trajectory, epochs=epochs, holdout=holdout, notes=notes)


def _holdout_epochs(model, inputs, labels, embed, parameters, settings, max_epochs, progress, cancel):
    """``(epochs, holdout record)``: the epoch count whose probe model has the lowest held-out loss."""
    n = len(labels)
    n_held = int(round(HOLDOUT_FRACTION * n))
    try:
        train_index, held_index = stratified_split(labels.numpy(), n - n_held, seed=settings.seed)
    except DataError:
        return max_epochs, None
    if len(held_index) == 0 or len(train_index) == 0:
        return max_epochs, None
    initial = copy.deepcopy(model.state_dict())
    train_index, held_index = torch.as_tensor(train_index), torch.as_tensor(held_index)
    losses: list[float] = []
    held_logits: list[torch.Tensor] = []

    def score_held_out() -> None:
        model.eval()
        with torch.no_grad():
            logits = model.head(embed(inputs[held_index]))
            losses.append(float(F.cross_entropy(logits, labels[held_index])))
            held_logits.append(logits)
        model.train()

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
        start=0.0,
        share=0.5,
        after_epoch=score_held_out,
    )
    model.load_state_dict(initial)
    best = int(np.argmin(losses)) + 1  # the first of equal losses: fewer epochs memorise less
    temperature = fit_temperature(held_logits[best - 1], labels[held_index])
    record = {
        "samples": len(held_index),
        "max_epochs": max_epochs,
        "losses": [round(v, 5) for v in losses],
        "temperature": round(temperature, 4),
    }
    return best, record


TEMPERATURES = np.exp(np.linspace(0.0, np.log(20.0), 61))
"""Softmax temperatures tried by :func:`fit_temperature`: 1 (unchanged) to 20, evenly in log scale."""


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
):
    """The training loop: ``(history, trajectory)``; progress runs from ``start`` over ``share`` of the bar."""
    share = 1.0 - start if share is None else share
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    trajectory = np.zeros((2, epochs, len(labels)), dtype=np.float32)
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        total_loss, correct = 0.0, 0
        for first in range(0, len(order), settings.batch_size):
            check_cancel(cancel)
            index = order[first : first + settings.batch_size]
            features = embed(inputs[index])
            logits = model.head(features)
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            trajectory[:, epoch, index.numpy()] = _gradient_factors(features.detach(), logits.detach(), labels[index])
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == labels[index]).sum())
            done = start + share * (epoch + (first + len(index)) / len(order)) / epochs
            report(progress, "train", done, f"epoch {epoch + 1}/{epochs}")
        history.append({"epoch": epoch + 1, "loss": total_loss / len(labels), "accuracy": correct / len(labels)})
        if after_epoch is not None:
            after_epoch()
    return history, trajectory


def _gradient_factors(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """(2, B): ``‖softmax(z) − onehot(y)‖₂`` and ``‖[h, 1]‖₂``, whose product is the last-layer gradient norm."""
    residual = torch.softmax(logits, dim=1) - F.one_hot(labels, logits.shape[1])
    feature_norm = torch.sqrt(features.pow(2).sum(dim=1) + 1.0)
    return torch.stack([residual.norm(dim=1), feature_norm]).numpy()


@torch.no_grad()
def batched_features(
    model: AuditModel,
    x: np.ndarray,
    *,
    batch_size: int = 256,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    stage: str = "features",
) -> np.ndarray:
    """Penultimate features ``h`` of every sample, (N, d) float32, in eval mode."""
    model.eval()
    chunks = []
    for start in range(0, len(x), batch_size):
        check_cancel(cancel)
        chunks.append(model.features(torch.as_tensor(x[start : start + batch_size])).float().numpy())
        report(progress, stage, min(start + batch_size, len(x)) / len(x), "forward pass")
    return np.concatenate(chunks)


def model_cache_key(dataset: Dataset, model_kind: str, settings: TrainSettings) -> str:
    return fingerprint("model-v3", dataset.fingerprint(), model_kind, asdict(settings))


def save_model(model: nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def load_model_state(model: nn.Module, path: Path) -> None:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
