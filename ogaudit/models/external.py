"""A classifier the user already trained, audited as it is: their ``nn.Module``, their preprocessing, no training.

:func:`wrap_model` turns any torch classifier into an :class:`~ogaudit.models.base.AuditModel` without changing it:
the model's own ``forward`` runs on every batch (their code, in their process), and a forward pre-hook on its
classification head (the last ``nn.Linear`` it calls, or the one named) reads the head's input, the penultimate
features ``h``. From ``h`` and the head's weights the closed-form last-layer gradient
``(softmax(z) − onehot(y)) ⊗ [h, 1]`` follows (:mod:`ogaudit.gradients.closed_form`); deeper layers go through the
projected engine (:mod:`ogaudit.gradients.layers`) with the same hooks as for ogaudit's own models.

Inputs reach the model as the user's pipeline would give them, never forced to 3 channels or ImageNet statistics:

* with ``transform`` (a per-sample callable, torchvision's ``Dataset(transform=...)`` convention): ``uint8``
  images are handed over as ``PIL.Image`` (mode ``L`` or ``RGB``, as torchvision's datasets yield them), float
  images as (C, H, W) float tensors, vectors as (F,) float tensors; its outputs are stacked into the batch;
* without: ``uint8`` images as ``ToTensor()`` makes them, (B, C, H, W) float in [0, 1] with the stored channels
  (grey stays one channel); float images (B, C, H, W) with their values as given; vectors (B, F) float32.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ogaudit.data.dataset import Dataset
from ogaudit.errors import ModelError
from ogaudit.models.base import DEFAULT_FEATURE_BATCH, AuditModel

USER_KIND = "user"
"""``AuditModel.kind`` prefix of a user's model (``"user:ResNet"``); ``trainable == "none"``: never trained here."""
PROBE_SAMPLES = 4
"""Samples run through the model before any work: the head is found and checked to be the model's last step."""


def model_output(output) -> torch.Tensor:
    """The logits in what a classifier's ``forward`` returns: a tensor, a Hugging Face ``ModelOutput`` (its
    ``logits``), a mapping with ``"logits"``, or the first element of a tuple or list."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ModelError(
        f"The model returned a {type(output).__name__}, not logits: ogaudit reads a tensor (B, C), a Hugging Face "
        "output's .logits, a dict's 'logits' or a tuple's first element. Wrap the model so forward returns logits."
    )


class ModelInput(nn.Module):
    """A raw dataset batch (as :class:`~ogaudit.data.dataset.Dataset` stores it: images (B, H, W, C), vectors
    (B, F)) → the user's model input, on the model's device (module docstring: the two conventions).

    No parameters or buffers: the user's preprocessing is theirs, not part of a state dict.
    """

    def __init__(self, transform: Callable | None, *, image: bool, device: torch.device | None = None):
        super().__init__()
        self.transform, self.image, self.device = transform, image, device

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.transform is None:
            x = batch.permute(0, 3, 1, 2) if self.image else batch.reshape(len(batch), -1)
            x = x.float() / 255.0 if batch.dtype == torch.uint8 and self.image else x.float()
        else:
            samples = [self.transform(_sample(row, self.image)) for row in batch]
            bad = next((s for s in samples if not isinstance(s, torch.Tensor)), None)
            if bad is not None:
                raise ModelError(
                    f"transform returned a {type(bad).__name__}, not a tensor; end it with "
                    "torchvision.transforms.ToTensor() (or torch.as_tensor)."
                )
            x = torch.stack(samples)
        return x if self.device is None else x.to(self.device)


def _sample(row: torch.Tensor, image: bool):
    """One stored sample as a per-sample transform receives it (module docstring)."""
    if image and row.dtype == torch.uint8:
        from PIL import Image

        pixels = row.numpy()
        return Image.fromarray(
            pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, "L" if pixels.shape[2] == 1 else "RGB"
        )
    if image:
        return row.permute(2, 0, 1).float()
    return row.reshape(-1).float()


class UserModel(AuditModel):
    """A user's classifier as an :class:`AuditModel`: ``body`` is their whole module, run as written;
    :meth:`features` reads the input of ``head`` (a module inside it) with a forward pre-hook.

    ``head`` here is the user's own layer (on another device than the CPU: a CPU copy, for the closed form on the
    features, which come back to the CPU). ``trainable == "none"``: the audit never trains it.
    ``layer_prefix``: the user's layer ``conv1`` is ``body.conv1`` in this module (:meth:`qualify_layers`).
    """

    layer_prefix = "body."

    def __init__(self, net: nn.Module, head_name: str, preprocess: ModelInput, *, kind: str):
        head = net.get_submodule(head_name)
        device = head.weight.device
        cpu_head = head if device.type == "cpu" else _cpu_copy(head)
        super().__init__(preprocess, net, cpu_head, kind=kind, trainable="none")  # type: ignore[arg-type]
        self.head_name, self.net_head, self.device = head_name, head, device
        self.feature_batch = DEFAULT_FEATURE_BATCH

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def keep(_module, args):
            captured.append(args[0])

        handle = self.net_head.register_forward_pre_hook(keep)
        try:
            self.body(self.preprocess(batch))
        finally:
            handle.remove()
        if not captured:
            raise ModelError(
                f"The model's forward never called its layer {self.head_name!r}, so its penultimate features "
                "cannot be read; name the Linear layer that gives the logits (head=...)."
            )
        h = captured[-1]
        return h.reshape(len(h), -1).float().to("cpu")

    def qualify_layers(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The user's layer names (``conv1``) as this module's (``body.conv1``); names already qualified, or
        not in the user's model, stay as given (and are refused with the list of usable layers)."""
        own = dict(self.body.named_modules())
        return tuple(self.layer_prefix + n if n in own and not n.startswith(self.layer_prefix) else n for n in names)


