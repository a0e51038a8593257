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
