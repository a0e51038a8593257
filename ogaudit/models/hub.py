"""A user's trained classifier from files, with no code run from the files: the architecture comes from a library
by name (torchvision, ``timm``) or from a Hugging Face ``config.json`` (a ``transformers`` class, never
``trust_remote_code``), the weights from ``.safetensors`` or a ``torch.save`` state dict read with
``weights_only=True``.

Spellings (``AuditSettings(model=..., arch=...)``; the command line's ``--model``/``--weights`` map onto them):

* ``arch="resnet18"`` or ``"torchvision:resnet18"``, ``model="W.safetensors"``: ``torchvision.models.get_model``;
* ``arch="timm:resnet10t"``, ``model="W.safetensors"``: ``timm.create_model(name, pretrained=False)``, input
  channels read from the weights (``pip install timm``);
* ``model="hf:FOLDER"``: a ``save_pretrained`` folder of an image classifier (``...ForImageClassification``) or a
  text classifier (``...ForSequenceClassification``): ``config.json`` + ``model.safetensors`` (sharded too); a
  pickle ``pytorch_model.bin`` is refused, as is a config that asks for its own code (``auto_map``).

How the data reach each model (nothing else is assumed): torchvision and timm models get ``uint8`` images scaled to
[0, 1] with the channels their first convolution takes (grey images are repeated to RGB only for a 3-channel
model, RGB averaged for a 1-channel one) and standardised with the architecture's statistics only when it takes 3
channels (timm: its ``pretrained_cfg`` mean/std; torchvision: ImageNet's); float images are fed as given. A Hugging
Face image model gets what its ``preprocessor_config.json`` says (rescale, resize, mean/std); a text model the
token ids of its own tokenizer (``tokenizer.json`` / vocabulary files in the folder). For any other preprocessing,
load the model in Python and pass it with ``transform=`` to :func:`ogaudit.audit`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ogaudit.data.dataset import Dataset
from ogaudit.errors import ModelError
from ogaudit.models.base import AuditModel, Preprocess
from ogaudit.models.external import wrap_model
from ogaudit.models.nets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _read_state_dict,
    _split_head,
    _state_dict_mismatch,
    checkpoint_format,
    image_input,
    input_range,
)

HF_PREFIX = "hf:"
TIMM_PREFIX = "timm:"
TORCHVISION_PREFIX = "torchvision:"
MAX_CONFIG_BYTES = 4 << 20
"""``config.json``, ``preprocessor_config.json``: read only below this size (a config is a few kB)."""
MAX_TOKENS = 256
"""Tokens per text fed to a Hugging Face text classifier (longer texts are cut)."""


def is_hub_spec(model: str | None) -> bool:
    """Whether ``AuditSettings.model`` names a Hugging Face folder (``hf:FOLDER``)."""
    return isinstance(model, str) and model.startswith(HF_PREFIX)


def load_file_model(model: str, dataset: Dataset, *, arch: str | None = None) -> AuditModel:
    """The classifier of ``AuditSettings(model=..., arch=...)`` (module docstring) for ``dataset``.

    Raises :class:`ModelError` naming the fix: an unknown architecture (with close names), weights that do not fit
    it (which tensors), a pickle or TorchScript file, a folder that is not a classification model, a model whose
    classes are not the data's.
    """
    if is_hub_spec(model):
        if arch is not None:
            raise ModelError(f"--arch {arch!r} is for state-dict weights; a Hugging Face folder has its config.json.")
        return load_hf_folder(model[len(HF_PREFIX) :], dataset)
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"Weights file {str(path)!r} does not exist.")
    if arch is None:
        raise ModelError(
            f"{str(path)!r} holds weights only: name the architecture, --model torchvision:resnet18 or "
            "--model timm:NAME with --weights FILE (arch='resnet18' or 'timm:NAME' in Python)."
        )
    kind = checkpoint_format(path)
    if kind not in ("safetensors", "torch-zip"):
        raise ModelError(
            f"{str(path)!r} is not a .safetensors file nor a torch.save state dict"
            f"{' (it is TorchScript: drop --arch)' if kind == 'torchscript' else ''}. Save the weights with "
            "safetensors.torch.save_file(model.state_dict(), path) or torch.save(model.state_dict(), path)."
        )
    state = _read_state_dict(path, safetensors=kind == "safetensors")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict of tensors.")
    if arch.startswith(TIMM_PREFIX):
        name = arch[len(TIMM_PREFIX) :]
        net = _timm_model(name, state, dataset.n_classes)
        mean, std = _timm_statistics(net)
        kind_name = f"checkpoint:{TIMM_PREFIX}{name}"
    else:
        name = arch[len(TORCHVISION_PREFIX) :] if arch.startswith(TORCHVISION_PREFIX) else arch
        net = _torchvision_model(name, state, dataset.n_classes)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        kind_name = f"checkpoint:{name}"
    _load(net, state, arch)
    return _split_head(net.eval(), dataset, kind=kind_name, preprocess=image_input(net, dataset, mean, std))


def _load(net: nn.Module, state: dict, arch: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(
            f"The weights do not fit {arch} with {_head_outputs(net)} classes (the data's class count): "
            f"{_state_dict_mismatch(state, net.state_dict(), arch)}. Check the architecture name and that the "
            "model was trained on these classes."
        ) from error


def _head_outputs(net: nn.Module) -> int | str:
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else "?"


def _torchvision_model(name: str, state: dict, n_classes: int) -> nn.Module:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        close = [n for n in names if name.lower()[:4] in n] or names[:20]
        raise ModelError(
            f"{name!r} is not a torchvision classification model; e.g. {close[:12]}. For a timm model write "
            f"timm:{name}."
        )
    return torchvision.models.get_model(name, weights=None, num_classes=n_classes)


def _timm_model(name: str, state: dict, n_classes: int) -> nn.Module:
    try:
        import timm
    except ImportError as error:
        raise ModelError("timm architectures need `pip install timm` (or pip install 'ogaudit[models]').") from error
    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:6]}*")[:12]
        raise ModelError(f"{name!r} is not a timm model; close names: {close or timm.list_models()[:12]}.")
    first = next((v for v in state.values() if v.ndim == 4), None)
    in_chans = int(first.shape[1]) if first is not None else 3
    return timm.create_model(name, pretrained=False, num_classes=n_classes, in_chans=in_chans)


def _timm_statistics(net: nn.Module) -> tuple:
    cfg = getattr(net, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


# --- Hugging Face folders ---------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelError(f"{str(path)!r} is missing.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{str(path)!r} is {path.stat().st_size:,} bytes; a config is a few kB. Refused.")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{str(path)!r} is not valid JSON ({error}).") from None
    if not isinstance(value, dict):
        raise ModelError(f"{str(path)!r} must hold a JSON object.")
    return value


MAX_DECLARED_REPEATS = 512
"""A ``config.json`` count of layers, blocks, stages or experts above this is refused before any module is built:
building the declared modules costs memory and time even without weights (~40 kB and ~4 ms a ViT layer on
the meta device), and the largest published models have about 130 layers."""
_REPEAT_WORDS = ("layer", "depth", "block", "expert")


def _declared_repeats(value: object, key: str = "") -> int:
    """The largest count of repeated modules that a config (``config.to_dict()``, sub-configs included) declares
    under a key naming layers, depths, blocks or experts (a list of per-stage depths is summed)."""
    if isinstance(value, dict):
        return max((_declared_repeats(v, str(k)) for k, v in value.items()), default=0)
    counts = any(word in key.lower() for word in _REPEAT_WORDS)
    if isinstance(value, bool) or not counts:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return sum(value)
    return 0


def check_declared_size(folder: str | Path, auto_class, config=None) -> int:
    """Refuse a Hugging Face folder whose ``config.json`` declares a model larger than the memory budget
    (:func:`~ogaudit.data.limits.memory_budget`), before ``from_pretrained`` allocates it; return the parameter count.

    ``from_pretrained`` builds the model the config declares and only then compares it with the weights, so a
    one-line edit of a config (``intermediate_size``, ``vocab_size``, ``num_hidden_layers``) beside small weights
    takes gigabytes first. The count comes from the declared model built on PyTorch's ``meta`` device (no memory for
    the tensors) with ``auto_class.from_config`` (never ``trust_remote_code``), at float32's 4 bytes a value, after
    the check that it declares at most :data:`MAX_DECLARED_REPEATS` layers. Raises :class:`ModelError` naming the
    count, the estimate and the budget.
    """
    import transformers

    from ogaudit.data.limits import MEMORY_BUDGET_ENV, format_bytes, memory_budget

    folder = Path(folder)
    _read_json(folder / "config.json")  # its size is checked before transformers reads it
    try:
        if config is None:
            config = transformers.AutoConfig.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False
            )
        repeats = _declared_repeats(config.to_dict())
        if repeats > MAX_DECLARED_REPEATS:
            raise ModelError(
                f"{str(folder)!r}: config.json declares {repeats:,} layers (or blocks, experts); ogaudit builds at "
                f"most {MAX_DECLARED_REPEATS}. Refused before any module was built."
            )
        with torch.device("meta"):
            declared = auto_class.from_config(config, trust_remote_code=False)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever transformers makes of a config, never a traceback
        raise ModelError(
            f"Cannot read the model {str(folder)!r} declares ({type(error).__name__}: {str(error)[:300]})."
        ) from error
    count = sum(p.numel() for p in declared.parameters()) + sum(b.numel() for b in declared.buffers())
    budget = memory_budget()
    if count * 4 > budget.bytes:
        raise ModelError(
            f"{str(folder)!r}: config.json declares {count:,} parameters ({format_bytes(count * 4)} in float32), over "
            f"the memory budget of {format_bytes(budget.bytes)} ({budget.source}). Refused before loading; raise "
            f"{MEMORY_BUDGET_ENV} if the machine has the memory for this model."
        )
    return count


def hf_task(folder: str | Path) -> str:
    """``"image"`` or ``"text"``: what the Hugging Face classifier in ``folder`` reads, from its ``config.json``,
    after the checks that nothing in the folder would run code (no ``auto_map``) and its weights are safetensors.
    Raises :class:`ModelError` otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"Hugging Face model folder {str(folder)!r} does not exist (hf:FOLDER names a local folder).")
    config = _read_json(folder / "config.json")
    if "auto_map" in config:
        raise ModelError(
            f"{str(folder)!r}: config.json names its own code (auto_map), which ogaudit never runs "
            "(no trust_remote_code). Use a model whose class is part of transformers."
        )
    weights = [p.name for p in folder.iterdir() if p.name.endswith(".safetensors")]
    if not weights:
        pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        raise ModelError(
            f"{str(folder)!r} has no .safetensors weights{f' (only {pickles}: pickles, refused)' if pickles else ''}. "
            "Save it with model.save_pretrained(folder) (safetensors is the default)."
        )
    architectures = config.get("architectures") or []
    if any(a.endswith("ForImageClassification") for a in architectures):
        return "image"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "text"
    raise ModelError(
        f"{str(folder)!r} is a {architectures or config.get('model_type', '?')} model; ogaudit audits image and text "
        "classifiers (…ForImageClassification, …ForSequenceClassification)."
    )


