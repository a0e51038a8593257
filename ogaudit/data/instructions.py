"""Instruction-tuning data: prompt/response pairs for fine-tuning a causal language model, and built-in tasks.

A file of pairs becomes a :class:`~ogaudit.data.dataset.Dataset` of kind ``"instructions"``: ``texts`` (N,) the pair
as a person reads it (the prompt, a separator line, the response), ``y`` the task/category of each pair (one class
``"all"`` without a category column), an empty ``x`` (N, 0) float32 (the loader runs no model: the causal LM
tokenizes the pairs in :mod:`ogaudit.models.causal_lm`), and ``text_origin`` an :class:`InstructionSource`
indexed by ``rows``, which holds the prompts and responses apart and each row's exact text, so an export writes
untouched rows back byte for byte.

Formats (picked by suffix; sizes checked before decoding with :mod:`ogaudit.data.limits`):

* JSON Lines (``.jsonl``, ``.ndjson``): one object per line, either a prompt field (:data:`PROMPT_FIELDS`, with an
  optional ``input`` appended as in Alpaca) and a response field (:data:`RESPONSE_FIELDS`), or chat ``messages``
  (``[{"role": ..., "content": ...}, ...]``: the last ``assistant`` message is the response, the messages before
  it the prompt);
* CSV (``.csv``) and Parquet (``.parquet``) with prompt and response columns.

An optional category column (:data:`CATEGORY_FIELDS`) groups the pairs by task; an optional id column
(``id``, ``sample_id``, ``uid``) names them (else the 0-based row).

Built-in tasks (:data:`INSTRUCTION_BUILTINS`): ``instruct-tasks``, generated in code, deterministically, in the
spirit of the DataInf benchmarks the paper uses (Kwon et al., ICLR 2024; Chhabra et al., ICML 2025, §5.3): six
sentence transformations and four arithmetic tasks (two with the reasoning written out), 10 categories of 90
training and 10 test prompts, with a planted share of wrong responses (:data:`PLANTED_SHARE`, 20%) whose truth is
kept in ``InstructionSource.planted`` so flags can be scored. ``instruct-tasks-test`` is the 100 clean test prompts.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ogaudit.data.csvtext import decode_text
from ogaudit.data.dataset import Dataset
from ogaudit.data.limits import check_budget
from ogaudit.errors import DataError

KIND = "instructions"
INSTRUCTION_BUILTINS = ("instruct-tasks", "instruct-tasks-test")
INSTRUCTION_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PROMPT_FIELDS = ("prompt", "instruction", "question", "query")
RESPONSE_FIELDS = ("response", "output", "completion", "answer")
CATEGORY_FIELDS = ("category", "task", "type")
ID_FIELDS = ("id", "sample_id", "uid")
SEPARATOR = "\n──── response ────\n"
"""Between the prompt and the response in ``Dataset.texts`` (what the review shows and searches)."""
DECODED_BYTES_PER_BYTE = 6
"""Memory a decoded byte of a table may take (Python strings, objects, lists): checked before reading."""
MAX_PAIRS = 200_000
"""More pairs than this are refused: a CPU fine-tunes and takes per-sample gradients of each one."""
NO_CATEGORY = "all"


@dataclass(frozen=True)
class InstructionSource:
    """Prompt/response pairs as they were read, indexed by ``Dataset.rows``.

    path : the absolute path read, or the built-in's name.
    format : ``"jsonl"``, ``"csv"``, ``"parquet"`` or ``"builtin"``.
    prompts, responses : (M,) object arrays of str, the model's prompt (chat messages joined as ``role: content``
        lines, only when there are several) and the response whose tokens the loss reads.
    categories : (M,) object, each row's category (``"all"`` without a category column).
    records : (M,) object, each row's exact text with its line ending (JSONL, CSV), None for Parquet and built-ins.
    prefix : the exact text before the first record (a CSV header); empty for JSONL.
    encoding : how the text file was decoded (an export writes records back with it).
    fields : the field or column names used: ``{"prompt", "response", "category", "id", "messages"}`` (None when absent).
    planted : (M,) bool, built-in tasks only: the responses made wrong on purpose; None for user data.
    correct : (M,) object, built-in tasks only: the right response of every row.
    """

    path: str
    format: str
    prompts: np.ndarray
    responses: np.ndarray
    categories: np.ndarray
    records: np.ndarray | None = None
    prefix: str = ""
    encoding: str = "utf-8"
    fields: dict | None = None
    planted: np.ndarray | None = None
    correct: np.ndarray | None = None
    mask_mentions: ClassVar[bool] = False
    """Read by the text review like a text table's: pairs are shown as written (no @mention masking)."""
    model_text: ClassVar[None] = None

    @property
    def n_rows(self) -> int:
        return len(self.prompts)


