"""The Ray engine gives the local engine's results on a one-machine cluster (ray.init(num_cpus=2), one actor).

Needs ``pip install 'ogaudit[ray]'``; the Ray tests are skipped, saying so, when ray is not installed. The tests
without a cluster (the missing-extra message, argument checks) always run.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time

import numpy as np
import pytest
import torch

from ogaudit.cache.store import SampleStore
from ogaudit.cli import main
from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.engines.local import LocalEngine, resolve_engine
from ogaudit.errors import Cancelled, SettingsError
from ogaudit.gradients.layers import LayerGradientSettings, layer_store
from ogaudit.models.nets import build_model
from ogaudit.pipeline.run import AuditSettings, audit

SETTINGS = AuditSettings(
    limit=600, epochs=2, map_method="pca", layers=("body.conv2", "body.fc"), projection_dim=256, noise_rate=0.1
)


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-machine Ray cluster of 2 CPUs and a small object store, shut down after this module's tests."""
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'ogaudit[ray]' to run the Ray tests")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'ogaudit[ray]'")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=150 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _engine(**kwargs):
    from ogaudit.engines.ray_engine import RayEngine

    return RayEngine(actors=1, **kwargs)


def _released(ray, cpus: int = 2) -> bool:
    """True once every CPU of the cluster is free again (the pool's actors end asynchronously)."""
    for _ in range(120):
        if ray.available_resources().get("CPU", 0) == cpus:
            return True
        time.sleep(0.5)
    return False


def _entries(cache_dir, kinds=("evidence", "layer-gradients")) -> set[str]:
    return {f"{kind}/{p.name}" for kind in kinds for p in (cache_dir / "v1" / kind).glob("*") if p.is_dir()}


def _stored_gradients(cache_dir) -> np.ndarray:
    """The projected gradients of the one layer-gradient entry, read from its SampleStore."""
    (folder,) = [p.parent for p in (cache_dir / "v1" / "layer-gradients").glob("*/store.json")]
    return SampleStore.open(folder).read("gradients")


