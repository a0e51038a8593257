"""Model choice, the pretrained backbone, and user checkpoints (loaded without unpickling code)."""

import json
import pickle
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from ogaudit.data.arrays import dataset_from_arrays
from ogaudit.errors import ModelError
from ogaudit.models.nets import (
    build_model,
    checkpoint_format,
    choose_model,
    load_checkpoint,
    model_recipe,
    rebuild_model,
)
from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.ui.forms import SetupChoices, prepare_audit


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


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_a_vector_model_reads_images_as_flat_vectors(digits, kind):
    """model="mlp" on images (a user's choice) reads each image as its H·W·C pixels; it used to fail in training
    with a cross-entropy shape error."""
    images = digits.subset(np.arange(64))
    model = build_model(kind, images)
    logits = model(torch.from_numpy(images.x[:5]))
    flat = build_model(kind, replace(images, x=images.x.reshape(64, -1).astype(np.float32)))
    assert logits.shape == (5, images.n_classes)
    assert torch.allclose(
        model.preprocess(torch.from_numpy(images.x[:5])), flat.preprocess(torch.from_numpy(images.x[:5].reshape(5, -1)))
    )


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
    """Unpickling this creates the file ``marker``: what any code in a pickle could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle.dump", "torch.save"])
def test_pickle_that_runs_code_is_refused(tmp_path, writer):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    if writer == "pickle.dump":
        path.write_bytes(pickle.dumps({"fc.weight": _Exploit(marker)}))
    else:
        torch.save({"fc.weight": _Exploit(marker)}, path)
    for arch in ("resnet18", None):
        with pytest.raises(ModelError, match="Refused|not a TorchScript|is a state dict"):
            load_checkpoint(path, _photos(side=32), arch=arch)
    assert not marker.exists()
    pickle.loads(path.read_bytes()) if writer == "pickle.dump" else torch.load(path, weights_only=False)
    assert marker.exists()  # the file is a working exploit: loading it unsafely does write the marker


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
    model = load_checkpoint(tmp_path / "m.ts", _photos(side=32), trust_code=True)
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
        load_checkpoint(tmp_path / "m.ts", _photos(side=16), trust_code=True)


# ---------------------------------------------------------------- checkpoints that would run code


class _WritesOnLoad(torch.nn.Module):
    """Creates ``marker`` from ``__setstate__``, which ``torch.jit.load`` runs while reading the file."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        written = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8).fill_(33)
        self.training = state[1] and bool(written.sum() > 0)  # used, so the call is not optimised away

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _WritesOnForward(torch.nn.Module):
    """Creates ``marker`` from ``forward``, which the probe batch would run."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        written = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8).fill_(33)
        return x + written.sum() * 0


class _Trojan(torch.nn.Module):
    """A plausible classifier (ends in a Linear, exports forward_features) carrying a payload."""

    def __init__(self, payload: torch.nn.Module, in_features: int):
        super().__init__()
        self.payload = payload
        self.flatten = torch.nn.Flatten()
        self.fc = torch.nn.Linear(in_features, 3)

    @torch.jit.export
    def forward_features(self, x):
        return self.flatten(self.payload(x))

    def forward(self, x):
        return self.fc(self.forward_features(x))


def _trojan(tmp_path: Path, payload: str, in_features: int = 32 * 32 * 3) -> tuple[Path, Path]:
    marker = tmp_path / f"marker-{payload}"
    module = (_WritesOnLoad if payload == "setstate" else _WritesOnForward)(str(marker))
    path = tmp_path / f"trojan-{payload}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, not gone
        torch.jit.save(torch.jit.script(_Trojan(module, in_features).eval()), path)
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize("payload", ["setstate", "forward"])
def test_torchscript_that_writes_a_file_is_refused_unless_trusted(tmp_path, payload):
    path, marker = _trojan(tmp_path, payload)
    assert checkpoint_format(path) == "torchscript"
    with pytest.raises(ModelError, match=r"TorchScript runs the code .*--trust-checkpoint-code"):
        load_checkpoint(path, _photos(side=32))
    with pytest.raises(ModelError, match="TorchScript runs the code"):  # --arch does not route around it
        load_checkpoint(path, _photos(side=32), arch="resnet18")
    assert not marker.exists()
    load_checkpoint(path, _photos(side=32), trust_code=True)  # the trusted path does run the file's code
    assert marker.exists()


@pytest.mark.parametrize("payload", ["setstate", "forward"])
def test_torchscript_uploaded_in_the_app_is_refused_and_never_runs(tmp_path, cache_dir, payload):
    path, marker = _trojan(tmp_path, payload, in_features=8 * 8 * 3)
    with pytest.raises(ModelError, match="is a TorchScript program: loading it would run its code"):
        prepare_audit(
            SetupChoices(model="checkpoint", checkpoint=path.read_bytes(), checkpoint_name="net.pt", builtin="digits"),
            tmp_path / "home",
        )
    assert not marker.exists() and list((tmp_path / "home").iterdir()) == []  # refused before any job or project
    # The engine refuses it too, should a TorchScript checkpoint reach an audit some other way:
    with pytest.raises(ModelError, match="TorchScript runs the code"):
        audit("digits", AuditSettings(model=str(path), limit=60, map_method="none"), cache_dir=cache_dir)
    assert not marker.exists()


def test_safetensors_state_dict_loads_and_needs_an_arch(tmp_path):
    from safetensors.torch import save_file

    photos = _photos(side=32)
    net = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    path = tmp_path / "r18.safetensors"
    save_file(net.state_dict(), str(path))
    assert checkpoint_format(path) == "safetensors"
    model = load_checkpoint(path, photos, arch="resnet18")
    x = torch.as_tensor(photos.x)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), net(model.preprocess(x)).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelError, match="is a safetensors file: give the torchvision architecture"):
        load_checkpoint(path, photos)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelError, match="Cannot read .* as safetensors"):
        load_checkpoint(tmp_path / "bad.safetensors", photos, arch="resnet18")


def test_checkpoint_format_reads_the_file_not_its_name(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "a.ts")
    torch.jit.save(torch.jit.script(_Scripted().eval()), tmp_path / "b.pth")
    (tmp_path / "c.pt").write_bytes(pickle.dumps({"w": 1}))
    (tmp_path / "d.safetensors").write_bytes((tmp_path / "b.pth").read_bytes())  # TorchScript renamed
    (tmp_path / "e.safetensors").write_bytes(b"not a checkpoint")
    formats = [
        checkpoint_format(tmp_path / name) for name in ("a.ts", "b.pth", "c.pt", "d.safetensors", "e.safetensors")
    ]
    assert formats == ["torch-zip", "torchscript", "other", "torchscript", "safetensors"]
    with pytest.raises(ModelError, match="trust"):  # refused as code, not misread as a damaged safetensors file
        load_checkpoint(tmp_path / "d.safetensors", _photos(side=32))
    with pytest.raises(ModelError, match="is a state dict: give the torchvision architecture"):
        load_checkpoint(tmp_path / "a.ts", _photos(side=32))


@pytest.mark.parametrize("payload", ["setstate"])
def test_the_command_line_needs_the_trust_flag_for_torchscript(tmp_path, cache_dir, payload, digits, capsys):
    from ogaudit.cli import main

    path, marker = _trojan(tmp_path, payload, in_features=8 * 8 * 3)
    three = np.flatnonzero(digits.y < 3)[:60]  # the trojan's head has 3 outputs
    np.savez(tmp_path / "three.npz", x=digits.x[three], y=digits.y[three])
    argv = ["scan", str(tmp_path / "three.npz"), "--model", str(path), "--map", "none", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "refused"), "--cache-dir", str(cache_dir)]) == 3
    assert "--trust-checkpoint-code" in capsys.readouterr().err and not marker.exists()
    out = tmp_path / "trusted"
    assert main([*argv, "--out", str(out), "--cache-dir", str(cache_dir), "--trust-checkpoint-code"]) == 0
    assert marker.exists()  # what the flag's help says: the file's code ran


# ---------------------------------------------------------------- recipes: a model rebuilt from its weights elsewhere


def _perturbed(model):
    """Weights and buffers moved off their initial values, so that a rebuild that ignored them would differ."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.add_(0.01 * torch.randn(tensor.shape, generator=generator))
        for tensor in model.buffers():  # scaled, so variances stay positive
            if tensor.is_floating_point():
                tensor.mul_(1 + 0.01 * torch.rand(tensor.shape, generator=generator))
    return model


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_a_model_rebuilt_from_its_recipe_and_state_dict_gives_the_same_outputs(digits, kind):
    data = digits.subset(np.arange(64))
    if kind == "mlp":
        data = dataset_from_arrays(data.x.reshape(64, -1).astype(np.float32) / 16, data.y)
    model = _perturbed(build_model(kind, data, seed=3)).eval()
    recipe = model_recipe(model)
    assert json.loads(json.dumps(recipe)) == recipe  # plain JSON: no pickled code travels
    rebuilt = rebuild_model(recipe, model.state_dict())
    x = torch.as_tensor(data.x)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert not rebuilt.training and rebuilt.kind == kind