def is_instruction_spec(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` is instruction data: a built-in of :data:`INSTRUCTION_BUILTINS`, or a JSONL file whose first
    object has chat ``messages`` or a prompt and a response field, or a CSV/Parquet file with such columns.

    Reads at most the first 64 KiB of a text file (a Parquet file: its schema only)."""
    text = str(spec)
    if text in INSTRUCTION_BUILTINS:
        return True
    path = Path(text).expanduser()
    kind = INSTRUCTION_SUFFIXES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return False
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            names = list(pq.read_schema(path).names)
        else:
            with open(path, "rb") as handle:
                head = handle.read(65536).decode("utf-8", errors="replace").lstrip("\ufeff")
            first = head.splitlines()[0] if head.strip() else ""
            if kind == "jsonl":
                value = json.loads(first) if first.strip() else None
                if not isinstance(value, dict):
                    return False
                names = list(value)
            else:
                names = next(csv.reader([first]), [])
    except (OSError, ValueError, ImportError):
        return False
    folded = {str(name).strip().lower() for name in names}
    if kind == "jsonl" and "messages" in folded:
        return True
    return bool(folded & set(PROMPT_FIELDS)) and bool(folded & set(RESPONSE_FIELDS))


def load_instructions(
    spec: str | os.PathLike,
    *,
    limit: int | None = None,
    seed: int = 0,
    planted_share: float | None = None,
) -> Dataset:
    """Prompt/response pairs as a :class:`~ogaudit.data.dataset.Dataset` of kind ``"instructions"`` (see the module).

    Parameters
    ----------
    spec : ``instruct-tasks`` (900 training pairs), ``instruct-tasks-test`` (100 clean test pairs), or a path.
    limit : keep a random subset of this many pairs, stratified by category.
    seed : seeds the subset, and the built-in's generated pairs and planted errors.
    planted_share : built-ins only: share of wrong training responses (default :data:`PLANTED_SHARE`).

    Raises
    ------
    DataError : an unreadable file, a missing prompt or response field, an empty response, too many pairs, or a
        file whose decoded text would not fit the memory budget; the message names the row and the fix.
    """
    text = str(spec)
    if text in INSTRUCTION_BUILTINS:
        share = PLANTED_SHARE if planted_share is None else planted_share
        source = generate_tasks("test" if text.endswith("-test") else "train", seed=seed, planted_share=share)
        ids = source.fields.pop("ids")  # type: ignore[union-attr]
        dataset = _as_dataset(source, np.asarray(ids, dtype=str), text)
    else:
        path = Path(text).expanduser().resolve()
        kind = INSTRUCTION_SUFFIXES.get(path.suffix.lower())
        if kind is None or not path.is_file():
            raise DataError(
                f"{text!r} is not an instruction file: give a .jsonl, .csv or .parquet file of prompt/response pairs, "
                f"or a built-in ({', '.join(INSTRUCTION_BUILTINS)})."
            )
        size = path.stat().st_size
        check_budget(size * DECODED_BYTES_PER_BYTE, what=repr(str(path)), detail=f"a {size:,}-byte table decoded")
        rows, records, prefix, encoding = _read_rows(path, kind)
        source, ids = _pairs(path, kind, rows, records, prefix, encoding)
        dataset = _as_dataset(source, ids, str(path))
    if limit is not None and limit < len(dataset):
        from ogaudit.data.dataset import stratified_subset

        dataset = stratified_subset(dataset, limit, seed=seed)
    return dataset


def responses_of(dataset: Dataset) -> np.ndarray:
    """(N,) object: each pair's response, in the dataset's order."""
    return _origin(dataset).responses[dataset.rows]


def prompts_of(dataset: Dataset) -> np.ndarray:
    """(N,) object: each pair's prompt, in the dataset's order."""
    return _origin(dataset).prompts[dataset.rows]


def planted_of(dataset: Dataset) -> np.ndarray | None:
    """(N,) bool: the responses planted wrong (built-in tasks), or None for user data."""
    origin = _origin(dataset)
    return None if origin.planted is None else origin.planted[dataset.rows]


def with_responses(dataset: Dataset, responses: dict[int, str]) -> Dataset:
    """A copy of ``dataset`` whose pairs at the given positions have new responses (an edit in review)."""
    from dataclasses import replace

    origin = _origin(dataset)
    new = origin.responses.copy()
    texts = dataset.texts.copy()
    for position, response in responses.items():
        new[dataset.rows[position]] = str(response)
        texts[position] = display_text(origin.prompts[dataset.rows[position]], str(response))
    return replace(dataset, texts=texts, text_origin=replace(origin, responses=new))


def display_text(prompt: str, response: str) -> str:
    """How a pair reads on a card: the prompt, :data:`SEPARATOR`, the response."""
    return f"{prompt}{SEPARATOR}{response}"


def is_instructions(dataset: Dataset | None) -> bool:
    return dataset is not None and dataset.kind == KIND and isinstance(dataset.text_origin, InstructionSource)


def _origin(dataset: Dataset) -> InstructionSource:
    if not is_instructions(dataset):
        raise DataError(f"{dataset.describe()} is not instruction data (prompt/response pairs).")
    return dataset.text_origin  # type: ignore[return-value]


def _as_dataset(source: InstructionSource, ids: np.ndarray, spec: str) -> Dataset:
    names = sorted(set(source.categories.tolist()))
    index = {name: i for i, name in enumerate(names)}
    n = source.n_rows
    texts = np.asarray([display_text(p, r) for p, r in zip(source.prompts, source.responses, strict=True)], object)
    if len(set(ids.tolist())) != n:
        raise DataError(f"{spec!r}: the ids are not unique. Give each pair its own id, or drop the id column.")
    notes = []
    if source.planted is not None:
        notes.append(f"{int(source.planted.sum())} of {n} responses planted wrong on purpose (built-in tasks)")
    return Dataset(
        x=np.zeros((n, 0), dtype=np.float32),
        y=np.asarray([index[c] for c in source.categories], dtype=np.int64),
        sample_ids=ids,
        class_names=names,
        kind=KIND,
        source=spec,
        notes=notes,
        rows=np.arange(n, dtype=np.int64),
        texts=texts,
        text_origin=source,
    )


def _read_rows(path: Path, kind: str) -> tuple[list[dict], list[str] | None, str, str]:
    """Rows as dicts, each row's exact text (JSONL, CSV), the text before the first row, and the encoding."""
    what = repr(str(path))
    if kind == "parquet":
        import pyarrow.parquet as pq

        from ogaudit.data.text import check_parquet_decoded

        try:
            handle = pq.ParquetFile(path)
            names, rows = list(handle.schema_arrow.names), handle.metadata.num_rows
        except Exception as error:  # noqa: BLE001 - any Arrow failure: a damaged or foreign file
            raise DataError(f"{what} is not a readable Parquet file ({type(error).__name__}).") from None
        # its size on disk says nothing of what it decodes to (a dictionary-encoded text repeated): measured first
        check_parquet_decoded(path, names, rows, what)
        try:
            table = pq.read_table(path)
        except Exception as error:  # noqa: BLE001 - any Arrow failure: a damaged or foreign file
            raise DataError(f"{what} is not a readable Parquet file ({type(error).__name__}).") from None
        return table.to_pylist(), None, "", "utf-8"
    raw = path.read_bytes()
    decoded, encoding = decode_text(raw, what=what, error=DataError)
    if encoding == "utf-8-sig" and not raw.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8"  # written back without a byte-order mark it never had
    lines = list(io.StringIO(decoded, newline=""))
    if kind == "jsonl":
        rows, records = [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                raise DataError(f"{what} line {number} is not a JSON object: {line[:80]!r}.") from None
            if not isinstance(value, dict):
                raise DataError(f"{what} line {number} is a JSON {type(value).__name__}, not an object {{...}}.")
            rows.append(value)
            records.append(line)
        if any(not line.strip() for line in lines):
            raise DataError(f"{what} has blank lines; write one JSON object per line (blank lines cannot be exported).")
        return rows, records, "", encoding
    csv.field_size_limit(max(csv.field_size_limit(), len(decoded) + 1))
    records = list(_csv_records(decoded))
    if not records:
        raise DataError(f"{what} is empty. It needs a header with prompt and response columns.")
    header = next(csv.reader([records[0]]))
    rows = [dict(zip(header, next(csv.reader([record])), strict=False)) for record in records[1:]]
    return rows, records[1:], records[0], encoding


def _csv_records(decoded: str):
    """Each CSV record's exact text (a quoted cell may span lines), with its line ending."""
    buffer = ""
    for line in io.StringIO(decoded, newline=""):
        buffer += line
        if buffer.count('"') % 2 == 0:
            yield buffer
            buffer = ""
    if buffer:
        yield buffer


def _field(names: list[str], choices: tuple[str, ...]) -> str | None:
    folded = {str(name).strip().lower(): name for name in reversed(names)}
    return next((folded[c] for c in choices if c in folded), None)


def _pairs(path: Path, kind: str, rows: list[dict], records, prefix: str, encoding: str):
    what = repr(str(path))
    if not rows:
        raise DataError(f"{what} holds no pairs. Write one prompt/response pair per row.")
    if len(rows) > MAX_PAIRS:
        raise DataError(f"{what} holds {len(rows):,} pairs; at most {MAX_PAIRS:,} are audited. Audit a sample of them.")
    names = list(dict.fromkeys(name for row in rows for name in row))
    messages = _field(names, ("messages",)) if kind == "jsonl" else None
    prompt_field = _field(names, PROMPT_FIELDS)
    response_field = _field(names, RESPONSE_FIELDS)
    category_field = _field(names, CATEGORY_FIELDS)
    id_field = _field(names, ID_FIELDS)
    input_field = _field(names, ("input",))
    if messages is None and (prompt_field is None or response_field is None):
        raise DataError(
            f"{what} has fields {names[:12]}; it needs a prompt field ({', '.join(PROMPT_FIELDS)}) and a response "
            f"field ({', '.join(RESPONSE_FIELDS)}), or chat 'messages' (JSON Lines)."
        )
    prompts, responses, categories, ids = [], [], [], []
    for i, row in enumerate(rows):
        where = f"{what} row {i + 1}"
        if messages is not None and row.get(messages) is not None:
            prompt, response = _from_messages(row[messages], where)
        else:
            prompt, response = _cell(row.get(prompt_field), where), _cell(row.get(response_field), where)
            extra = _cell(row.get(input_field), where) if input_field else ""
            if extra.strip():
                prompt = f"{prompt}\n\n{extra}"
        if not prompt.strip() or not response.strip():
            raise DataError(
                f"{where} has an empty {'prompt' if not prompt.strip() else 'response'}. Fill it or drop it."
            )
        prompts.append(prompt)
        responses.append(response)
        category = _cell(row.get(category_field), where).strip() if category_field else ""
        categories.append(category or NO_CATEGORY)
        ids.append(_cell(row.get(id_field), where) if id_field else str(i))
    fields = {
        "prompt": prompt_field,
        "response": response_field,
        "category": category_field,
        "id": id_field,
        "messages": messages,
    }
    source = InstructionSource(
        path=str(path),
        format=kind,
        prompts=_objects(prompts),
        responses=_objects(responses),
        categories=_objects(categories),
        records=None if records is None else _objects(records),
        prefix=prefix,
        encoding=encoding,
        fields=fields,
    )
    return source, np.asarray(ids, dtype=str)


def _cell(value, where: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, dict | list):
        raise DataError(f"{where}: a field holds a JSON {type(value).__name__} where text was expected.")
    return value if isinstance(value, str) else str(value)


def _from_messages(messages, where: str) -> tuple[str, str]:
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise DataError(f'{where}: \'messages\' must be a list of {{"role", "content"}} objects.')
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None or last == 0:
        raise DataError(f"{where}: 'messages' needs a message before an 'assistant' message (the response).")
    before = messages[:last]
    if len(before) == 1:
        prompt = _cell(before[0].get("content"), where)
    else:
        prompt = "\n".join(f"{_cell(m.get('role'), where)}: {_cell(m.get('content'), where)}" for m in before)
    return prompt, _cell(messages[last].get("content"), where)


def _objects(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Built-in tasks, generated in code.

PLANTED_SHARE = 0.2
"""Share of the built-in training responses that are made wrong on purpose."""
TRAIN_PER_TASK = 90
TEST_PER_TASK = 10
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "quiet",
    "garden",
    "window",
    "yellow",
    "bridge",
    "summer",
    "candle",
    "forest",
    "silver",
    "market",
    "ocean",
    "pencil",
    "winter",
    "orange",
    "mountain",
    "basket",
    "thunder",
    "purple",
    "island",
    "rocket",
    "meadow",
    "copper",
    "lantern",
    "valley",
    "marble",
    "planet",
    "harbor",
    "violet",
    "ticket",
    "castle",
    "feather",
    "mirror",
    "kitten",
    "saddle",
    "glacier",
]
TRANSFORMATIONS = {
    "reverse-words": "Reverse the order of the words in this sentence: {s}",
    "uppercase": "Rewrite this sentence in capital letters: {s}",
    "first-letters": "Write the first letter of each word in this sentence: {s}",
    "sort-words": "Sort the words of this sentence alphabetically: {s}",
    "remove-vowels": "Remove every vowel from this sentence: {s}",
    "last-word": "Repeat the last word of this sentence: {s}",
}
ARITHMETIC = {
    "addition": "What is {a} plus {b}?",
    "subtraction": "What is {a} minus {b}?",
    "addition-reasoning": "Add {a} and {b}. Explain your steps.",
    "multiplication-reasoning": "Multiply {a} by {b}. Explain your steps.",
}
TASKS = (*TRANSFORMATIONS, *ARITHMETIC)
"""The 10 built-in categories: six sentence transformations, then four arithmetic tasks (two with reasoning)."""


def _transform(task: str, words: list[str]) -> str:
    if task == "reverse-words":
        return " ".join(reversed(words))
    if task == "uppercase":
        return " ".join(words).upper()
    if task == "first-letters":
        return " ".join(w[0] for w in words)
    if task == "sort-words":
        return " ".join(sorted(words))
    if task == "remove-vowels":
        return " ".join("".join(c for c in w if c not in "aeiou") for w in words)
    return words[-1]


def _arithmetic(task: str, a: int, b: int) -> tuple[str, int]:
    if task == "addition":
        return f"{a + b}", a + b
    if task == "subtraction":
        return f"{a - b}", a - b
    if task == "addition-reasoning":
        tens, ones = (a // 10 + b // 10) * 10, a % 10 + b % 10
        return (
            f"{a // 10 * 10} + {b // 10 * 10} = {tens}. {a % 10} + {b % 10} = {ones}. {tens} + {ones} = {a + b}.",
            a + b,
        )
    low, high = b % 10, b // 10 * 10
    return f"{a} x {high} = {a * high}. {a} x {low} = {a * low}. {a * high} + {a * low} = {a * b}.", a * b


def _wrong(task: str, rng: np.random.Generator, words: list[str], a: int, b: int, right: str) -> str:
    """A plausible wrong response: another transformation's output, or a number off by a small amount."""
    if task in TRANSFORMATIONS:
        others = [t for t in TRANSFORMATIONS if _transform(t, words) != right]
        return _transform(others[int(rng.integers(len(others)))], words)
    _, value = _arithmetic(task, a, b)
    wrong = value + int(rng.choice([-1, 1])) * int(rng.integers(1, 10))
    return right.replace(str(value), str(wrong)) if right.endswith(f"{value}.") else str(wrong)


def generate_tasks(split: str = "train", *, seed: int = 0, planted_share: float = PLANTED_SHARE) -> InstructionSource:
    """The built-in tasks: :data:`TRAIN_PER_TASK` (``"train"``) or :data:`TEST_PER_TASK` (``"test"``) pairs of each
    of the 10 :data:`TASKS`, generated from ``seed`` (train and test never share a prompt). In ``"train"``,
    ``round(planted_share · 90)`` responses of every task are wrong (``planted``); ``"test"`` is clean.

    The ids (``<task>-<split>-<i>``) are in ``fields["ids"]``."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test'; got {split!r}.")
    if not 0 <= planted_share < 1:
        raise DataError(f"planted_share must be in [0, 1); got {planted_share!r}.")
    prompts, responses, correct, planted, categories, ids = [], [], [], [], [], []
    for number, task in enumerate(TASKS):
        rng = np.random.default_rng([seed, 27, number])  # the same pairs for both splits: they never share a prompt
        seen: set[str] = set()
        pairs = []
        while len(pairs) < TRAIN_PER_TASK + TEST_PER_TASK:  # draw train and test together: no shared prompt
            words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(3, 6)), replace=False)]
            a, b = int(rng.integers(10, 90)), int(rng.integers(10, 90))
            if task in TRANSFORMATIONS:
                prompt = TRANSFORMATIONS[task].format(s=" ".join(words))
                right = _transform(task, words)
            else:
                a, b = (a, b) if task != "subtraction" or a >= b else (b, a)
                if task == "multiplication-reasoning":
                    b = b % 10 + 10  # 10-19: short products
                prompt = ARITHMETIC[task].format(a=a, b=b)
                right = _arithmetic(task, a, b)[0]
            if prompt in seen:
                continue
            seen.add(prompt)
            pairs.append((prompt, right, words, a, b))
        part = pairs[:TRAIN_PER_TASK] if split == "train" else pairs[TRAIN_PER_TASK:]
        n_wrong = round(planted_share * len(part)) if split == "train" else 0
        rng = np.random.default_rng([seed, 28, number])
        wrong = set(rng.choice(len(part), size=n_wrong, replace=False).tolist())
        for i, (prompt, right, words, a, b) in enumerate(part):
            response = _wrong(task, rng, words, a, b, right) if i in wrong else right
            prompts.append(prompt)
            responses.append(response)
            correct.append(right)
            planted.append(i in wrong)
            categories.append(task)
            ids.append(f"{task}-{split}-{i:03d}")
    return InstructionSource(
        path=f"instruct-tasks{'' if split == 'train' else '-test'}",
        format="builtin",
        prompts=_objects(prompts),
        responses=_objects(responses),
        categories=_objects(categories),
        fields={"ids": ids},
        planted=np.asarray(planted, dtype=bool),
        correct=_objects(correct),
    )