def load_hf_folder(folder: str | Path, dataset: Dataset) -> AuditModel:
    """The Hugging Face classifier saved in ``folder`` (module docstring) for ``dataset``; text data must come
    tokenized by :func:`tokenize_texts` of the same folder (the load stage does it)."""
    folder = Path(folder)
    task = hf_task(folder)
    import transformers

    options = {"trust_remote_code": False, "local_files_only": True}
    auto = (
        transformers.AutoModelForImageClassification
        if task == "image"
        else transformers.AutoModelForSequenceClassification
    )
    if task == "image" and not dataset.is_image:
        raise ModelError(f"{str(folder)!r} is an image classifier but the data are not images.")
    if task == "text" and not dataset.is_text:
        raise ModelError(f"{str(folder)!r} is a text classifier but the data are not texts.")
    check_declared_size(folder, auto)
    try:
        net = auto.from_pretrained(str(folder), use_safetensors=True, **options)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ModelError(f"Cannot load {str(folder)!r} ({type(error).__name__}: {str(error)[:300]}).") from error
    _check_hf_classes(net.config, dataset, folder)
    kind = f"hf:{type(net).__name__}"
    if task == "image":
        return wrap_model(net.eval(), dataset, preprocess=_hf_image_input(folder, net.config, dataset), kind=kind)
    pad = _pad_id(folder)
    return wrap_model(_TokenClassifier(net.eval(), pad), dataset, preprocess=_TokenIds(), kind=kind)


