import threading
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from ogaudit.cache.store import StoredRows
from ogaudit.errors import Cancelled, DataError, ModelError, SettingsError
from ogaudit.gradients.layers import (
    LayerGradientSettings,
    layer_store,
    plan_layer_projection,
    project_full_gradients,
    project_layer_gradients,
    projected_dim,
    reference_layer_gradients,
)

N_SAMPLES = 23


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: on a shared 2-core machine, intra-op threads only add contention (seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 4)).double()


def cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(6, 5, 3, padding=2, dilation=2, padding_mode="reflect"),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Conv2d(5, 4, 2, stride=2, padding="valid", bias=False),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 3),
    ).double()


class SequenceModel(nn.Module):
    """A Linear layer on (N, T, F) inputs, whose per-sample gradient sums over T."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.token = nn.Linear(5, 7)
        self.head = nn.Linear(7, 3)

    def forward(self, x):
        return self.head(torch.relu(self.token(x)).mean(dim=1))


class SharedModel(nn.Module):
    """One Linear layer called twice: its per-sample gradient is the sum of both uses."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.shared = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x)))))


def data(shape: tuple[int, ...], n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N_SAMPLES, *shape)).astype(np.float32), rng.integers(0, n_classes, N_SAMPLES)


CASES = {
    "mlp": (mlp, (12,), 4, ("0", "2")),
    "cnn": (cnn, (2, 8, 8), 3, ("0", "2", "5", "7")),
    "sequence": (SequenceModel, (4, 5), 3, ("token", "head")),
    "shared": (SharedModel, (6,), 3, ("shared", "head")),
}


def assert_close(fast: np.ndarray, reference: np.ndarray) -> None:
    np.testing.assert_allclose(fast, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dim, projection", [(40, "gaussian"), (60, "rademacher")])
def test_engine_matches_batch_one_reference(case, dim, projection):
    make, shape, n_classes, layers = CASES[case]
    model = make()
    x, y = data(shape, n_classes)
    settings = LayerGradientSettings(layers=layers, dim=dim, batch_size=7, projection=projection)
    fast = project_layer_gradients(model, x, y, settings)
    full = reference_layer_gradients(model, x, y, layers)
    assert fast.shape == (N_SAMPLES, projected_dim(model, settings)) and fast.dtype == np.float32
    assert not all(plan.identity for plan in plan_layer_projection(model, settings))
    assert_close(fast, project_full_gradients(full, model, settings))


@pytest.mark.parametrize("case", sorted(CASES))
def test_identity_projection_gives_the_raw_gradients(case):
    make, shape, n_classes, layers = CASES[case]
    model = make()
    x, y = data(shape, n_classes)
    settings = LayerGradientSettings(layers=layers, dim=100_000, batch_size=10)
    assert all(plan.identity for plan in plan_layer_projection(model, settings))
    fast = project_layer_gradients(model, x, y, settings)
    full = reference_layer_gradients(model, x, y, layers)
    assert fast.shape == full.shape
    np.testing.assert_allclose(fast, full.astype(np.float32), rtol=1e-6, atol=1e-7 * np.abs(full).max())
    np.testing.assert_array_equal(project_full_gradients(full, model, settings), full.astype(np.float32))


def test_projection_preserves_inner_products_on_average():
    model = cnn()
    x, y = data((2, 8, 8), 3)
    full = reference_layer_gradients(model, x, y, ("2",))
    gram = full @ full.T
    estimates = []
    for seed in range(30):
        settings = LayerGradientSettings(layers=("2",), dim=64, seed=seed)
        projected = project_full_gradients(full, model, settings).astype(np.float64)
        estimates.append(projected @ projected.T)
    error = np.abs(np.mean(estimates, axis=0) - gram).max() / np.abs(gram).max()
    assert error < 0.15


def test_plan_shares_the_requested_dimension():
    model = cnn()
    settings = LayerGradientSettings(layers=("0", "2", "5", "7"), dim=220)
    plans = plan_layer_projection(model, settings)
    assert [plan.name for plan in plans] == ["0", "2", "5", "7"]
    assert [plan.full_dim for plan in plans] == [6 * 19, 5 * 55, 4 * 20, 3 * 17]
    assert projected_dim(model, settings) == 216
    # Smallest first: the head (51) fits in its share (55) and is kept exact; the others project one side.
    assert [(plan.k_out, plan.k_in) for plan in plans] == [(6, 9), (5, 11), (4, 14), (3, 17)]
    assert plans[3].identity
    offsets = np.cumsum([0] + [plan.dim for plan in plans[:-1]])
    assert [plan.offset for plan in plans] == list(offsets)
    assert all(1 <= plan.k_out <= plan.out_features and 1 <= plan.k_in <= plan.in_features for plan in plans)


def test_inputs_as_loader_function_or_batches_agree():
    model = mlp()
    x, y = data((12,), 4)
    settings = LayerGradientSettings(layers=("0", "2"), dim=50, batch_size=5)
    expected = project_layer_gradients(model, x, y, settings)
    by_function = project_layer_gradients(model, lambda start, stop: torch.as_tensor(x[start:stop]), y, settings)
    batches = [(torch.as_tensor(x[i : i + 4]), y[i : i + 4]) for i in range(0, N_SAMPLES, 4)]
    by_batches = project_layer_gradients(model, batches, y, settings)
    np.testing.assert_allclose(by_function, expected, rtol=1e-6)
    np.testing.assert_allclose(by_batches, expected, rtol=1e-6)
    with pytest.raises(DataError, match="22 samples"):
        project_layer_gradients(model, [x[:10], x[10:22]], y, settings)


def test_frozen_model_works_and_gradients_are_not_accumulated():
    model = mlp()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    x, y = data((12,), 4)
    settings = LayerGradientSettings(layers=("0", "2"), dim=50)
    fast = project_layer_gradients(model, x, y, settings)
    full = reference_layer_gradients(model, x, y, settings.layers)
    assert_close(fast, project_full_gradients(full, model, settings))
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


def counting(model: nn.Module) -> list[int]:
    """Record the batch size of every forward call of ``model``."""
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _module, args: seen.append(len(args[0])))
    return seen


