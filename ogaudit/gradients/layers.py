"""Randomly projected per-sample gradients of chosen ``nn.Linear`` / ``nn.Conv2d`` layers, in batched passes.

For a layer with weight ``W`` (m, n₀) and bias ``b`` (m,), write its input in homogeneous coordinates
``ã = [a, 1]`` (n = n₀ + 1 with a bias, n₀ without) and its output gradient ``δ = ∂L_i/∂out``. The per-sample
gradient of ``[W | b]`` is then the (m, n) matrix

* Linear: ``G_i = δ_i ã_iᵀ``, summed over extra input positions ``t`` for inputs shaped (N, T, F);
* Conv2d: ``G_i = Δ_i Ã_iᵀ = Σ_p δ_{i,p} ã_{i,p}ᵀ`` over output positions ``p``, with ``ã_{i,p}`` the unfolded
  input patch (channel-major, as ``weight.reshape(m, -1)``).

It is projected with a Kronecker-factored random matrix without ever being formed::

    (P_out ⊗ P_in) vec(G_i) = vec(P_out G_i P_inᵀ) = vec((P_out Δ_i)(P_in Ã_i)ᵀ)

``P_in Ã_i`` is taken in the forward hook (for a convolution, as one convolution of the input with ``P_in``
reshaped into ``k_in`` filters, so patches are never unfolded); ``P_out Δ_i`` after one batched backward pass of
``Σ_i CE(z_i, y_i)``, whose output gradients are per-sample because the model runs in eval mode and samples do
not interact. One ``bmm`` per layer and chunk gives every projected gradient: no Python loop over samples.

Projection matrices have i.i.d. entries (Gaussian or Rademacher) scaled by ``1/sqrt(k)``, so
``E[PᵀP] = I`` and inner products between gradients are preserved in expectation. They are seeded by
``(seed, layer name, side)``. The requested ``dim`` is shared out across layers (smallest layer first, leftovers
passed on); a layer whose full gradient fits in its share is kept exactly (identity). The dimension produced,
``sum(k_out · k_in)``, may be a little below ``dim``: :func:`plan_layer_projection` and :func:`projected_dim`
tell the exact value and layout.

Results can be written into a resumable :class:`~ogaudit.cache.store.SampleStore` (:func:`layer_store`: one
chunk per batched pass, and a source fingerprint of the settings, inputs, labels and model in its layout); an
interrupted run resumes and skips the chunks already done, by either engine, and a store filled under other
settings or fingerprints is emptied, never mixed.
:func:`reference_layer_gradients` (a batch-size-1 ``autograd.grad`` loop, as in the paper's code) and
:func:`project_full_gradients` are the slow path the tests compare with.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ogaudit.cache.store import SampleStore, StoredRows
from ogaudit.errors import DataError, ModelError, SettingsError
from ogaudit.progress import ProgressCallback, check_cancel, report
from ogaudit.settings import check_projection_dim
from ogaudit.storage import fingerprint

STAGE = "layer_gradients"
STORE_SOURCE = "ogaudit-layer-gradients-v2"
"""Tags the source fingerprint of a layer-gradient store (:func:`layer_store`)."""
GRADIENT_FIELD = "gradients"
"""The field of a layer-gradient store: one (D,) float32 row per sample."""
PROJECTIONS = ("gaussian", "rademacher")

Inputs = torch.Tensor | np.ndarray | Callable[[int, int], torch.Tensor] | Iterable[torch.Tensor]
"""All inputs (N, ...) at once; ``load(start, stop)`` returning rows ``start:stop``; or an iterable of batches
(tensors, or tuples whose first item is the input) that covers the N samples in order, the same way every run."""


@dataclass
class ProjectedEvidence:
    """Projected gradients of chosen layers (:func:`project_layer_gradients`) with the model's probabilities.

    Implements :class:`~ogaudit.gradients.GradientEvidence` without counterfactuals: the projection was taken
    under the given labels, so asking for other ``labels`` raises :class:`~ogaudit.errors.SettingsError`.

    Attributes
    ----------
    matrix : (N, D) float32, one projected gradient per sample: an array, or (from a store) the read-only
        :class:`~ogaudit.cache.store.StoredRows` view of its memory-mapped shards.
    probs : (N, C) float32, the model's softmax.
    labels : (N,) int64, the given labels.
    """

    matrix: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    counterfactual: ClassVar[bool] = False

    @property
    def n_classes(self) -> int:
        return self.probs.shape[1]

    def gradients(self, labels: np.ndarray | None = None, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        _refuse_counterfactual(labels)
        return np.asarray(self.matrix[index], dtype=np.float32)

    def gradient_norms(self, order: int, labels: np.ndarray | None = None) -> np.ndarray:
        _refuse_counterfactual(labels)
        return np.concatenate(
            [
                np.linalg.norm(self.gradients(index=slice(s, s + EVIDENCE_CHUNK)), ord=order, axis=1)
                for s in range(0, len(self.labels), EVIDENCE_CHUNK)
            ]
        )

    def directions(self) -> np.ndarray:
        """(N, D) float32: the projected gradients scaled to unit length."""
        vectors = np.asarray(self.matrix, dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def map_vectors(self, dim: int, *, seed: int = 0, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(n, min(D, dim)) float32 for ``rows`` (default: all N): the projected gradients, projected once more
        (Gaussian, from ``seed`` alone) when D > dim."""
        width = self.matrix.shape[1]
        if width <= dim:
            return np.asarray(self.matrix[rows], dtype=np.float32)
        positions = np.arange(len(self.matrix))[rows]
        rng = np.random.default_rng(seed)
        projection = (rng.standard_normal((width, dim)) / np.sqrt(dim)).astype(np.float32)
        out = np.empty((len(positions), dim), dtype=np.float32)
        for start in range(0, len(positions), EVIDENCE_CHUNK):
            part = positions[start : start + EVIDENCE_CHUNK]
            out[start : start + len(part)] = self.gradients(index=part) @ projection
        return out