def _cpu_copy(head: nn.Linear) -> nn.Linear:
    plain = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    plain.load_state_dict({k: v.detach().to("cpu") for k, v in head.state_dict().items()})
    return plain.eval()


def wrap_model(
    net: nn.Module,
    dataset: Dataset,
    *,
    transform: Callable | None = None,
    head: str | None = None,
    kind: str | None = None,
    preprocess: nn.Module | None = None,
) -> UserModel:
    """``net`` as an :class:`AuditModel` over ``dataset``, checked on a probe batch before any work.

    Parameters
    ----------
    net : a trained ``torch.nn.Module`` classifier whose ``forward(x)`` returns (B, C) logits for a batch, C =
        ``dataset.n_classes`` (or a Hugging Face output with ``.logits``, a tuple whose first item they are, or
        their softmax / log-softmax). Put in eval mode by the audit's passes; its weights are never changed.
    dataset : the data it is audited on.
    transform : per-sample preprocessing (module docstring); None: the data as ``ToTensor()`` gives them.
    head : the module name (as in ``net.named_modules()``) of the ``nn.Linear`` that gives the logits; default the
        last ``nn.Linear`` the forward pass calls.
    kind : the name kept in the run record; default ``"user:<class name>"``.
    preprocess : instead of ``transform``, a batch module (raw batch → model input); the file loaders
        (:mod:`ogaudit.models.hub`) give one.

    Raises
    ------
    TypeError
        ``net`` is not an ``nn.Module`` or ``transform`` not callable.
    ModelError
        text data (give vectors, or a Hugging Face folder), a ``head`` that is no ``nn.Linear`` of ``net``, a head
        whose outputs are not one per class, a model that fails on the data (the error and the input shape it got),
        or whose output is not ``head``'s output (nor its softmax): then the head is not the last step and its
        gradients would not be the loss's.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a trained classifier); got {type(net).__module__}.{type(net).__name__}. "
            "For a file, use ogaudit.models.hub.load_model or --model torchvision:NAME / timm:NAME / hf:FOLDER."
        )
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be a callable applied to each sample; got {type(transform).__name__}.")
    if dataset.is_text and preprocess is None:
        raise ModelError(
            "An in-memory model on text data needs its own tokenizer, which ogaudit cannot guess: save it as a "
            "Hugging Face folder and use model='hf:FOLDER', or give the texts' vectors (embeddings) as the data."
        )
    if dataset.is_image and dataset.x.ndim != 4:
        raise ModelError(f"image data of shape {dataset.x.shape} are not (N, H, W, C).")
    device = _device(net)
    if preprocess is None:
        preprocess = ModelInput(transform, image=dataset.is_image, device=device)
    probe = torch.as_tensor(np.array(dataset.x[:PROBE_SAMPLES]))
    was_training = net.training
    net.eval()
    try:
        head_name, logits, h = _probe(net, preprocess, probe, head)
    finally:
        net.train(was_training)
    module = net.get_submodule(head_name)
    if module.out_features != dataset.n_classes:
        raise ModelError(
            f"The model's head {head_name!r} has {module.out_features} outputs but the data have {dataset.n_classes} "
            f"classes {list(dataset.class_names[:10])}. Give a model trained on these classes (in this order), or "
            "name the Linear layer that gives them (head=...)."
        )
    with torch.no_grad():
        z = module(h)
    if not _same_logits(logits, z):
        raise ModelError(
            f"The model's output is not the output of its layer {head_name!r} (nor its softmax): something runs "
            "after it, so its gradients are not the loss's. Name the Linear layer that gives the logits (head=...), "
            "or wrap the model so that forward ends with it."
        )
    return UserModel(net, head_name, preprocess, kind=kind or f"{USER_KIND}:{type(net).__name__}")


def _device(net: nn.Module) -> torch.device | None:
    tensor = next(iter(net.parameters()), None)
    if tensor is None:
        tensor = next(iter(net.buffers()), None)
    return None if tensor is None or tensor.device.type == "cpu" else tensor.device


def _probe(net: nn.Module, preprocess: nn.Module, probe: torch.Tensor, head: str | None):
    """``(head name, logits (B, C), head input (B, d))`` of one probe batch; the head is ``head`` or the last
    ``nn.Linear`` called."""
    linears = {id(m): name for name, m in net.named_modules() if isinstance(m, nn.Linear)}
    if head is not None:
        found = dict(net.named_modules()).get(head)
        if not isinstance(found, nn.Linear):
            raise ModelError(
                f"head={head!r} is {'not a module of the model' if found is None else f'a {type(found).__name__}'}; "
                f"it must name an nn.Linear. The model's Linear layers: {sorted(linears.values())[:20] or 'none'}."
            )
    calls: list[tuple[str, torch.Tensor]] = []
    handles = [
        module.register_forward_pre_hook(lambda m, args, name=name: calls.append((name, args[0])))
        for name, module in net.named_modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        with torch.no_grad():
            inputs = preprocess(probe)
            try:
                output = net(inputs)
            except Exception as error:  # the user's code: any error is theirs, shown with the input it got
                shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
                raise ModelError(
                    f"The model fails on this data, given as {shape} {getattr(inputs, 'dtype', '')} "
                    f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}). Give "
                    "transform=... producing what it was trained on (channels, size, normalisation)."
                ) from error
    finally:
        for handle in handles:
            handle.remove()
    logits = model_output(output)
    if not calls:
        raise ModelError("The model calls no nn.Linear layer, so it has no linear head whose gradients ogaudit audits.")
    name = head if head is not None else calls[-1][0]
    inputs_of = [h for n, h in calls if n == name]
    if not inputs_of:
        raise ModelError(
            f"The model's forward never called its layer {name!r}; name the Linear layer that gives the logits."
        )
    h = inputs_of[-1]
    return name, logits.detach().float().cpu(), h.detach().reshape(len(h), -1).float()


def _same_logits(output: torch.Tensor, z: torch.Tensor) -> bool:
    """Whether ``output`` is ``z`` (the head's output), its softmax or its log-softmax."""
    z = z.detach().float().cpu()
    if output.shape != z.shape:
        return False
    return any(
        torch.allclose(output, candidate, rtol=1e-4, atol=1e-4)
        for candidate in (z, torch.softmax(z, dim=1), torch.log_softmax(z, dim=1))
    )
