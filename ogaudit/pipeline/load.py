"""The load stage: the data an audit reads, as its settings say: loaded, subset, planted noise, texts encoded."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

from ogaudit.data.dataset import Dataset, check_class_count, stratified_subset
from ogaudit.data.load import load_dataset
from ogaudit.progress import ProgressCallback
from ogaudit.settings import AuditSettings


def prepare_dataset(
    data: str | os.PathLike | Dataset,
    settings: AuditSettings,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Dataset:
    """The data an audit with ``settings`` reads: ``data`` loaded, its ``limit`` subset taken, its noise planted,
    and text encoded for the model (:func:`encode_texts`).

    ``data`` is what :func:`~ogaudit.data.load.load_dataset` reads (a built-in name or a path) or a loaded
    :class:`Dataset`; the ``limit`` subset is the same for both, so a loaded ``.npz`` and the path to it agree.

    Deterministic in ``settings.seed``, so the exact samples and labels of a run can be rebuilt from its record.
    ``cache_dir``, ``progress`` (stage ``"embed"``) and ``cancel`` reach the text encoder.
    """
    from ogaudit.data.noise import inject_label_noise

    if isinstance(data, Dataset):  # loaded by the caller (arrays, a DataFrame ...): the same subset as a path gets
        dataset = data if settings.limit is None else stratified_subset(data, settings.limit, seed=settings.seed)
    else:
        dataset = load_dataset(
            data,
            limit=settings.limit,
            seed=settings.seed,
            fold_label_case=settings.fold_labels,
            text_options=settings.text_options,
            path_column=settings.path_column,
        )
    if dataset.kind == "instructions":  # prompt/response pairs: the causal LM tokenizes them itself
        return dataset
    check_class_count(dataset)  # a table may declare any number of classes; the model grows with them
    if dataset.is_text and dataset.x.shape[1:] == (0,) and settings.predictions is None:  # predictions: no model
        dataset = encode_texts(dataset, settings, cache_dir=cache_dir, progress=progress, cancel=cancel)
    if settings.noise_rate > 0:
        dataset = inject_label_noise(dataset, settings.noise_rate, kind=settings.noise_kind, seed=settings.seed)
    return dataset


def encode_texts(
    dataset: Dataset,
    settings: AuditSettings,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Dataset:
    """A text dataset with ``x`` filled for the model that reads it.

    ``settings.model == "lora"`` (the encoder is fine-tuned): (N, T) int32 token ids
    (:func:`~ogaudit.models.lora.tokenize_texts`). Otherwise (N, 384) float32 sentence embeddings of the frozen
    encoder (:func:`~ogaudit.models.encoders.embed_texts`), cached by the encoder and the texts under ``cache_dir``.
    The texts are read as :func:`~ogaudit.data.text.model_texts` says (tweets as TweetEval reads them).
    """
    from ogaudit.data.text import model_texts
    from ogaudit.models.hub import HF_PREFIX, hf_task, is_hub_spec

    if is_hub_spec(settings.model):  # the user's Hugging Face text classifier reads its own tokens
        from ogaudit.errors import ModelError
        from ogaudit.models.hub import tokenize_texts

        folder = settings.model[len(HF_PREFIX) :]
        if hf_task(folder) != "text":
            raise ModelError(f"{folder!r} is an image classifier but the data are texts.")
        x = tokenize_texts(folder, model_texts(dataset))
        return replace(dataset, x=x, notes=[*dataset.notes, f"texts tokenized by {folder}'s tokenizer"])
    if settings.model == "lora":
        from ogaudit.models.lora import MAX_TOKENS, tokenize_texts

        x = tokenize_texts(model_texts(dataset))
        note = f"texts tokenized for fine-tuning ({x.shape[1]} tokens at most; cut at {MAX_TOKENS})"
        return replace(dataset, x=x, notes=[*dataset.notes, note])
    from ogaudit.cache.artifacts import ArtifactCache
    from ogaudit.models.encoders import DEFAULT_ENCODER, embed_texts

    x = embed_texts(model_texts(dataset), cache=ArtifactCache(cache_dir), progress=progress, cancel=cancel)
    return replace(dataset, x=x, notes=[*dataset.notes, f"texts embedded with {DEFAULT_ENCODER} (frozen)"])