@pytest.mark.ray
def test_an_audit_on_ray_equals_the_local_one_and_fills_the_same_cache_entries(ray_cluster, tmp_path):
    cache = tmp_path / "cache"
    local = audit("digits", SETTINGS, cache_dir=cache)
    entries = _entries(cache)
    assert len(entries) == 2
    local_gradients = _stored_gradients(cache)
    for kind in ("evidence", "layer-gradients", "map"):  # the trained model stays cached; the rest is recomputed
        shutil.rmtree(cache / "v1" / kind)

    on_ray = audit("digits", SETTINGS, cache_dir=cache, engine=_engine(block_rows=128))

    assert _entries(cache) == entries  # the same keys: a Ray run is a cache hit for a local one, and back
    assert on_ray.record["engine"] == {**on_ray.record["engine"], "name": "ray", "actors": 1, "nodes": 1}
    assert local.record["engine"] == {"name": "local"}
    ray_gradients = _stored_gradients(cache)
    assert np.abs(ray_gradients).max() > 0.1  # real gradients, not an untouched store
    np.testing.assert_allclose(ray_gradients, local_gradients, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(on_ray.evidence.features, local.evidence.features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(on_ray.evidence.probs, local.evidence.probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(on_ray.label_evidence, local.label_evidence, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(on_ray.scores["score"], local.scores["score"], rtol=1e-4, atol=1e-6)
    assert (on_ray.scores["flagged"] == local.scores["flagged"]).mean() >= 0.99  # ties at the budget's edge aside


@pytest.mark.ray
def test_a_memory_mapped_npy_is_read_by_path_on_the_actors(ray_cluster, tmp_path, digits):
    from ogaudit.engines.ray_engine import npy_file_of

    np.save(tmp_path / "x.npy", digits.x[:700].reshape(700, -1).astype(np.float32))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    data = dataset_from_arrays(mapped, digits.y[:700])
    data.x = mapped  # the rows as the file holds them, not a copy
    assert npy_file_of(data.x)["path"] == str(tmp_path / "x.npy")
    assert npy_file_of(mapped[10:]) is None and npy_file_of(np.asarray(mapped) + 0) is None
    model = build_model("mlp", data, seed=1)

    features, logits = _engine(block_rows=256).head_outputs(model, data)

    expected_features, expected_logits = LocalEngine().head_outputs(model, data)
    np.testing.assert_allclose(features, expected_features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.ray
def test_cancel_stops_the_iteration_keeps_landed_rows_and_a_rerun_resumes(ray_cluster, tmp_path, digits):
    data = digits.subset(np.arange(900))
    model = build_model("cnn", data, seed=2)
    settings = LayerGradientSettings(layers=("body.conv1", "head"), dim=128, batch_size=100)
    cancel, seen = threading.Event(), []

    def progress(stage, fraction, message):
        seen.append((stage, fraction))
        if fraction > 0:
            cancel.set()  # as soon as the first range lands

    def store():
        return layer_store(tmp_path / "g", model, data.y, settings, inputs_fingerprint="f")

    engine = _engine(block_rows=200)  # ranges of two chunks
    with pytest.raises(Cancelled):
        engine.layer_gradients(model, data, settings, store=store(), progress=progress, cancel=cancel)
    done = store().rows_done()
    assert 0 < done < len(data) and done % 100 == 0
    assert {stage for stage, _ in seen} == {"gradients"}
    assert _released(ray_cluster), "the actor pool still holds its CPU after cancel"

    resumed = []
    filled = store()
    engine.layer_gradients(
        model, data, settings, store=filled, progress=lambda stage, fraction, message: resumed.append(fraction)
    )
    assert resumed[0] == pytest.approx(done / len(data))  # started from the chunks already done
    assert filled.complete
    local = layer_store(tmp_path / "local", model, data.y, settings, inputs_fingerprint="f")
    LocalEngine().layer_gradients(model, data, settings, store=local)
    np.testing.assert_allclose(filled.read("gradients"), local.read("gradients"), rtol=1e-4, atol=1e-5)


@pytest.mark.ray
def test_a_layer_store_interrupted_on_one_engine_is_finished_by_the_other(ray_cluster, tmp_path, digits):
    """Local, cancelled after its first chunk, then Ray for the rest; and Ray, cancelled, then local."""
    data = digits.subset(np.arange(500))
    model = build_model("cnn", data, seed=3)
    settings = LayerGradientSettings(layers=("body.fc", "head"), dim=96, batch_size=100)

    def store(name):
        return layer_store(tmp_path / name, model, data.y, settings, inputs_fingerprint="f")

    LocalEngine().layer_gradients(model, data, settings, store=store("full"))
    expected = store("full").read("gradients")

    def cancel_after_first(cancel):
        return lambda stage, fraction, message: fraction > 0 and cancel.set()

    for first, second, name in (
        (LocalEngine(), _engine(block_rows=100), "a"),
        (_engine(block_rows=100), LocalEngine(), "b"),
    ):
        cancel = threading.Event()
        with pytest.raises(Cancelled):
            first.layer_gradients(
                model, data, settings, store=store(name), progress=cancel_after_first(cancel), cancel=cancel
            )
        left = store(name).missing()
        assert 0 < len(left) < 5
        second.layer_gradients(model, data, settings, store=store(name))
        np.testing.assert_allclose(store(name).read("gradients"), expected, rtol=1e-4, atol=1e-5)
    assert _released(ray_cluster)


def test_the_ray_engine_without_ray_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "ogaudit.engines.ray_engine", raising=False)
    with pytest.raises(SettingsError, match=r"pip install 'ogaudit\[ray\]'"):
        resolve_engine("ray")


def test_engine_choices_are_checked(monkeypatch, tmp_path, capsys):
    with pytest.raises(SettingsError, match="engine must be one of local, ray"):
        resolve_engine("spark")
    with pytest.raises(SettingsError, match="--engine ray"):
        resolve_engine("local", ray_address="auto")
    assert main(["scan", "digits", "--out", str(tmp_path / "o"), "--ray-address", "auto", "--quiet"]) == 2
    assert "--ray-address 'auto' needs --engine ray" in capsys.readouterr().err
    pytest.importorskip("ray", reason="ray is not installed: pip install 'ogaudit[ray]'")
    from ogaudit.engines.ray_engine import RayEngine

    with pytest.raises(SettingsError, match="actors must be a number ≥ 1; got 0"):
        RayEngine(actors=0)
    with pytest.raises(SettingsError, match="ray_address must be"):
        RayEngine(address=" ")


def test_the_local_engine_is_the_default_and_reads_the_same_as_before(digits):
    data = digits.subset(np.arange(50))
    model = build_model("cnn", data, seed=0).eval()
    features, logits = resolve_engine(None).head_outputs(model, data)
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(torch.as_tensor(data.x)).numpy(), rtol=1e-5, atol=1e-5)
    assert features.shape == (50, model.head.in_features)


@pytest.mark.ray
def test_data_the_actors_cannot_read_is_one_readable_error(ray_cluster, tmp_path, digits):
    from ogaudit.errors import EngineError

    np.save(tmp_path / "x.npy", digits.x[:300].reshape(300, -1).astype(np.float32))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    data = dataset_from_arrays(mapped, digits.y[:300])
    data.x = mapped
    model = build_model("mlp", data, seed=1)
    (tmp_path / "x.npy").unlink()  # this process keeps its mapping; a node opening the path finds nothing
    with pytest.raises(EngineError, match=r"No such file.*x\.npy.*can read the data at the same path"):
        _engine().head_outputs(model, data)
    assert _released(ray_cluster)
