"""Model choice, the pretrained backbone, and user checkpoints (loaded without unpickling code)."""

import pickle

import numpy as np
import pytest
import torch
import torchvision

from ogaudit.data import dataset_from_arrays
from ogaudit.errors import ModelError
from ogaudit.models import build_model, choose_model, load_checkpoint


def _photos(n=6, side=96, classes=3):
    rng = np.random.default_rng(0)
    return dataset_from_arrays(rng.integers(0, 255, (n, side, side, 3), dtype=np.uint8), np.arange(n) % classes)


def test_auto_choice_follows_the_data(digits):
    assert choose_model(digits).kind == "cnn"
    assert choose_model(_photos()).kind == "efficientnet"
    vectors = dataset_from_arrays(np.zeros((4, 5), np.float32), np.array([0, 1, 0, 1]))
    assert choose_model(vectors).kind == "mlp"
    with pytest.raises(ModelError, match="needs images"):
        choose_model(vectors, "cnn")


def test_pretrained_efficientnet_loads_offline_and_gives_imagenet_features():
    photos = _photos()
    model = build_model("efficientnet", photos)
    with torch.no_grad():
        features = model.features(torch.as_tensor(photos.x))
    assert features.shape == (6, 1280) and torch.isfinite(features).all()
    assert not any(p.requires_grad for p in model.body.parameters())
    stem = model.body.net._conv_stem.weight
    assert stem.abs().mean() > 0.05  # real weights, not a fresh init


def test_torchvision_state_dict_checkpoint(tmp_path):
    photos = _photos(side=32)
    net = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    model = load_checkpoint(tmp_path / "r18.pt", photos, arch="resnet18")
    x = torch.as_tensor(photos.x)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), net(model.preprocess(x)).numpy(), rtol=1e-4, atol=1e-5)
    assert model.head.out_features == 3


def test_checkpoint_with_other_class_count_is_refused(tmp_path):
    net = torchvision.models.resnet18(weights=None, num_classes=5)
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ModelError, match="3 classes"):
        load_checkpoint(tmp_path / "r18.pt", _photos(side=32), arch="resnet18")


class _Exploit:
    def __reduce__(self):
        return (print, ("this would have run code",))


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"fc.weight": _Exploit()}, handle)
    with pytest.raises(ModelError, match="Refused"):
        load_checkpoint(path, _photos(side=32), arch="resnet18")
    assert "would have run code" not in capsys.readouterr().out


def test_unknown_arch_and_missing_file(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(ModelError, match="not a torchvision"):
        load_checkpoint(tmp_path / "x.pt", _photos(side=32), arch="resnet9000")
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", _photos(side=32), arch="resnet18")


class _Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32 * 3, 8), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, 3)

    @torch.jit.export
    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def test_torchscript_checkpoint_with_forward_features(tmp_path):
    torch.jit.save(torch.jit.script(_Scripted().eval()), tmp_path / "m.ts")
    model = load_checkpoint(tmp_path / "m.ts", _photos(side=32))
    assert model.head.out_features == 3
    x = torch.as_tensor(_photos(side=32).x)
    with torch.no_grad():
        assert model(x).shape == (6, 3)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a TorchScript file"):
        load_checkpoint(tmp_path / "junk.pt", _photos(side=32))


# ---------------------------------------------------------------- hostile and mismatched checkpoints


def test_state_dict_of_another_architecture_names_the_missing_tensors(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ModelError, match=r"does not fit resnet34 .* tensor\(s\) missing, e\.g\. \['layer1\.2\."):
        load_checkpoint(tmp_path / "r18.pt", _photos(side=32), arch="resnet34")


def test_state_dict_with_a_wrong_shape_names_the_tensor_and_both_shapes(tmp_path):
    state = torchvision.models.resnet18(weights=None, num_classes=3).state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)  # trained on grayscale
    torch.save(state, tmp_path / "gray.pt")
    with pytest.raises(ModelError, match=r"'conv1\.weight' is \(64, 1, 7, 7\) in the checkpoint, resnet18 needs"):
        load_checkpoint(tmp_path / "gray.pt", _photos(side=32), arch="resnet18")


def test_a_whole_pickled_module_is_refused_with_the_fix(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3), tmp_path / "whole.pt")  # needs unpickling
    with pytest.raises(ModelError, match=r"Refused .* torch\.save\(model\.state_dict\(\), path\)"):
        load_checkpoint(tmp_path / "whole.pt", _photos(side=32), arch="resnet18")


def test_torchscript_model_for_other_inputs_is_a_model_error(tmp_path):
    torch.jit.save(torch.jit.script(_Scripted().eval()), tmp_path / "m.ts")  # expects 32x32x3 inputs
    with pytest.raises(ModelError, match="cannot run on this data"):
        load_checkpoint(tmp_path / "m.ts", _photos(side=16))