def _check_hf_classes(config, dataset: Dataset, folder: Path) -> None:
    names = [str(config.id2label[i]) for i in sorted(config.id2label)] if config.id2label else []
    if len(names) != dataset.n_classes:
        raise ModelError(
            f"{str(folder)!r} classifies into {len(names)} classes {names[:10]} but the data have "
            f"{dataset.n_classes} {list(dataset.class_names[:10])}."
        )
    generic = all(n == f"LABEL_{i}" for i, n in enumerate(names))
    data_names = [str(c) for c in dataset.class_names]
    if not generic and names != data_names:
        how = "in another order" if sorted(names) == sorted(data_names) else "other classes"
        raise ModelError(
            f"{str(folder)!r} names its classes {names[:10]} (config.json id2label) but the data's are "
            f"{data_names[:10]}: {how}. Give the data with the model's class order (class_names=...)."
        )


def _hf_image_input(folder: Path, config, dataset: Dataset) -> Preprocess:
    path = folder / "preprocessor_config.json"
    spec = _read_json(path) if path.is_file() else {}
    channels = int(getattr(config, "num_channels", 3))
    size = spec.get("size", getattr(config, "image_size", None))
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    mean = spec.get("image_mean", [0.5] * channels) if spec.get("do_normalize", True) else [0.0] * channels
    std = spec.get("image_std", [0.5] * channels) if spec.get("do_normalize", True) else [1.0] * channels
    low, high = input_range(dataset)
    return Preprocess(
        np.broadcast_to(np.asarray(mean, dtype=np.float32), (channels,)),
        np.broadcast_to(np.asarray(std, dtype=np.float32), (channels,)),
        image=True,
        size=None if size is None else int(size),
        channels=channels,
        low=low,
        high=high,
    )


