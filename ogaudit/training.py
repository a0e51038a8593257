"""Seeded in-process training, batched inference, and the on-disk model cache."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ogaudit.data import Dataset
from ogaudit.errors import SettingsError
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


@dataclass
class TrainingRun:
    """What training left besides the weights.

    history : per epoch ``{"epoch", "loss", "accuracy"}``.
    trajectory : (2, epochs, N) float32, the two factors of each sample's last-layer gradient L2 norm at the
        step that visited it, per epoch: ``‖p − e_y‖`` (the logit gradient) and ``‖[h, 1]‖`` — recorded for
        free from the training forward passes.
    """

    history: list[dict]
    trajectory: np.ndarray


def train_model(
    model: AuditModel,
    dataset: Dataset,
    settings: TrainSettings,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> TrainingRun:
    """Train ``model`` in place on the given labels (AdamW, seeded shuffles)."""
    torch.manual_seed(settings.seed)
    epochs = settings.resolved_epochs(len(dataset))
    labels = torch.as_tensor(dataset.y)
    if model.trainable == "head":
        inputs = torch.as_tensor(batched_features(model, dataset.x, progress=progress, cancel=cancel))
        embed, parameters = nn.Identity(), model.head.parameters()
    else:
        inputs, embed, parameters = torch.as_tensor(dataset.x), model.features, model.parameters()
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    trajectory = np.zeros((2, epochs, len(labels)), dtype=np.float32)
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), settings.batch_size):
            check_cancel(cancel)
            index = order[start : start + settings.batch_size]
            features = embed(inputs[index])
            logits = model.head(features)
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            trajectory[:, epoch, index.numpy()] = _gradient_factors(features.detach(), logits.detach(), labels[index])
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == labels[index]).sum())
            done = (epoch + (start + len(index)) / len(order)) / epochs
            report(progress, "train", done, f"epoch {epoch + 1}/{epochs}")
        history.append({"epoch": epoch + 1, "loss": total_loss / len(labels), "accuracy": correct / len(labels)})
    model.eval()
    return TrainingRun(history, trajectory)


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
