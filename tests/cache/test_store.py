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
