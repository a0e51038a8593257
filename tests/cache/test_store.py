"""The sharded per-sample store: chunks, a done mask that resumes an interrupted fill, float16 round trips."""

import threading

import numpy as np
import pytest

from ogaudit.cache.store import SampleStore
from ogaudit.errors import Cancelled

FIELDS = {"features": ((3,), "float32"), "probs": ((2,), "float32")}


def rows(start: int, stop: int) -> dict[str, np.ndarray]:
    index = np.arange(start, stop, dtype=np.float64)[:, None]
    return {"features": index * [1.0, 2.0, 3.0], "probs": np.hstack([index, -index])}


def test_a_filled_store_reads_back_every_row_in_order(tmp_path):
    store = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)
    assert store.n_chunks == 3 and store.missing() == [0, 1, 2]
    seen = []
    store.fill(lambda a, b: seen.append((a, b)) or rows(a, b))
    assert seen == [(0, 4), (4, 8), (8, 10)] and store.complete
    np.testing.assert_array_equal(store.read("features"), rows(0, 10)["features"])
    np.testing.assert_array_equal(store.read("probs"), rows(0, 10)["probs"])


def test_an_interrupted_fill_resumes_from_the_done_mask_and_computes_only_the_rest(tmp_path):
    cancel = threading.Event()
    calls = []

    def compute(start, stop):
        calls.append(start)
        if len(calls) == 2:
            cancel.set()  # the user presses Cancel while the second chunk is computed
        return rows(start, stop)

    with pytest.raises(Cancelled):
        SampleStore(tmp_path, 10, FIELDS, chunk_rows=4).fill(compute, cancel=cancel)
    assert calls == [0, 4]
    reopened = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)
    assert reopened.missing() == [2] and not reopened.complete
    with pytest.raises(ValueError, match="misses 1 chunk"):
        reopened.read("features")
    calls.clear()
    reopened.fill(compute)
    assert calls == [8]
    np.testing.assert_array_equal(reopened.read("features"), rows(0, 10)["features"])


def test_another_layout_starts_the_store_over(tmp_path):
    SampleStore(tmp_path, 10, FIELDS, chunk_rows=4).fill(rows)
    other = SampleStore(tmp_path, 10, FIELDS, chunk_rows=5)
    assert other.missing() == [0, 1] and not list(tmp_path.glob("features-*.npy"))


def test_float16_fields_round_trip_to_float16_precision(tmp_path):
    values = np.random.default_rng(0).normal(size=(9, 5)).astype(np.float32) * 30
    store = SampleStore(tmp_path, 9, {"features": ((5,), "float16")}, chunk_rows=4)
    store.fill(lambda a, b: {"features": values[a:b]})
    assert np.load(tmp_path / "features-00000.npy").dtype == np.float16
    back = store.read("features", "float32")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, values.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(back, values, rtol=2**-11)


def test_a_chunk_of_the_wrong_shape_or_fields_is_refused(tmp_path):
    store = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)
    with pytest.raises(ValueError, match=r"must be \(4, 3\)"):
        store.write(0, features=np.zeros((3, 3)), probs=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="needs the fields"):
        store.write(0, features=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dtype"):
        SampleStore(tmp_path / "b", 3, {"f": ((1,), "float64")})
    assert store.missing() == [0, 1, 2]


def test_a_damaged_shard_is_reported_on_read(tmp_path):
    store = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)
    store.fill(rows)
    np.save(tmp_path / "probs-00001.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="probs-00001.npy"):
        store.read("probs")


def test_rows_landing_out_of_order_and_in_pieces_write_each_chunk_once_it_is_whole(tmp_path):
    """Ray actors return ranges in any order, and a range need not be a whole chunk."""
    store = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)
    whole = rows(0, 10)
    assert store.write_rows(np.arange(8, 10), **rows(8, 10)) == [2]  # the last, short chunk first
    assert store.write_rows(np.arange(2, 6), **rows(2, 6)) == []  # half of chunk 0, half of chunk 1
    assert store.missing() == [0, 1]
    reversed_rows = np.array([7, 6, 1, 0])
    assert store.write_rows(reversed_rows, **{k: v[reversed_rows] for k, v in whole.items()}) == [0, 1]
    assert store.write_rows(np.arange(0, 4), **rows(0, 4)) == []  # a chunk already done is left as it is
    np.testing.assert_array_equal(store.read("features"), whole["features"])
    with pytest.raises(ValueError, match="rows must lie"):
        store.write_rows(np.array([10]), **rows(0, 1))


def test_rows_held_for_an_unfinished_chunk_are_not_marked_done(tmp_path):
    store = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)
    store.write_rows(np.arange(0, 3), **rows(0, 3))
    reopened = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)  # the process stopped: those rows are computed again
    assert reopened.missing() == [0, 1, 2] and not list(tmp_path.glob("features-*.npy"))


def test_another_source_starts_the_store_over_and_open_reads_a_store_as_laid_out(tmp_path):
    store = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4, source="model-a")
    store.fill(rows)
    assert SampleStore(tmp_path / "plain", 3, FIELDS).layout().keys() == {"format", "n_rows", "chunk_rows", "fields"}
    opened = SampleStore.open(tmp_path)
    assert opened.layout() == store.layout() and opened.source == "model-a" and opened.complete
    np.testing.assert_array_equal(opened.read("probs"), rows(0, 10)["probs"])
    assert SampleStore.open(tmp_path, n_rows=10, fields=FIELDS, chunk_rows=4, source="model-a").complete
    for other in ({"n_rows": 9}, {"chunk_rows": 5}, {"source": "model-b"}, {"fields": {"probs": ((2,), "float32")}}):
        with pytest.raises(ValueError, match="laid out for other"):
            SampleStore.open(tmp_path, **other)
    other = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4, source="model-b")  # rows of model a are not mixed in
    assert other.missing() == [0, 1, 2] and not list(tmp_path.glob("probs-*.npy"))
    with pytest.raises(OSError):
        SampleStore.open(tmp_path / "nothing")
    (tmp_path / "store.json").write_text('{"format": 1, "n_rows": "ten"}')
    with pytest.raises(ValueError):
        SampleStore.open(tmp_path)


