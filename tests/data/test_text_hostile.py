"""Hostile and odd text tables: each is read with a clear outcome, and a relabel changes only the label's text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ogaudit.data.text import load_text_dataset
from ogaudit.errors import DataError
from ogaudit.review.split import write_text_split


def relabel_first_row(path, tmp_path) -> bytes:
    """The export after the first row's label is changed to the other class: the written bytes."""
    data = load_text_dataset(path)
    data.y[0] = 1 - data.y[0]
    out = tmp_path / "out"
    out.mkdir()
    return (out / write_text_split(data, out)).read_bytes()


def test_a_jsonl_relabel_rewrites_only_the_label_value(tmp_path):
    first = (
        '{"id": "r0" ,"text":"a {\\"label\\": 1} b", "label" : "neg", "score": 1e400, '
        '"p": 0.10000000000000000555, "u": "caf\\u00e9", "nested": {"label": "x"}}\r\n'
    )
    rest = '{"id": "r1", "text": "fine", "label": "pos"}\n{"id": "r2", "text": "bad", "label": "neg"}\n'
    path = tmp_path / "in.jsonl"
    path.write_bytes((first + rest).encode())
    written = relabel_first_row(path, tmp_path).decode()
    assert written == first.replace('"label" : "neg"', '"label" : "pos"') + rest


def test_a_csv_relabel_keeps_the_other_cells_quoting(tmp_path):
    first = '"r0";"a ""quoted""; text";neg;"  padded "\r\n'
    path = tmp_path / "in.csv"
    path.write_bytes(("id;text;label;extra\r\n" + first + "r1;fine;pos;x\r\nr2;bad;neg;y\r\n").encode())
    written = relabel_first_row(path, tmp_path).decode()
    assert written.splitlines(keepends=True)[1] == first.replace(";neg;", ";pos;")


def test_lone_surrogates_deep_nesting_and_long_header_cells(tmp_path):
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"text": "bad \\ud800 one", "label": "a"}\n{"text": "good", "label": "b"}\n', encoding="utf-8")
    data = load_text_dataset(path)
    assert data.texts[0] == "bad \ufffd one" and any("surrogate" in note for note in data.notes)
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"text": "x", "label": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    with pytest.raises(DataError, match="nested too deeply"):
        load_text_dataset(deep)
    wide = tmp_path / "wide.csv"
    wide.write_text("text,label," + "A" * 200_000 + "\nhello,a,1\nworld,b,2\n", encoding="utf-8")
    assert len(load_text_dataset(wide)) == 2


def test_one_class_and_ids_that_differ_only_by_nul_are_refused(tmp_path):
    one = tmp_path / "one.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["pos"] * 3}).to_csv(one, index=False)
    with pytest.raises(DataError, match="at least two classes"):
        load_text_dataset(one)
    nul = tmp_path / "nul.csv"
    nul.write_text("id,text,label\nid0,a,pos\nid0\x00,b,neg\n", encoding="utf-8")
    with pytest.raises(DataError, match="NUL"):
        load_text_dataset(nul, id_column="id")


def test_parquet_missing_numbers_bytes_and_nested_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    table = pa.table(
        {
            "text": pa.array([b"great", b"awful", b"fine", b"meh"], type=pa.binary()),
            "label": pa.array([1.0, 0.0, float("nan"), 1.0]),
            "tags": pa.array([["a"], ["b"], [], ["c"]]),
        }
    )
    pq.write_table(table, path)
    data = load_text_dataset(path)
    assert list(data.texts) == ["great", "awful", "meh"] and data.class_names == ["0.0", "1.0"]
    assert [s.reason for s in data.skipped] == ["empty label: give every text a class"]
    with pytest.raises(DataError, match="lists or records"):
        load_text_dataset(path, text_column="tags")
    jsonl = tmp_path / "nan.jsonl"
    jsonl.write_text('{"text": "a", "label": NaN}\n{"text": "b", "label": 1}\n{"text": "c", "label": 2}\n')
    from_jsonl = load_text_dataset(jsonl)  # a NaN label is a missing one: its line is skipped
    assert list(from_jsonl.texts) == ["b", "c"] and from_jsonl.class_names == ["1", "2"]


def test_rows_skipped_at_load_stay_in_the_split(tmp_path):
    raw = "id,text,label\r\n0,good,pos\r\n1,,neg\r\n2,bad,neg\r\n3,fine, \r\n4,great,pos\r\n"
    path = tmp_path / "in.csv"
    path.write_bytes(raw.encode())
    data = load_text_dataset(path)
    assert list(data.sample_ids) == ["0", "2", "4"] and len(data.skipped) == 2
    cleaned = data.subset(np.array([True, False, True]))  # sample 2 removed by the review
    cleaned.y[0] = 1 - cleaned.y[0]  # sample 0 relabelled
    out = tmp_path / "out"
    out.mkdir()
    written = (out / write_text_split(cleaned, out)).read_bytes().decode()
    assert written == "id,text,label\r\n0,good,neg\r\n1,,neg\r\n3,fine, \r\n4,great,pos\r\n"


def test_line_breaks_and_lone_surrogates_in_labels_and_texts_keep_the_export_readable(tmp_path):
    """A relabel to a class whose name holds a line break stays one quoted cell; a JSON label value holding a lone
    surrogate is written escaped, as the input had it, instead of failing to encode."""
    table = tmp_path / "in.csv"
    table.write_bytes(b'text,label\nfine,"neg\nline2"\ngood,pos\nbad,"neg\nline2"\nok,pos\n')
    data = load_text_dataset(table)
    data.y[1] = data.class_names.index("neg\nline2")  # "good" relabelled to the class with a line break
    out = tmp_path / "out"
    out.mkdir()
    back = pd.read_csv(out / write_text_split(data, out))
    assert back["label"].tolist() == ["neg\nline2"] * 3 + ["pos"]
    lines = tmp_path / "in.jsonl"
    lines.write_text('{"text": "x", "label": "neg\\ud800"}\n{"text": "y", "label": "pos"}\n', encoding="utf-8")
    (tmp_path / "j").mkdir()
    written = relabel_first_row(lines, tmp_path / "j").decode()
    assert written == '{"text": "x", "label": "pos"}\n{"text": "y", "label": "pos"}\n'
    data = load_text_dataset(lines)
    data.y[1] = 1 - data.y[1]  # "y" relabelled to the class read from "neg\ud800"
    (tmp_path / "k").mkdir()
    written = (tmp_path / "k" / write_text_split(data, tmp_path / "k")).read_text(encoding="utf-8")
    assert written.splitlines()[1] == '{"text": "y", "label": "neg\\ud800"}'


def test_the_tweets_split_reads_back_row_for_row(tmp_path):
    """Some tweets hold a lone carriage return: the built-in's CSV rows quote it, so the split has one row per
    tweet."""
    tweets = load_text_dataset("tweets")
    assert any("\r" in text for text in tweets.texts)
    tweets.y[0] = (tweets.y[0] + 1) % 3
    name = write_text_split(tweets, tmp_path)
    back = load_text_dataset(tmp_path / name)
    assert len(back) == len(tweets) and sorted(back.texts) == sorted(tweets.texts)