EVIDENCE_CHUNK = 8192


def _refuse_counterfactual(labels: np.ndarray | None) -> None:
    if labels is not None:
        raise SettingsError(
            "Counterfactual labels need last-layer evidence; projected gradients are fixed to the given labels."
        )


@dataclass(frozen=True)
class LayerGradientSettings:
    """Which layers, how many projected dimensions, and how the work is chunked.

    Attributes
    ----------
    layers : names of ``nn.Linear`` / ``nn.Conv2d`` modules as in ``model.named_modules()``, output order.
        A single string is taken as one layer.
    dim : requested total projected dimension D; the exact one is :func:`projected_dim` (≤ ``dim``).
    seed : seeds the projection matrices together with each layer name.
    batch_size : samples per chunk (one batched forward + backward); unused for iterable inputs.
    projection : ``"gaussian"`` or ``"rademacher"`` entries, both scaled by ``1/sqrt(k)``.
    """

    layers: tuple[str, ...]
    dim: int = 4096
    seed: int = 0
    batch_size: int = 256
    projection: str = "gaussian"

    def __post_init__(self):
        layers = (self.layers,) if isinstance(self.layers, str) else self.layers
        try:
            layers = tuple(layers)
        except TypeError:
            raise SettingsError(
                f"layers must be a tuple of layer names such as ('conv2', 'fc1'); got {self.layers!r}."
            ) from None
        if not layers or not all(isinstance(name, str) and name for name in layers):
            raise SettingsError(
                f"layers must be a non-empty tuple of non-empty layer names such as ('conv2', 'fc1'); got {layers!r}."
            )
        if len(set(layers)) != len(layers):
            raise SettingsError(f"layers must not repeat a name; got {layers!r}. Remove the duplicates.")
        object.__setattr__(self, "layers", layers)
        check_projection_dim(self.dim, at_least=len(layers))
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise SettingsError(f"seed must be a non-negative integer below 2**63; got {self.seed!r}.")
        if not _is_int(self.batch_size) or not 1 <= self.batch_size <= 65536:
            raise SettingsError(
                f"batch_size must be an integer between 1 and 65536; got {self.batch_size!r}. "
                "Lower it if the batched pass runs out of memory."
            )
        if self.projection not in PROJECTIONS:
            raise SettingsError(
                f"projection must be one of {', '.join(map(repr, PROJECTIONS))}; got {self.projection!r}."
            )


