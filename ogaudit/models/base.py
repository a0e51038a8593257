"""The audited model's shape: ``head(body(preprocess(x)))`` with ``head`` one linear layer.

:class:`AuditModel` is what every later stage reads: the split into penultimate features ``h = body(preprocess(x))``
and a linear ``head`` is what makes the closed-form last-layer gradient ``(softmax(z) - onehot(y)) ⊗ [h, 1]``
possible from one forward pass. Every model kind (:mod:`ogaudit.models.nets`, :mod:`ogaudit.models.lora`,
checkpoints) is built into one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Preprocess(nn.Module):
    """Raw batch → network input. The constants are buffers, so they travel with the state dict.

        Images (B, H, W, C) of any dtype are scaled to [0, 1] per channel from ``low``/``high`` (0/255 for uint8;
        the data's own range for other arrays, e.g. floats already normalised by a training pipeline, so nothing is
        rounded or clipped), made NCHW, matched to ``channels``, resized to ``size``, then standardised with
        ``mean``/``std``. Vectors (B, F) are standardised with ``mean``/``std``; with ``image=False`` a batch of any
    shape is read as flat vectors (B, H·W·C).
    """

    def __init__(
        self,
        mean,
        std,
        *,
        image: bool,
        size: int | None = None,
        channels: int | None = None,
        low=0.0,
        high=255.0,
    ):
        super().__init__()
        self.image, self.size, self.channels = image, size, channels
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, dtype=np.float32)))
        low = np.asarray(low, dtype=np.float64)
        span = np.asarray(high, dtype=np.float64) - low
        self.register_buffer("low", torch.as_tensor(low.astype(np.float32)))
        self.register_buffer("span", torch.as_tensor(np.where(span > 0, span, 1.0).astype(np.float32)))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.image:  # vectors, or images read as flat vectors by a vector model (model="mlp" on images)
            return (batch.reshape(batch.shape[0], -1).float() - self.mean) / self.std
        x = batch.permute(0, 3, 1, 2).float()
        x = (x - self.low.view(1, -1, 1, 1)) / self.span.view(1, -1, 1, 1)
        if self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif self.channels == 1 and x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        if self.size is not None and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)


DEFAULT_FEATURE_BATCH = 256
BACKBONE_FEATURE_BATCH = 64
"""EfficientNet-Lite0 at 224 px: batches of 256 peaked at 3.8 GB even for 300 photos (activations, not data);
64 (the bare loop's batch in ``benchmarks/bench_scale.py --part photos``) peaked at 1.7 GB at the same
throughput."""


class AuditModel(nn.Module):
    """``head(body(preprocess(x)))`` with ``head`` a single linear layer.

    ``trainable`` is ``"all"`` or ``"head"`` (frozen pretrained body: the head is trained on cached features).
    ``feature_batch``: samples per batch of a features-only forward pass (no gradients): a backbone at 224 px
    holds ~40 MB of activations per sample, so it takes smaller batches than a small CNN.
    ``gradient_layers``: the layers whose projected gradients an audit scores when none are asked for; empty
    (the default) for the last layer in closed form. The fine-tuned text model names its adapters and head.
    """

    gradient_layers: tuple[str, ...] = ()

    def __init__(self, preprocess: Preprocess, body: nn.Module, head: nn.Linear, *, kind: str, trainable: str):
        super().__init__()
        self.preprocess, self.body, self.head = preprocess, body, head
        self.kind, self.trainable = kind, trainable
        self.feature_batch = BACKBONE_FEATURE_BATCH if kind == "efficientnet" else DEFAULT_FEATURE_BATCH

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``h``, shape (B, d)."""
        return self.body(self.preprocess(batch))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(batch))