def cancel_after_first_chunk() -> tuple[threading.Event, Callable]:
    cancel = threading.Event()

    def progress(stage, fraction, message):
        assert stage == "layer_gradients"
        if fraction > 0:
            cancel.set()

    return cancel, progress


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    model = cnn()
    x, y = data((2, 8, 8), 3)
    settings = LayerGradientSettings(layers=("0", "7"), dim=60, batch_size=6)
    expected = project_layer_gradients(model, x, y, settings)
    store = layer_store(tmp_path, model, y, settings, inputs_fingerprint="x")
    assert (store.n_rows, store.chunk_rows, store.fields) == (N_SAMPLES, 6, {"gradients": ((60,), "float32")})
    seen = counting(model)
    cancel, progress = cancel_after_first_chunk()
    with pytest.raises(Cancelled):
        project_layer_gradients(model, x, y, settings, store=store, progress=progress, cancel=cancel)
    assert seen == [6] and store.missing() == [1, 2, 3] and (tmp_path / "store.json").exists()

    fractions = []
    reopened = layer_store(tmp_path, model, y, settings, inputs_fingerprint="x")  # as a new run would
    assert reopened.missing() == [1, 2, 3]
    resumed = project_layer_gradients(
        model,
        lambda start, stop: x[start:stop],
        y,
        settings,
        store=reopened,
        progress=lambda stage, fraction, message: fractions.append(fraction),
    )
    assert seen == [6, 6, 6, 5]
    assert fractions[0] == pytest.approx(6 / N_SAMPLES) and fractions[-1] == 1.0
    assert isinstance(resumed, StoredRows) and reopened.complete
    np.testing.assert_array_equal(np.asarray(resumed), expected)  # the same batches: bit-identical

    again = project_layer_gradients(
        model, x, y, settings, store=layer_store(tmp_path, model, y, settings, inputs_fingerprint="x")
    )
    assert seen == [6, 6, 6, 5]
    np.testing.assert_array_equal(again[:], expected)


@pytest.mark.parametrize("change", ["settings", "inputs_fingerprint", "labels", "model"])
def test_stale_store_is_started_over_not_mixed(tmp_path, change):
    model = mlp()
    x, y = data((12,), 4)
    settings = LayerGradientSettings(layers=("0", "2"), dim=50, batch_size=5)
    cancel, progress = cancel_after_first_chunk()
    with pytest.raises(Cancelled):
        store = layer_store(tmp_path, model, y, settings, inputs_fingerprint="a")
        project_layer_gradients(model, x, y, settings, store=store, progress=progress, cancel=cancel)
    fingerprint = "a"
    if change == "settings":
        settings = LayerGradientSettings(layers=("0", "2"), dim=50, batch_size=5, seed=1)
    elif change == "inputs_fingerprint":
        fingerprint, x = "b", x + 1
    elif change == "labels":
        y = (y + 1) % 4
    else:
        with torch.no_grad():
            model[0].weight.mul_(2)
    seen = counting(model)
    store = layer_store(tmp_path, model, y, settings, inputs_fingerprint=fingerprint)
    assert store.missing() == [0, 1, 2, 3, 4]
    result = project_layer_gradients(model, x, y, settings, store=store)
    assert sum(seen) == N_SAMPLES
    np.testing.assert_array_equal(np.asarray(result), project_layer_gradients(model, x, y, settings))