def test_the_pretrained_backbone_rebuilds_frozen_with_its_trained_head():
    photos = _photos(n=2, side=64)
    model = _perturbed(build_model("efficientnet", photos, seed=0)).eval()  # head and backbone off their init
    rebuilt = rebuild_model(model_recipe(model), model.state_dict())
    x = torch.as_tensor(photos.x)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert rebuilt.trainable == "head" and not any(p.requires_grad for p in rebuilt.body.parameters())
    assert all(p.requires_grad for p in rebuilt.head.parameters())


def test_a_frozen_backbone_and_a_torchvision_checkpoint_rebuild_with_their_frozen_parameters(tmp_path):
    photos = _photos(side=32)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3).state_dict(), tmp_path / "r18.pt")
    model = load_checkpoint(tmp_path / "r18.pt", photos, arch="resnet18")
    model.body.layer1.requires_grad_(False)  # which parameters take gradients decides projected layer gradients
    rebuilt = rebuild_model(model_recipe(model), model.state_dict())
    x = torch.as_tensor(photos.x)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    frozen = {name for name, p in rebuilt.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, p in model.named_parameters() if not p.requires_grad} and frozen


def test_a_recipe_refuses_torchscript_and_weights_that_do_not_fit(tmp_path, digits):
    torch.jit.save(torch.jit.script(_Scripted().eval()), tmp_path / "m.ts")
    scripted = load_checkpoint(tmp_path / "m.ts", _photos(side=32), trust_code=True)
    with pytest.raises(ModelError, match="TorchScript.*local engine"):
        model_recipe(scripted)
    model = build_model("cnn", digits, seed=0)
    state = model.state_dict()
    state["head.weight"] = state["head.weight"][:5]
    with pytest.raises(ModelError, match="do not fit the cnn"):
        rebuild_model(model_recipe(model), state)