@dataclass(frozen=True)
class LayerProjection:
    """How one layer's gradient is projected and where it lands in the output row.

    The layer's gradient is the (``out_features``, ``in_features``) matrix ``[W | b]`` (a Conv2d weight
    flattened to (out_channels, in_channels·kh·kw)); it becomes ``k_out · k_in`` columns starting at ``offset``.
    When the layer is kept exactly (``identity``) the columns are the raw gradient in parameter order (weight
    flattened, then bias), as ``torch.cat([p.flatten() for p in layer.parameters()])``; otherwise they are
    ``vec(P_out G P_inᵀ)`` row-major, with ``P_out = I`` when ``k_out == out_features`` and likewise ``P_in``.
    """

    name: str
    kind: str
    out_features: int
    in_features: int
    has_bias: bool
    k_out: int
    k_in: int
    offset: int

    @property
    def dim(self) -> int:
        return self.k_out * self.k_in

    @property
    def full_dim(self) -> int:
        return self.out_features * self.in_features

    @property
    def identity(self) -> bool:
        return self.k_out == self.out_features and self.k_in == self.in_features


def plan_layer_projection(model: nn.Module, settings: LayerGradientSettings) -> list[LayerProjection]:
    """Share ``settings.dim`` across the chosen layers; one :class:`LayerProjection` per layer, settings order.

    Layers are visited smallest full gradient first, each taking ``remaining // layers_left``: a layer that fits
    is kept exactly and passes its unused share on. A layer that does not fit keeps its smaller side exact when
    that side is at most ``sqrt(share)`` (only the other side is projected), else both sides get about
    ``sqrt(share)`` rows. Raises :class:`ModelError` for unknown or unsupported layers.
    """
    shapes = [_layer_shape(name, module) for name, module in resolve_layers(model, settings.layers)]
    factors: dict[int, tuple[int, int]] = {}
    remaining = settings.dim
    order = sorted(range(len(shapes)), key=lambda i: (shapes[i][2] * shapes[i][3], i))
    for visited, i in enumerate(order):
        share = remaining // (len(order) - visited)
        factors[i] = _factor(shapes[i][2], shapes[i][3], share)
        remaining -= factors[i][0] * factors[i][1]
    plans, offset = [], 0
    for i, (name, kind, out_features, in_features, has_bias) in enumerate(shapes):
        k_out, k_in = factors[i]
        plans.append(LayerProjection(name, kind, out_features, in_features, has_bias, k_out, k_in, offset))
        offset += k_out * k_in
    return plans


def projected_dim(model: nn.Module, settings: LayerGradientSettings) -> int:
    """The exact output dimension D that :func:`project_layer_gradients` produces (≤ ``settings.dim``)."""
    return sum(plan.dim for plan in plan_layer_projection(model, settings))