class _TokenIds(nn.Module):
    """Token ids (B, T) as stored by :func:`tokenize_texts`, as a long tensor."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.long()


class _TokenClassifier(nn.Module):
    """A Hugging Face sequence classifier called with its attention mask (padding is ``pad``)."""

    def __init__(self, net: nn.Module, pad: int):
        super().__init__()
        self.net, self.pad = net, pad

    def forward(self, ids: torch.Tensor):
        return self.net(input_ids=ids, attention_mask=(ids != self.pad).long())


def _tokenizer(folder: Path):
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"{str(folder)!r} has no tokenizer ogaudit can read ({str(error)[:200]}); save it beside the model with "
            "tokenizer.save_pretrained(folder)."
        ) from error


def _pad_id(folder: Path) -> int:
    pad = _tokenizer(folder).pad_token_id
    return 0 if pad is None else int(pad)


def tokenize_texts(folder: str | Path, texts) -> np.ndarray:
    """(N, T) int32 token ids of ``texts`` by the tokenizer of the Hugging Face folder, padded with its pad id,
    cut at :data:`MAX_TOKENS` (and the model's own limit)."""
    tokenizer = _tokenizer(Path(folder))
    limit = min(MAX_TOKENS, int(getattr(tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS))
    if tokenizer.pad_token is None:
        raise ModelError(f"The tokenizer in {str(folder)!r} has no padding token; set one and save it again.")
    encoded = tokenizer(
        [str(t) for t in texts], padding="longest", truncation=True, max_length=limit, return_tensors="np"
    )
    return encoded["input_ids"].astype(np.int32)
