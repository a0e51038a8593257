"""Where the per-sample stages run: in this process (``local``) or on a Ray cluster (``ray``).

The per-sample stages are the forward pass that gives every sample's penultimate features and logits (the
factors of the closed-form last-layer gradient, :class:`~ogaudit.gradients.HeadEvidence`) and the projected
gradients of chosen layers (:func:`~ogaudit.gradients.layers.project_layer_gradients`). A
:class:`ForwardEngine` computes them; training, detection and the map run in the calling process, where the
results land. Every engine gives the same results on the same data (up to float rounding) and fills the same
cache entries, so a run on one engine is a cache hit for the other.

>>> from ogaudit import audit
>>> audit("fashion-mnist", engine="ray")  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ogaudit.cache.store import SampleStore
from ogaudit.data.dataset import Dataset
from ogaudit.errors import SettingsError
from ogaudit.models.base import AuditModel
from ogaudit.progress import ProgressCallback, report

ENGINE_NAMES = ("local", "ray")

__all__ = ["ENGINE_NAMES", "ForwardEngine", "LocalEngine", "resolve_engine"]


@runtime_checkable
class ForwardEngine(Protocol):
    """Computes the per-sample stages of an audit for N samples of C classes.

    name : ``"local"`` or ``"ray"``, saved in the run record with :meth:`describe`.
    """

    name: str

    def head_outputs(
        self,
        model: AuditModel,
        dataset: Dataset,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, d) float32, logits (N, C) float32)`` of every sample, model in eval mode.

        ``progress("gradients", fraction, message)`` as samples are done; raises
        :class:`~ogaudit.errors.Cancelled` soon after ``cancel`` is set.
        """
        ...

    def layer_gradients(
        self,
        model: AuditModel,
        dataset: Dataset,
        settings,
        *,
        store: SampleStore,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Fill the missing chunks of ``store`` (a :func:`~ogaudit.gradients.layers.layer_store` of this model,
        the dataset's labels and ``settings``, a ``LayerGradientSettings``) with the (N, D) float32 projected
        gradients; chunks already done (by either engine) are kept. On cancel the chunks landed so far stay done."""
        ...

    def describe(self) -> dict:
        """JSON-able facts for the run record: the engine's name and, for a cluster, its size."""
        ...

    def close(self) -> None:
        """Release what the engine started (a Ray instance it started itself); it can be used again after."""
        ...


class LocalEngine:
    """Both stages in this process, in batches (:func:`~ogaudit.models.training.batched_features` and
    :func:`~ogaudit.gradients.layers.project_layer_gradients`)."""

    name = "local"

    def head_outputs(self, model, dataset, *, progress=None, cancel=None):
        from ogaudit.models.training import batched_features

        features = batched_features(model, dataset.x, progress=progress, cancel=cancel, stage="gradients")
        with torch.no_grad():
            logits = model.head(torch.as_tensor(features)).numpy()
        return features, logits

    def layer_gradients(self, model, dataset, settings, *, store, progress=None, cancel=None):
        from ogaudit.gradients.layers import project_layer_gradients
        from ogaudit.models.training import batch_tensor

        project_layer_gradients(
            model,
            lambda start, stop: batch_tensor(dataset.x, start, stop),  # read chunk by chunk (memory maps too)
            torch.as_tensor(dataset.y),
            settings,
            store=store,
            progress=lambda _stage, fraction, message: report(progress, "gradients", fraction, message),
            cancel=cancel,
        )

    def describe(self) -> dict:
        return {"name": self.name}

    def close(self) -> None:
        return None


def resolve_engine(engine: str | ForwardEngine | None, *, ray_address: str | None = None) -> ForwardEngine:
    """The engine named ``engine`` (``"local"``, the default, or ``"ray"``), or ``engine`` itself.

    ``ray_address`` is passed to :class:`~ogaudit.engines.ray_engine.RayEngine` (``"auto"``, ``"ray://host:10001"``, or
    None to use ``$RAY_ADDRESS`` or start a small Ray instance on this machine). Raises
    :class:`~ogaudit.errors.SettingsError` for another name, or an address given with the local engine.
    """
    if engine is None or engine == "local":
        if ray_address is not None:
            raise SettingsError(
                f"ray_address {ray_address!r} was given but the engine is 'local'; add --engine ray (engine='ray')."
            )
        return LocalEngine()
    if engine == "ray":
        from ogaudit.engines.ray_engine import RayEngine

        return RayEngine(address=ray_address)
    if isinstance(engine, str) or not isinstance(engine, ForwardEngine):
        raise SettingsError(f"engine must be one of {', '.join(ENGINE_NAMES)} or a ForwardEngine; got {engine!r}.")
    return engine
