"""The training loss option (issue 24): robust losses as written in their papers, validated, recorded, cached apart."""

import json

import pytest
import torch
from torch.nn import functional as F

from ogaudit.data.dataset import stratified_subset
from ogaudit.errors import SettingsError
from ogaudit.models.nets import build_model
from ogaudit.models.training import GCE_Q, model_cache_key, train_model, training_loss
from ogaudit.settings import AuditSettings, TrainSettings
from ogaudit.storage import fingerprint

RECIPE_BEFORE_LOSS = {
    "epochs": 2,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    "seed": 0,
    "fine_tune": False,
}
"""TrainSettings(epochs=2)'s recipe as the model cache key read it before the loss setting existed."""


def _batch(seed=0, n=64, classes=5):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 3
    labels = torch.randint(0, classes, (n,), generator=generator)
    return logits, labels


def test_losses_follow_their_papers_formulas():
    logits, labels = _batch()
    p = torch.softmax(logits.double(), dim=1)[torch.arange(len(labels)), labels]
    assert torch.allclose(training_loss(logits, labels), F.cross_entropy(logits, labels))
    gce = ((1 - p**GCE_Q) / GCE_Q).mean()  # Zhang & Sabuncu 2018, eq. 6
    assert float(training_loss(logits, labels, "gce")) == pytest.approx(float(gce), rel=1e-5)
    sce = 0.1 * (-p.log()).mean() + 1.0 * 4.0 * (1 - p).mean()  # Wang et al. 2019: RCE = -A (1 - p_y), A = -4
    assert float(training_loss(logits, labels, "sce")) == pytest.approx(float(sce), rel=1e-5)
    smoothed = -(0.9 * torch.log_softmax(logits, 1).gather(1, labels.view(-1, 1)).squeeze(1)
                 + 0.1 * torch.log_softmax(logits, 1).mean(1)).mean()  # fmt: skip
    assert float(training_loss(logits, labels, "label-smoothing")) == pytest.approx(float(smoothed), rel=1e-5)
    with pytest.raises(ValueError, match="loss must be one of"):
        training_loss(logits, labels, "mae")


def test_gce_gradient_is_cross_entropys_weighted_by_p_to_the_q():
    """The property that makes GCE robust: a sample the model finds unlikely (a wrong label, often) pulls less."""
    logits, labels = _batch(seed=1)
    grads = {}
    for loss in ("cross-entropy", "gce"):
        leaf = logits.clone().double().requires_grad_(True)
        per_sample = [training_loss(leaf[i : i + 1], labels[i : i + 1], loss) for i in range(len(labels))]
        torch.stack(per_sample).sum().backward()
        grads[loss] = leaf.grad
    p = torch.softmax(logits.double(), dim=1)[torch.arange(len(labels)), labels]
    torch.testing.assert_close(grads["gce"], grads["cross-entropy"] * p.pow(GCE_Q).view(-1, 1))


def test_loss_setting_is_checked_recorded_and_round_trips():
    with pytest.raises(SettingsError, match="loss.*cross-entropy"):
        AuditSettings(loss="mae")
    with pytest.raises(SettingsError, match="loss"):
        TrainSettings(loss="focal")
    with pytest.raises(SettingsError, match="nothing is trained that way"):
        AuditSettings(loss="gce", predictions="preds.npz")
    with pytest.raises(SettingsError, match="nothing is trained that way"):
        AuditSettings(loss="sce", model="checkpoint.pt")
    default = AuditSettings()
    assert "loss" not in default.to_dict()  # the record (and fingerprint) of a run before the option existed
    robust = AuditSettings(loss="gce", epochs=3)
    assert robust.to_dict()["loss"] == "gce" and robust.train_settings.loss == "gce"
    assert AuditSettings.from_dict(robust.to_dict()) == robust
    assert AuditSettings.from_dict(default.to_dict()) == default


def test_model_cache_key_keeps_old_models_and_separates_losses(digits):
    data = stratified_subset(digits, 40, seed=0)
    plain = TrainSettings(epochs=2)
    before = dict(RECIPE_BEFORE_LOSS)
    assert model_cache_key(data, "mlp", plain) == fingerprint("model-v4", data.fingerprint(), "mlp", before)
    losses = ("cross-entropy", "gce", "sce", "label-smoothing")
    assert len({model_cache_key(data, "mlp", TrainSettings(epochs=2, loss=loss)) for loss in losses}) == 4


@pytest.mark.parametrize("loss", ["gce", "sce", "label-smoothing"])
def test_a_model_learns_under_a_robust_loss(digits, loss, one_torch_thread):
    data = stratified_subset(digits, 300, seed=0)
    trained = {}
    for name in ("cross-entropy", loss):
        model = build_model("mlp", data, seed=0)
        run = train_model(model, data, TrainSettings(epochs=4, seed=0, loss=name))
        trained[name] = run.history
        assert run.history[-1]["accuracy"] > 0.6 and run.history[-1]["accuracy"] > run.history[0]["accuracy"]
    assert trained[loss][-1]["loss"] != pytest.approx(trained["cross-entropy"][-1]["loss"])


def test_an_audit_records_its_loss_in_run_json(tmp_path, cache_dir, one_torch_thread):
    from ogaudit.pipeline.run import audit

    settings = AuditSettings(loss="gce", epochs=1, limit=200, map_method="pca", noise_rate=0.1)
    audit("digits", settings, out_dir=tmp_path / "run", cache_dir=cache_dir)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["settings"]["loss"] == "gce"


def test_a_model_cached_before_the_loss_setting_is_reused_not_discarded(digits, tmp_path):
    """Its key was kept; the settings saved beside it must match too, or the cache discards it and retrains."""
    from ogaudit.cache.artifacts import ArtifactCache
    from ogaudit.pipeline.stages import _model_entry

    data = stratified_subset(digits, 40, seed=0)
    plain = TrainSettings(epochs=2)
    before = dict(RECIPE_BEFORE_LOSS)
    cache = ArtifactCache(tmp_path)
    old = cache.entry(
        "model", model_cache_key(data, "mlp", plain), {"kind": "mlp", "data": data.fingerprint(), "train": before}
    )
    old.save(lambda folder: (folder / "model.pt").write_bytes(b"weights"))
    notices = []
    read = _model_entry(cache, "mlp", data, plain).load(lambda f: (f / "model.pt").read_bytes(), notice=notices.append)
    assert read == b"weights" and notices == []
    sce = _model_entry(cache, "mlp", data, TrainSettings(epochs=2, loss="sce"))
    assert sce.key != old.key and sce.settings["train"]["loss"] == "sce"
