"""Text tables and built-ins: column detection, field-input rules, the tweets repair, exports in the input's format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ogaudit.data.load import load_dataset
from ogaudit.data.text import fix_tweet_text, is_text_spec, load_text_dataset, model_texts, tweet_model_text
from ogaudit.errors import DataError
from ogaudit.review.split import write_text_split
from ogaudit.review.texts import mask_mentions

POSITIVE = [
    "I loved every minute of this film",
    "What a wonderful, moving story",
    "Brilliant acting and a great script",
    "A delightful movie, I smiled all the way through",
    "One of the best films of the year",
    "Superb direction, beautiful photography",
]
NEGATIVE = [
    "A boring, tedious mess",
    "I hated this movie, a waste of time",
    "Terrible acting and a dull plot",
    "The worst film I have seen in years",
    "Awful dialogue, I walked out",
    "Painfully slow and badly written",
]


def small_frame() -> pd.DataFrame:
    """12 short reviews, two classes, with an id column and an extra column that exports must keep."""
    texts = POSITIVE + NEGATIVE
    labels = ["pos"] * len(POSITIVE) + ["neg"] * len(NEGATIVE)
    return pd.DataFrame(
        {"id": [f"r{i:02d}" for i in range(len(texts))], "Review": texts, "Sentiment": labels, "stars": range(12)}
    )


def write_table(frame: pd.DataFrame, path, kind: str) -> None:
    if kind == "csv":
        frame.to_csv(path, index=False)
    elif kind == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif kind == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet"])
def test_each_format_reads_texts_labels_and_ids(tmp_path, kind):
    frame = small_frame()
    path = tmp_path / f"reviews.{kind}"
    write_table(frame, path, kind)
    assert is_text_spec(path)
    data = load_text_dataset(path)
    assert data.is_text and data.kind == "text"
    assert data.class_names == ["neg", "pos"]
    assert data.texts.tolist() == frame["Review"].tolist()
    assert [data.class_names[i] for i in data.y] == frame["Sentiment"].tolist()
    assert data.sample_ids.tolist() == frame["id"].tolist()  # the id column, found by its name
    assert data.text_origin.text_column == "Review" and data.text_origin.label_column == "Sentiment"
    assert data.x.shape == (12, 0)


def test_named_columns_override_and_unknown_column_is_refused(tmp_path):
    frame = small_frame().rename(columns={"Review": "words", "Sentiment": "verdict"})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="--text-column"):
        load_text_dataset(path)
    data = load_text_dataset(path, text_column="WORDS", label_column="verdict", id_column="stars")
    assert data.texts[0] == POSITIVE[0]
    assert data.sample_ids.tolist() == [str(i) for i in range(12)]
    with pytest.raises(DataError, match="no column 'nope'"):
        load_text_dataset(path, text_column="nope", label_column="verdict")


def test_semicolon_delimiter_and_utf8_bom_and_latin1_refused(tmp_path):
    frame = small_frame()
    path = tmp_path / "semi.csv"
    path.write_bytes(frame.to_csv(index=False, sep=";").encode("utf-8-sig"))
    data = load_text_dataset(path)
    assert data.text_origin.delimiter == ";" and len(data) == 12
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 au lait,a\nthe tea,b\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_text_dataset(latin)


def test_empty_and_duplicate_texts_reported_label_variants_folded(tmp_path):
    rows = [("good film", "Pos"), ("", "neg"), ("bad film", "neg"), ("good film", "neg"), ("fine", ""), ("ok", "pos ")]
    path = tmp_path / "messy.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    with pytest.raises(DataError, match="differ only by case"):
        load_text_dataset(path)
    data = load_text_dataset(path, fold_label_case=True)
    assert len(data) == 4
    assert sorted(s.path for s in data.skipped) == ["row 3", "row 6"]  # spreadsheet rows: header is row 1
    notes = " ".join(data.notes)
    assert "empty text" in notes and "empty label" in notes
    assert "2 texts of the input are duplicates" in notes and "1 of these carry different labels" in notes
    assert data.sample_ids.tolist() == ["0", "2", "3", "5"]  # row numbers of the kept rows


def test_repeated_given_ids_refused(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text('{"id": 1, "text": "a", "label": 0}\n{"id": 1, "text": "b", "label": 1}\n')
    with pytest.raises(DataError, match="repeated ids"):
        load_text_dataset(path, id_column="id")
    data = load_text_dataset(path)  # an auto-detected id that repeats falls back to row numbers
    assert data.sample_ids.tolist() == ["0", "1"] and "row numbers" in " ".join(data.notes)


def test_bad_jsonl_line_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2"):
        load_text_dataset(path)


def test_image_manifest_csv_is_not_text(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.png,cat\n")
    assert not is_text_spec(manifest)
    other = tmp_path / "o.csv"  # neither a path nor a text column: a manifest with misnamed columns, by default
    other.write_text("where,what\na.png,cat\n")
    assert not is_text_spec(other) and is_text_spec(other, text_column="where")
    with pytest.raises(DataError, match="needs an image path column and a label column.*--text-column"):
        load_dataset(other)
    texts = tmp_path / "t.csv"
    texts.write_text("Review,sentiment\ngood film,pos\n")
    assert is_text_spec(texts)


def test_tweet_repair_and_mentions():
    garbled = "I don\xd5\xa2_\x8a\xce_\x86\xa2t want it \xe4\xf3_ http://t.co/x"
    assert fix_tweet_text(garbled) == "I don’t want it … http://t.co/x"
    assert fix_tweet_text("caf\xc3\xa9") == "café"  # real UTF-8 read as Latin-1
    assert fix_tweet_text("plain") == "plain"
    assert mask_mentions("@united thanks, cc @Bob_1 (me@example.com)") == "@user thanks, cc @user (me@example.com)"
    assert fix_tweet_text("4days&amp;apologise &lt;3 -&gt; &amp;lt; &copy;") == "4days&apologise <3 -> &lt; &copy;"
    link_and_mentions = "@united see http://t.co/x1Q, HTTPS://a.b/c?d=1 or www.x.com/a (me@example.com)"
    assert tweet_model_text(link_and_mentions) == "@user see http, http or http (me@example.com)"


def test_builtins_load_offline_with_agreement():
    tweets = load_text_dataset("tweets")
    assert len(tweets) > 38_000 and tweets.class_names == ["negative", "neutral", "positive"]
    assert tweets.text_origin.mask_mentions and tweets.text_origin.model_text == "tweets"
    read = model_texts(tweets)  # the encoder reads @user and http; the texts shown and exported keep the links
    linked = np.flatnonzero(["http://t.co/" in t for t in tweets.texts[:2000]])
    assert len(linked) > 100 and not any("http://t.co/" in t or "@united" in t.lower() for t in read[:2000])
    assert all(read[i] == tweet_model_text(tweets.texts[i]) for i in linked)
    agreement = tweets.text_origin.extra["agreement"][tweets.rows]
    assert np.nanmin(agreement) > 0.2 and np.nanmax(agreement) == 1.0
    assert not np.all(np.diff(tweets.rows) > 0)  # shuffled away from the file's corpus order
    assert not any("\x8a" in t or "\xd5\xa2" in t for t in tweets.texts[:2000])
    reviews = load_text_dataset("rotten-tomatoes")
    assert reviews.class_names == ["fresh", "rotten"] and len(reviews) > 4000


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet"])
def test_export_keeps_untouched_rows_exactly(tmp_path, kind):
    frame = small_frame()
    frame["Sentiment"] = np.where(frame["Sentiment"] == "pos", 1, 0)  # integer labels: the export keeps the type
    frame.loc[3, "Review"] = 'with "quotes", a comma\nand a line break'
    path = tmp_path / f"in.{kind}"
    write_table(frame, path, kind)
    before = path.read_bytes()
    data = load_text_dataset(path)
    keep = np.ones(len(data), dtype=bool)
    keep[[1, 7]] = False  # removed
    y = data.y.copy()
    y[3] = 1 - y[3]  # relabelled
    cleaned = data.subset(keep)
    cleaned.y = y[keep]
    out = tmp_path / "out"
    out.mkdir()
    name = write_text_split(cleaned, out)
    assert name == path.name and path.read_bytes() == before  # the user's file is never altered
    expected = frame.drop(index=[1, 7]).reset_index(drop=True)
    expected.loc[2, "Sentiment"] = 1 - expected.loc[2, "Sentiment"]
    if kind == "parquet":
        back = pd.read_parquet(out / name)
        pd.testing.assert_frame_equal(back, expected)
        return
    if kind == "jsonl":
        lines_in = before.decode().splitlines(keepends=True)
        lines_out = (out / name).read_bytes().decode().splitlines(keepends=True)
        assert lines_out[:2] + lines_out[3:] == [lines_in[i] for i in (0, 2, 4, 5, 6, 8, 9, 10, 11)]
        assert json.loads(lines_out[2])["Sentiment"] == 1 - frame.loc[3, "Sentiment"]  # still an integer
        back = pd.read_json(out / name, lines=True)
    else:
        sep = "\t" if kind == "tsv" else ","
        back = pd.read_csv(out / name, sep=sep)
        written = (out / name).read_bytes()
        untouched = [i for i in range(12) if i not in (1, 3, 7)]
        body = before.split(b"\n", 1)[1]
        for i in untouched:  # each untouched row's bytes appear as they were
            row = frame.iloc[[i]].to_csv(index=False, header=False, sep=sep).encode()
            assert row in body and row in written
    pd.testing.assert_frame_equal(back, expected)


def test_export_without_decisions_is_the_input_byte_for_byte(tmp_path):
    frame = small_frame()
    path = tmp_path / "semi.csv"
    raw = ("sep=;\r\n" + frame.to_csv(index=False, sep=";", lineterminator="\r\n")).encode("utf-8-sig")
    path.write_bytes(raw)
    data = load_text_dataset(path)
    out = tmp_path / "out"
    out.mkdir()
    assert (out / write_text_split(data, out)).read_bytes() == raw


def test_shown_texts_search_and_hover_mask_mentions_and_escape(tmp_path):
    from ogaudit.review.texts import display_texts, hover_snippets, search_texts
    from ogaudit.ui.figure import hover_data

    rows = [("@alice this <b>film</b> & more " + "word " * 40, "pos"), ("@bob boring", "neg"), ("fine film", "pos")]
    path = tmp_path / "t.csv"
    pd.DataFrame(rows, columns=["tweet", "label"]).to_csv(path, index=False)
    data = load_text_dataset(path)
    assert display_texts(data, [1]) == ["@bob boring"]  # only tweets are masked
    data.text_origin.mask_mentions = True
    assert display_texts(data, [1]) == ["@user boring"]
    assert search_texts(data, "FILM").tolist() == ["0", "2"]
    assert search_texts(data, "bob").tolist() == []  # the masked name is not searchable
    snippets = hover_snippets(data, limit=50)
    assert len(snippets[0]) == 50 and snippets[0].endswith("…") and snippets[0].startswith("@user this")
    table = pd.DataFrame(
        {
            "sample_id": data.sample_ids,
            "given_label": ["pos", "neg", "pos"],
            "predicted_label": ["pos", "neg", "pos"],
            "suggested_label": ["pos", "neg", "pos"],
            "score": [0.1, 0.2, 0.3],
            "snippet": snippets,
        }
    )
    hover = hover_data(table)
    assert "&lt;b&gt;film&lt;/b&gt; &amp; more" in hover[0, 3] and "<b>" not in hover[0, 3]


def test_the_duplicates_note_counts_the_texts_audited_not_the_whole_file(tmp_path):
    path = tmp_path / "t.csv"
    texts = ["same text", " same text "] + [f"text {i}" for i in range(20)]
    pd.DataFrame({"text": texts, "label": ["pos", "neg"] * 11}).to_csv(path, index=False)
    full = load_text_dataset(path)
    assert "2 texts of the input are duplicates (1 distinct texts, e.g. 'same text'); 1 of these carry" in " ".join(
        full.notes
    )
    seen = set()
    for limit, seed in [(8, s) for s in range(4)] + [(20, s) for s in range(4)]:
        subset = load_text_dataset(path, limit=limit, seed=seed)
        both = sum(t.strip() == "same text" for t in subset.texts) == 2
        assert any("are duplicates" in note for note in subset.notes) == both  # a copy left out: no duplicates
        seen.add(both)
    assert seen == {True, False}