def test_rows_reads_only_what_is_indexed_from_the_memory_mapped_shards(tmp_path):
    store = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)
    store.fill(rows)
    view, whole = store.rows("features"), rows(0, 10)["features"].astype(np.float32)
    assert len(view) == 10 and view.shape == (10, 3) and view.dtype == np.float32 and view.ndim == 2
    np.testing.assert_array_equal(np.asarray(view), whole)
    assert np.asarray(view, dtype=np.float64).dtype == np.float64
    for index in (slice(None), slice(3, 9), slice(None, None, -3), np.array([9, 0, 5, 4, 4]), whole[:, 0] > 4, []):
        np.testing.assert_array_equal(view[index], whole[index])
    np.testing.assert_array_equal(view[-1], whole[-1])
    np.testing.assert_array_equal(view[2:7, 1], whole[2:7, 1])
    assert view[np.array([1, 2])].flags.writeable  # an in-memory copy, not the map
    with pytest.raises(IndexError):
        view[10]


def test_read_chunk_gives_one_done_chunk(tmp_path):
    store = SampleStore(tmp_path, 10, FIELDS, chunk_rows=4)
    store.write(1, **rows(4, 8))
    np.testing.assert_array_equal(store.read_chunk("probs", 1), rows(4, 8)["probs"].astype(np.float32))
    with pytest.raises(ValueError, match="not written"):
        store.read_chunk("probs", 0)
    with pytest.raises(ValueError, match="misses 2 chunk"):
        store.rows("probs")
    assert store.write_rows(np.array([], dtype=np.int64), features=np.zeros((0, 3)), probs=np.zeros((0, 2))) == []


def test_the_forward_pass_the_layer_gradients_and_the_text_embeddings_share_one_store_and_resume_by_chunks(
    tmp_path, digits, monkeypatch
):
    """Every resumable per-sample output is a SampleStore in its cache entry; an audit cancelled in its layer
    gradients, and an embedding cancelled mid-way, resume from their written chunks."""
    import ogaudit.gradients.layers as layers
    from ogaudit.cache.artifacts import ArtifactCache
    from ogaudit.models import encoders
    from ogaudit.pipeline.run import AuditSettings, audit

    data = digits.subset(np.arange(300))
    settings = AuditSettings(epochs=1, layers=("body.fc", "head"), projection_dim=64, map_method="pca")
    cancel, batches = threading.Event(), []
    project = layers._project_batch

    def counted(model, x, *args):
        batches.append(len(x))
        cancel.set()  # Cancel pressed during the first chunk (256 rows): it is written, the second is not
        return project(model, x, *args)

    monkeypatch.setattr(layers, "_project_batch", counted)
    with pytest.raises(Cancelled):
        audit(data, settings, cache_dir=tmp_path / "cache", cancel=cancel)
    assert batches == [256]
    batches.clear()
    resumed = audit(data, settings, cache_dir=tmp_path / "cache")
    assert batches == [44]  # only the chunk left
    monkeypatch.setattr(layers, "_project_batch", project)
    fresh = audit(data, settings, cache_dir=tmp_path / "fresh")
    np.testing.assert_array_equal(resumed.scores["score"], fresh.scores["score"])

    class Encoder:  # a stand-in for the sentence encoder: the store is what is tested here
        max_seq_length = 16

        def tokenizer(self, texts, **kwargs):
            return {"length": [min(len(text.split()) + 2, self.max_seq_length) for text in texts]}

        def encode(self, batch, **kwargs):
            if len(encoded) == 4:
                cancel.set()  # during the first batch of the second chunk
            encoded.extend(batch)
            return np.stack([np.full(384, len(text), np.float32) for text in batch])

    monkeypatch.setattr(encoders, "load_encoder", lambda name=encoders.DEFAULT_ENCODER: Encoder())
    monkeypatch.setattr(encoders, "EMBED_CHUNK_ROWS", 4)
    texts = np.asarray([f"text {'word ' * i}" for i in range(10)], dtype=object)
    cancel.clear()
    encoded: list[str] = []
    with pytest.raises(Cancelled):
        encoders.embed_texts(texts, cache=ArtifactCache(tmp_path / "cache"), cancel=cancel, batch_size=2)
    assert len(encoded) == 6  # chunk 0 written; chunk 1 stopped after its first batch, not written
    encoded.clear()
    embedded = encoders.embed_texts(texts, cache=ArtifactCache(tmp_path / "cache"), batch_size=2)
    assert sorted(encoded) == sorted(texts[4:].tolist())
    np.testing.assert_array_equal(embedded[:, 0], [len(text) for text in texts])

    layouts = {}
    for kind in ("evidence", "layer-gradients", "text-embeddings"):
        (entry,) = [p for p in (tmp_path / "cache" / "v1" / kind).iterdir() if not p.name.startswith(".")]
        store = SampleStore.open(entry)
        assert store.complete
        layouts[kind] = store.layout()
    assert {layout["format"] for layout in layouts.values()} == {1}
    assert {kind: sorted(layout["fields"]) for kind, layout in layouts.items()} == {
        "evidence": ["features", "probs"],
        "layer-gradients": ["gradients"],
        "text-embeddings": ["embeddings"],
    }
    assert layouts["layer-gradients"]["n_rows"] == 300 and layouts["layer-gradients"]["chunk_rows"] == 256