def project_layer_gradients(
    model: nn.Module,
    inputs: Inputs,
    labels: np.ndarray | torch.Tensor,
    settings: LayerGradientSettings,
    *,
    store: SampleStore | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray | StoredRows:
    """Projected per-sample cross-entropy gradients of the chosen layers, (N, D) float32.

    Parameters
    ----------
    model : any module whose ``model(x)`` gives logits (n, C) for a batch x; samples must not interact
        (BatchNorm is fine: the model runs in eval mode during the pass; every module's prior train/eval mode
        is restored afterwards). Computation runs in the dtype and on the device of the first chosen layer.
    inputs : see :data:`Inputs`; floating inputs are cast to the layer dtype. With ``store``, an array, a tensor
        or a function ``load(start, stop)`` (rows are read by chunk, so only the missing chunks are read).
    labels : (N,) integer class of every sample, the targets of the loss.
    settings : :class:`LayerGradientSettings`; the exact D and column layout are :func:`plan_layer_projection`.
    store : a :func:`layer_store` of these model, labels and settings to fill: its missing chunks (one batched
        pass each) are computed and written, those done (by an earlier run, on either engine) are skipped.
    progress : ``progress(stage, fraction, message)`` after every chunk (and once at the start).
    cancel : checked before every chunk; when set, :class:`~ogaudit.errors.Cancelled` is raised and the
        chunks already written stay marked done.
    loss : ``loss(output, labels)`` → the batch's loss as a scalar, a *sum* of per-sample losses (samples must not
        interact); the model's output may then be anything ``loss`` reads (e.g. the per-sample NLL of a causal LM's
        response tokens, :mod:`ogaudit.models.causal_lm`). Default: ``cross_entropy(logits, labels, reduction="sum")``.

    Returns
    -------
    (N, D) float32 array; with ``store``, its read-only view :meth:`~ogaudit.cache.store.SampleStore.rows`
    (memory-mapped shards: the gradients are not read into memory).
    """
    labels = _as_labels(labels)
    n_samples = len(labels)
    layers = resolve_layers(model, settings.layers)
    plans = plan_layer_projection(model, settings)
    dim = sum(plan.dim for plan in plans)
    reference = layers[0][1].weight
    matrices = [_projection_matrices(plan, settings, reference.dtype, reference.device) for plan in plans]
    if store is not None:
        _check_store(store, n_samples, dim, settings)
        load = _row_reader(inputs, n_samples)
    else:
        chunks = _chunks(inputs, n_samples, settings.batch_size)

    def project(x, start: int, stop: int) -> np.ndarray:
        y = torch.as_tensor(labels[start:stop], device=reference.device)
        rows = _project_batch(model, _prepare_inputs(x, reference), y, layers, plans, matrices, loss)
        return rows.detach().cpu().numpy()

    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        if store is not None:
            store.fill(
                lambda start, stop: {GRADIENT_FIELD: project(load(start, stop), start, stop)},
                progress=progress,
                cancel=cancel,
                stage=STAGE,
            )
            return store.rows(GRADIENT_FIELD)
        result = np.zeros((n_samples, dim), dtype=np.float32)
        finished = 0
        report(progress, STAGE, 0.0, f"0/{n_samples:,} samples")
        for start, stop, chunk in chunks:
            check_cancel(cancel)
            result[start:stop] = project(chunk(), start, stop)
            finished += stop - start
            report(progress, STAGE, finished / max(n_samples, 1), f"{finished:,}/{n_samples:,} samples")
        return result
    finally:
        for module, training in modes.items():
            module.training = training


def layer_store_layout(
    model: nn.Module, labels: np.ndarray | torch.Tensor, settings: LayerGradientSettings, *, inputs_fingerprint: str
) -> dict:
    """The :class:`~ogaudit.cache.store.SampleStore` layout of the projected gradients, as its constructor's
    keyword arguments ``n_rows``, ``fields``, ``chunk_rows`` and ``source`` (see :func:`layer_store`)."""
    labels = _as_labels(labels)
    plans = plan_layer_projection(model, settings)
    reference = resolve_layers(model, settings.layers)[0][1].weight
    source = fingerprint(
        STORE_SOURCE,
        asdict(settings),
        [asdict(plan) for plan in plans],
        str(reference.dtype),
        inputs_fingerprint,
        fingerprint(labels),
        model_fingerprint(model),
    )
    dim = sum(plan.dim for plan in plans)
    return {
        "n_rows": len(labels),
        "fields": {GRADIENT_FIELD: ((dim,), "float32")},
        "chunk_rows": settings.batch_size,
        "source": source,
    }


def layer_store(
    folder: str | Path,
    model: nn.Module,
    labels: np.ndarray | torch.Tensor,
    settings: LayerGradientSettings,
    *,
    inputs_fingerprint: str,
) -> SampleStore:
    """The resumable store of projected gradients in ``folder``, for :func:`project_layer_gradients` and the
    engines (the Ray engine fills the same store, so an interrupted run resumes with either engine).

    One field ``"gradients"`` (D,) float32; one chunk per batched pass (``settings.batch_size`` rows, so a
    resumed or a Ray run takes the same batches as one local pass); and a ``source`` fingerprint of the settings,
    the projection plan, the layer dtype, ``inputs_fingerprint`` (a string that changes whenever the inputs do:
    the dataset fingerprint), the labels and the model's structure and weights. A store laid out otherwise, or
    filled under any other of those, is emptied and started over: rows are never mixed.
    """
    return SampleStore(folder, **layer_store_layout(model, labels, settings, inputs_fingerprint=inputs_fingerprint))


def _check_store(store: SampleStore, n_samples: int, dim: int, settings: LayerGradientSettings) -> None:
    expected = {"n_rows": n_samples, "chunk_rows": settings.batch_size, "fields": {GRADIENT_FIELD: ((dim,), "float32")}}
    found = {"n_rows": store.n_rows, "chunk_rows": store.chunk_rows, "fields": store.fields}
    if found != expected:
        raise SettingsError(
            f"The store {str(store.folder)!r} is laid out as {found}, not as these gradients need ({expected}); "
            "open it with layer_store() for the same model, labels and settings."
        )


def reference_layer_gradients(
    model: nn.Module,
    inputs: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    layers: tuple[str, ...],
    *,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """The paper's way: one ``autograd.grad`` call per sample (batch size 1), full gradients (N, P).

    ``loss`` as in :func:`project_layer_gradients` (default: cross-entropy of logits).

    Columns are each layer's weight (flattened) then bias, layers in the given order; dtype is the model's.
    Slow on purpose: tests compare the batched engine with it. Runs in eval mode and restores the prior modes.
    """
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    parameters = [
        p for _, module in resolve_layers(model, layers) for p in (module.weight, module.bias) if p is not None
    ]
    labels = _as_labels(labels)
    reference = parameters[0]
    modes = {module: module.training for module in model.modules()}
    flags = [p.requires_grad for p in parameters]
    model.eval()
    rows = []
    try:
        for p in parameters:
            p.requires_grad_(True)
        for i in range(len(labels)):
            x = _prepare_inputs(torch.as_tensor(inputs[i : i + 1]), reference)
            with torch.enable_grad():
                logits = model(x)
                target = torch.as_tensor(labels[i : i + 1], device=reference.device)
                value = F.cross_entropy(logits, target) if loss is None else loss(logits, target)
                grads = torch.autograd.grad(value, parameters)
            rows.append(torch.cat([g.reshape(-1) for g in grads]).detach().cpu().numpy())
    finally:
        for p, flag in zip(parameters, flags, strict=True):
            p.requires_grad_(flag)
        for module, training in modes.items():
            module.training = training
    return np.stack(rows) if rows else np.zeros((0, sum(p.numel() for p in parameters)))


def project_full_gradients(full: np.ndarray, model: nn.Module, settings: LayerGradientSettings) -> np.ndarray:
    """Project full gradients (N, P) from :func:`reference_layer_gradients` with the engine's matrices.

    Each layer's block is rebuilt as ``G = [W | b]`` (N, m, n) and mapped to ``vec(P_out G P_inᵀ)``, exact
    layers are copied as they are, so the result (N, D) float32 matches :func:`project_layer_gradients`.
    """
    plans = plan_layer_projection(model, settings)
    full = torch.as_tensor(np.asarray(full), dtype=torch.float64)
    expected = sum(plan.out_features * plan.in_features for plan in plans)
    if full.ndim != 2 or full.shape[1] != expected:
        raise DataError(
            f"full gradients must be (N, {expected}) for layers {settings.layers}; got {tuple(full.shape)}. "
            "Compute them with reference_layer_gradients on the same model and layers."
        )
    pieces, column = [], 0
    for plan in plans:
        n_weight = plan.out_features * (plan.in_features - plan.has_bias)
        block = full[:, column : column + plan.full_dim]
        column += plan.full_dim
        if plan.identity:
            pieces.append(block)
            continue
        gradient = block[:, :n_weight].reshape(len(full), plan.out_features, -1)
        if plan.has_bias:
            gradient = torch.cat([gradient, block[:, n_weight:, None]], dim=2)
        p_out, p_in = _projection_matrices(plan, settings, torch.float64, torch.device("cpu"))
        if p_out is not None:
            gradient = p_out @ gradient
        if p_in is not None:
            gradient = gradient @ p_in.T
        pieces.append(gradient.reshape(len(full), -1))
    return torch.cat(pieces, dim=1).numpy().astype(np.float32)


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's structure (``repr``) and every parameter and buffer value."""
    parts: list[object] = [type(model).__name__, repr(model)]
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        parts += [name, str(tensor.dtype), list(tensor.shape), tensor.reshape(-1).view(torch.uint8).numpy()]
    return fingerprint(*parts)


def _project_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    layers: list[tuple[str, nn.Module]],
    plans: list[LayerProjection],
    matrices: list[tuple[torch.Tensor | None, torch.Tensor | None]],
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Projected gradients (n, D) of one batch from one forward and one backward pass."""
    batch = len(y)
    calls: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in layers]

    def make_hook(index: int):
        plan, module, (_, p_in) = plans[index], layers[index][1], matrices[index]

        def hook(_module, args, output):
            inputs = args[0]
            if inputs.ndim < 2 or inputs.shape[0] != batch:
                raise ModelError(
                    f"Layer {plan.name!r} received input of shape {tuple(inputs.shape)}, not one whose first "
                    f"dimension is the batch size {batch}; per-sample gradients need the batch dimension first."
                )
            with torch.no_grad():
                projected = _project_input(plan, module, inputs.detach(), p_in)
            if not output.requires_grad:
                output = output.detach().requires_grad_()
            calls[index].append((projected, output))
            # Downstream code may modify the output in place (ReLU(inplace=True)); a copy keeps the captured
            # tensor at its own version, so the gradient asked for below is the one of the layer's output.
            return output.clone()

        return hook

    handles = [module.register_forward_hook(make_hook(i)) for i, (_, module) in enumerate(layers)]
    try:
        with torch.enable_grad():
            logits = model(x)
            if loss_of is not None:
                loss = loss_of(logits, y)
            elif not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ModelError(f"The model must return logits of shape ({batch}, C) for a batch; got {shape}.")
            elif int(y.max()) >= logits.shape[1]:
                raise DataError(f"labels must be below the number of classes {logits.shape[1]}; got {int(y.max())}.")
            else:
                loss = F.cross_entropy(logits, y, reduction="sum")
            missing = [plan.name for plan, call in zip(plans, calls, strict=True) if not call]
            if missing:
                raise ModelError(
                    f"Layers {missing} were not called through their forward() in model(x), so their gradients "
                    "cannot be captured; choose layers that the model calls as modules."
                )
            outputs = [output for call in calls for _, output in call]
            grads = iter(torch.autograd.grad(loss, outputs, allow_unused=True))
    finally:
        for handle in handles:
            handle.remove()
    pieces = []
    for plan, call, (p_out, _) in zip(plans, calls, matrices, strict=True):
        total = call[0][0].new_zeros(batch, plan.k_out, plan.k_in)
        for projected, _ in call:
            delta = next(grads)
            if delta is not None:
                total += _combine(plan, projected, delta, p_out)
        if plan.identity and plan.has_bias:
            n_weight = plan.in_features - 1
            pieces += [total[:, :, :n_weight].reshape(batch, -1), total[:, :, n_weight]]
        else:
            pieces.append(total.reshape(batch, -1))
    return torch.cat(pieces, dim=1)


def _project_input(
    plan: LayerProjection, module: nn.Module, inputs: torch.Tensor, p_in: torch.Tensor | None
) -> torch.Tensor:
    """``P_in ã`` for every sample and position: (n, T, k_in) for Linear, (n, k_in, L) for Conv2d."""
    n_weight = plan.in_features - plan.has_bias
    if plan.kind == "linear":
        a = inputs.reshape(inputs.shape[0], -1, n_weight)
        if p_in is None:
            return torch.cat([a, a.new_ones(a.shape[:2] + (1,))], dim=2) if plan.has_bias else a
        projected = a @ p_in[:, :n_weight].T
        return projected + p_in[:, n_weight] if plan.has_bias else projected
    inputs, padding = _explicit_padding(module, inputs)
    if p_in is None:
        a = F.unfold(inputs, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
        return torch.cat([a, a.new_ones(a.shape[0], 1, a.shape[2])], dim=1) if plan.has_bias else a
    filters = p_in[:, :n_weight].reshape(plan.k_in, module.in_channels, *module.kernel_size)
    bias = p_in[:, n_weight] if plan.has_bias else None
    projected = F.conv2d(inputs, filters, bias, module.stride, padding, module.dilation)
    return projected.flatten(2)


def _combine(
    plan: LayerProjection, projected: torch.Tensor, delta: torch.Tensor, p_out: torch.Tensor | None
) -> torch.Tensor:
    """``Σ_positions (P_out δ)(P_in ã)ᵀ`` per sample, (n, k_out, k_in)."""
    batch = delta.shape[0]
    if plan.kind == "linear":
        delta = delta.reshape(batch, -1, plan.out_features)
        if p_out is not None:
            delta = delta @ p_out.T
        if delta.shape[1] == 1:
            return delta.transpose(1, 2) * projected
        return torch.bmm(delta.transpose(1, 2), projected)
    delta = delta.flatten(2)
    if p_out is not None:
        delta = torch.matmul(p_out, delta)
    return torch.bmm(delta, projected.transpose(1, 2))


def _explicit_padding(module: nn.Conv2d, inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad as the convolution does, so that ``unfold``/``conv2d`` with the returned padding see its patches."""
    if module.padding_mode != "zeros":
        return F.pad(inputs, module._reversed_padding_repeated_twice, mode=module.padding_mode), (0, 0)
    if isinstance(module.padding, str):
        return F.pad(inputs, module._reversed_padding_repeated_twice), (0, 0)
    return inputs, module.padding


def _projection_matrices(
    plan: LayerProjection, settings: LayerGradientSettings, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(P_out (k_out, m), P_in (k_in, n))``; ``None`` for a side kept exact."""
    sides = (("out", plan.k_out, plan.out_features), ("in", plan.k_in, plan.in_features))
    matrices = []
    for side, rows, columns in sides:
        if rows == columns:
            matrices.append(None)
            continue
        key = f"ogaudit-layer-projection/{settings.seed}/{plan.name}/{side}".encode()
        generator = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:7], "little"))
        if settings.projection == "gaussian":
            matrix = torch.randn(rows, columns, generator=generator, dtype=torch.float64)
        else:
            matrix = torch.randint(0, 2, (rows, columns), generator=generator).to(torch.float64) * 2 - 1
        matrices.append((matrix / math.sqrt(rows)).to(device=device, dtype=dtype))
    return matrices[0], matrices[1]


def _factor(out_features: int, in_features: int, share: int) -> tuple[int, int]:
    if out_features * in_features <= share:
        return out_features, in_features
    root = math.isqrt(share)
    if out_features <= root:
        return out_features, share // out_features
    if in_features <= root:
        return share // in_features, in_features
    return root, min(in_features, share // root)


def resolve_layers(model: nn.Module, names: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for each of ``names`` in ``model``; the audit calls it on the built model before training.

    Raises :class:`~ogaudit.errors.ModelError` for a name not in the model, a layer that is not ``nn.Linear`` /
    ``nn.Conv2d``, or a grouped convolution; the message lists the model's usable layers.
    """
    if not isinstance(model, nn.Module):
        raise ModelError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    modules = dict(model.named_modules())
    supported = [name for name, module in modules.items() if isinstance(module, nn.Linear | nn.Conv2d)]
    choices = ", ".join(map(repr, supported)) or "none"
    resolved = []
    for name in names:
        if name not in modules:
            raise ModelError(
                f"Layer {name!r} is not in the model. Its Linear/Conv2d layers are: {choices}. "
                "Pass names from this list (--layers on the command line, layers=... in Python)."
            )
        module = modules[name]
        if not isinstance(module, nn.Linear | nn.Conv2d):
            raise ModelError(
                f"Layer {name!r} is a {type(module).__name__}; only nn.Linear and nn.Conv2d layers are supported. "
                f"Choose from: {choices}."
            )
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ModelError(
                f"Layer {name!r} is a grouped convolution (groups={module.groups}); only groups=1 is supported. "
                f"Choose another layer from: {choices}."
            )
        resolved.append((name, module))
    return resolved


def _layer_shape(name: str, module: nn.Module) -> tuple[str, str, int, int, bool]:
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear):
        return name, "linear", module.out_features, module.in_features + has_bias, has_bias
    fan_in = module.in_channels * math.prod(module.kernel_size)
    return name, "conv2d", module.out_channels, fan_in + has_bias, has_bias


def _chunks(inputs: Inputs, n_samples: int, batch_size: int) -> Iterator[tuple[int, int, Callable]]:
    """``(start, stop, load)`` per chunk; ``load()`` gives the inputs of rows ``start:stop``."""
    if isinstance(inputs, torch.Tensor | np.ndarray):
        if len(inputs) != n_samples:
            raise DataError(f"inputs has {len(inputs)} samples but labels has {n_samples}; pass one label per input.")
        return (
            (start, min(start + batch_size, n_samples), lambda s=start: inputs[s : s + batch_size])
            for start in range(0, n_samples, batch_size)
        )
    if callable(inputs):
        return (
            (start, stop, lambda s=start, e=stop: inputs(s, e))
            for start in range(0, n_samples, batch_size)
            for stop in [min(start + batch_size, n_samples)]
        )
    if isinstance(inputs, Iterable):
        return _iterable_chunks(inputs, n_samples)
    raise DataError(
        f"inputs must be a tensor or array (N, ...), a function load(start, stop), or an iterable of batches; "
        f"got {type(inputs).__name__}."
    )


def _row_reader(inputs: Inputs, n_samples: int) -> Callable[[int, int], object]:
    """``load(start, stop)`` for inputs readable by rows (an array, a tensor, a function); for a store."""
    if isinstance(inputs, torch.Tensor | np.ndarray):
        if len(inputs) != n_samples:
            raise DataError(f"inputs has {len(inputs)} samples but labels has {n_samples}; pass one label per input.")
        return lambda start, stop: inputs[start:stop]
    if callable(inputs):
        return inputs
    raise SettingsError(
        f"A store is filled by chunks, so its inputs must be readable by rows: an array or tensor (N, ...) or a "
        f"function load(start, stop); got {type(inputs).__name__}."
    )


def _iterable_chunks(batches: Iterable, n_samples: int) -> Iterator[tuple[int, int, Callable]]:
    start = 0
    for batch in batches:
        batch = batch[0] if isinstance(batch, tuple | list) else batch
        stop = start + len(batch)
        if stop > n_samples:
            raise DataError(f"The input batches hold more than the {n_samples} samples that labels has.")
        yield start, stop, lambda b=batch: b
        start = stop
    if start != n_samples:
        raise DataError(f"The input batches hold {start} samples but labels has {n_samples}.")


def _prepare_inputs(x, reference: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x, device=reference.device)
    return x.to(reference.dtype) if x.is_floating_point() else x


def _as_labels(labels) -> np.ndarray:
    labels = _to_numpy(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"labels must be a 1-D integer array (N,); got dtype {labels.dtype} and shape {labels.shape}.")
    if len(labels) and labels.min() < 0:
        raise DataError(f"labels must be non-negative class indices; got {labels.min()}.")
    return labels.astype(np.int64)


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