def test_a_store_needs_inputs_read_by_rows_and_its_own_layout(tmp_path):
    model = mlp()
    x, y = data((12,), 4)
    settings = LayerGradientSettings(layers=("0",), dim=20, batch_size=5)
    store = layer_store(tmp_path, model, y, settings, inputs_fingerprint="x")
    batches = [torch.as_tensor(x[i : i + 5]) for i in range(0, N_SAMPLES, 5)]
    with pytest.raises(SettingsError, match="readable by rows"):
        project_layer_gradients(model, batches, y, settings, store=store)
    other = LayerGradientSettings(layers=("0",), dim=20, batch_size=4)
    with pytest.raises(SettingsError, match="layer_store"):
        project_layer_gradients(model, x, y, other, store=store)
    with pytest.raises(DataError, match="22 samples but labels has 23"):
        project_layer_gradients(model, x[:22], y, settings, store=store)


def test_training_mode_is_restored_even_when_cancelled():
    model = cnn()
    model.train()
    model[3].eval()
    modes = [module.training for module in model.modules()]
    x, y = data((2, 8, 8), 3)
    settings = LayerGradientSettings(layers=("2",), dim=30, batch_size=8)
    project_layer_gradients(model, x, y, settings)
    assert [module.training for module in model.modules()] == modes
    cancel, progress = cancel_after_first_chunk()
    with pytest.raises(Cancelled):
        project_layer_gradients(model, x, y, settings, progress=progress, cancel=cancel)
    assert [module.training for module in model.modules()] == modes
    reference_layer_gradients(model, x[:2], y[:2], ("2",))
    assert [module.training for module in model.modules()] == modes


def test_eval_mode_is_used_during_capture():
    model = cnn()
    model.train()
    x, y = data((2, 8, 8), 3)
    settings = LayerGradientSettings(layers=("7",), dim=1000, batch_size=8)
    fast = project_layer_gradients(model, x, y, settings)
    model.eval()
    np.testing.assert_array_equal(fast, project_layer_gradients(model, x, y, settings))


def test_unknown_or_unsupported_layers_are_refused_with_the_choices():
    model = cnn()
    x, y = data((2, 8, 8), 3)
    with pytest.raises(ModelError, match=r"'conv9' is not in the model.*'0', '2', '5', '7'"):
        project_layer_gradients(model, x, y, LayerGradientSettings(layers=("conv9",)))
    with pytest.raises(ModelError, match="'1' is a ReLU"):
        plan_layer_projection(model, LayerGradientSettings(layers=("1",)))
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with pytest.raises(ModelError, match="groups=2"):
        plan_layer_projection(grouped, LayerGradientSettings(layers=("0",)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": ()}, "non-empty"),
        ({"layers": ("a", "a")}, "repeat"),
        ({"layers": ("a", "b"), "dim": 1}, "dim must be"),
        ({"layers": ("a",), "dim": 2.5}, "dim must be"),
        ({"layers": ("a",), "seed": -1}, "seed"),
        ({"layers": ("a",), "batch_size": 0}, "batch_size"),
        ({"layers": ("a",), "projection": "sparse"}, "'gaussian', 'rademacher'"),
    ],
)
def test_settings_are_validated(kwargs, match):
    with pytest.raises(SettingsError, match=match):
        LayerGradientSettings(**kwargs)


def test_single_layer_name_and_bad_labels():
    assert LayerGradientSettings(layers="fc").layers == ("fc",)
    model = mlp()
    x, y = data((12,), 4)
    settings = LayerGradientSettings(layers=("2",), dim=20)
    with pytest.raises(DataError, match="below the number of classes 4"):
        project_layer_gradients(model, x, y + 4, settings)
    with pytest.raises(DataError, match="one label per input"):
        project_layer_gradients(model, x, y[:-1], settings)
