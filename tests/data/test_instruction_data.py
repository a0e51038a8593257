"""Instruction data: the built-in tasks, JSON Lines / chat messages / CSV / Parquet pairs, and what is refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ogaudit.data.instructions import (
    TASKS,
    generate_tasks,
    is_instruction_spec,
    load_instructions,
    planted_of,
    prompts_of,
    responses_of,
)
from ogaudit.data.load import load_dataset
from ogaudit.errors import DataError


def test_builtin_tasks_are_deterministic_with_a_planted_share_and_a_disjoint_test_split():
    train, test = load_instructions("instruct-tasks"), load_instructions("instruct-tasks-test")
    assert len(train) == 900 and len(test) == 100 and train.class_names == sorted(TASKS)
    assert np.bincount(train.y).tolist() == [90] * 10 and np.bincount(test.y).tolist() == [10] * 10
    planted = planted_of(train)
    assert planted.sum() == 180 and not planted_of(test).any()
    assert not set(prompts_of(train)) & set(prompts_of(test))
    source = generate_tasks("train")
    # a planted response differs from the right one; the others are the right one
    assert (source.responses[source.planted] != source.correct[source.planted]).all()
    assert (source.responses[~source.planted] == source.correct[~source.planted]).all()
    again = load_instructions("instruct-tasks")
    assert (responses_of(again) == responses_of(train)).all() and train.fingerprint() == again.fingerprint()
    assert load_instructions("instruct-tasks", seed=1).fingerprint() != train.fingerprint()


def test_builtin_answers_are_right():
    source = generate_tasks("test")
    for prompt, response in zip(source.prompts, source.responses, strict=True):
        if prompt.startswith("What is") and "plus" in prompt:
            a, b = (int(t.rstrip("?")) for t in prompt.split() if t.rstrip("?").isdigit())
            assert response == str(a + b)
        if prompt.startswith("Reverse the order"):
            words = prompt.split(": ", 1)[1].split()
            assert response == " ".join(reversed(words))


def test_jsonl_pairs_load_through_load_dataset(small_instructions):
    assert is_instruction_spec(small_instructions)
    dataset = load_dataset(small_instructions)
    assert dataset.kind == "instructions" and len(dataset) == 60 and dataset.x.shape == (60, 0)
    assert dataset.n_classes == 10 and dataset.sample_ids[0].endswith("-train-" + dataset.sample_ids[0][-3:])
    assert dataset.texts[0].startswith(prompts_of(dataset)[0]) and dataset.texts[0].endswith(responses_of(dataset)[0])
    subset = dataset.subset(np.arange(5, 10))
    assert (responses_of(subset) == responses_of(dataset)[5:10]).all()


def test_chat_messages_alpaca_input_csv_and_parquet(tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]})
        + "\n"
        + json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "4"},
                ]
            }
        )
        + "\n"
    )
    dataset = load_dataset(chat)
    assert list(prompts_of(dataset)) == ["Hi?", "system: Be brief.\nuser: 2+2?"]
    assert list(responses_of(dataset)) == ["Hello.", "4"] and dataset.class_names == ["all"]

    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text(json.dumps({"instruction": "Translate", "input": "chat", "output": "cat", "id": "a1"}) + "\n")
    dataset = load_dataset(alpaca)
    assert prompts_of(dataset)[0] == "Translate\n\nchat" and dataset.sample_ids.tolist() == ["a1"]

    frame = pd.DataFrame({"prompt": ["p1", "p2, with a comma\nand a line"], "response": ["r1", "r2"], "task": "t"})
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    frame.to_parquet(tmp_path / "pairs.parquet")
    for name in ("pairs.csv", "pairs.parquet"):
        dataset = load_dataset(tmp_path / name)
        assert list(prompts_of(dataset)) == ["p1", "p2, with a comma\nand a line"] and dataset.class_names == ["t"]
    source = load_dataset(tmp_path / "pairs.csv").text_origin
    assert "".join([source.prefix, *source.records]) == (tmp_path / "pairs.csv").read_text()


def test_bad_pairs_are_refused_with_the_fix(tmp_path):
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"prompt": "p", "text": "x"}) + "\n")
    assert not is_instruction_spec(missing)  # read as a text table, not as pairs
    with pytest.raises(DataError, match="response field"):
        load_instructions(missing)
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"prompt": "p", "response": " "}) + "\n")
    with pytest.raises(DataError, match="empty response"):
        load_instructions(empty)
    no_answer = tmp_path / "chat.jsonl"
    no_answer.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match="assistant"):
        load_instructions(no_answer)
    twice = tmp_path / "twice.jsonl"
    twice.write_text("".join(json.dumps({"id": "1", "prompt": "p", "response": "r"}) + "\n" for _ in range(2)))
    with pytest.raises(DataError, match="not unique"):
        load_instructions(twice)


def test_size_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"prompt": "p" * 4000, "response": "r"}) + "\n")
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "1K")
    with pytest.raises(DataError, match="memory|budget"):
        load_instructions(path)


def test_a_small_parquet_that_decodes_past_the_budget_is_refused_before_its_texts_are_decoded(tmp_path, monkeypatch):
    """A dictionary-encoded, zstd-compressed Parquet file of ~1 kB whose 50 responses are one 2 MB text decodes to
    100 MB (a 4M-text version: 868 bytes, 400 MB, peak 2.3 GB at a 256M budget, measured by hand). The file's
    size times a factor said nothing of it; its texts are now measured as dictionaries, never decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bomb.parquet"
    rows = 50
    table = pa.table({"prompt": ["what is 2+2?"] * rows, "response": ["4" * 2_000_000] * rows})
    pq.write_table(table, path, compression="zstd")
    assert path.stat().st_size < 4096 and pq.read_table(path).nbytes > 100_000_000  # the control: a real bomb
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "32M")
    decoded = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: decoded.append(a) or real(*a, **k))
    with pytest.raises(DataError, match=r"Refused .*bomb.parquet.* over the memory budget of 32.0 MiB"):
        load_instructions(path)
    assert decoded == []
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "1G")  # the same file within a budget that holds it: read
    assert len(load_instructions(path)) == rows
