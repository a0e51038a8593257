"""The training trajectory: recorded per epoch from the batches training already computes, exact for any label."""

import numpy as np
import torch

from ogaudit.data.dataset import stratified_subset
from ogaudit.models.nets import build_model
from ogaudit.models.training import Trajectory, early_epoch, train_model
from ogaudit.settings import TrainSettings


def _margin_the_slow_way(logits: np.ndarray, label: int) -> float:
    others = np.delete(logits, label)
    return float(logits[label] - others.max())


def test_mean_margins_of_any_label_match_a_loop_over_epochs_and_classes():
    rng = np.random.default_rng(0)
    n, classes, epochs = 50, 4, 3
    seen = rng.normal(size=(epochs, n, classes)).astype(np.float32)
    seen[1, 5] = [2.0, 2.0, 0.0, -1.0]  # a tie for the top: the margin of either tied class is 0
    labels = rng.integers(0, classes, n)
    trajectory = Trajectory.empty(epochs, n, classes)
    for epoch in range(epochs):
        order = rng.permutation(n)
        for batch in np.array_split(order, 4):  # batches in shuffled order, as training sees them
            trajectory.record(epoch, batch, torch.as_tensor(seen[epoch, batch]), torch.as_tensor(labels[batch]))
    probs = torch.softmax(torch.as_tensor(seen), dim=2).numpy()
    for label_of in (labels, rng.integers(0, classes, n)):  # the given labels and counterfactual ones
        expected = [np.mean([_margin_the_slow_way(seen[e, i], label_of[i]) for e in range(epochs)]) for i in range(n)]
        np.testing.assert_allclose(trajectory.aum(label_of), expected, atol=1e-5)
        expected = [np.mean([_margin_the_slow_way(probs[e, i], label_of[i]) for e in range(epochs)]) for i in range(n)]
        np.testing.assert_allclose(trajectory.mean_margin(label_of), expected, atol=1e-5)
    per_epoch = [[_margin_the_slow_way(seen[e, i], labels[i]) for i in range(n)] for e in range(epochs)]
    np.testing.assert_allclose(trajectory.margins, per_epoch, atol=1e-5)
    np.testing.assert_allclose(trajectory.mean_probs(), probs.mean(axis=0), atol=1e-6)
    again = Trajectory.from_arrays(trajectory.arrays(), n, classes)
    np.testing.assert_array_equal(again.aum(labels), trajectory.aum(labels))


def test_training_records_every_sample_once_per_epoch_and_keeps_an_early_checkpoint(digits):
    data = stratified_subset(digits, 300, seed=0)
    model = build_model("mlp", data, seed=0)
    run = train_model(model, data, TrainSettings(epochs=4, seed=0))
    trajectory = run.trajectory
    assert trajectory.epochs == 4 and trajectory.margins.shape == (4, 300)
    np.testing.assert_allclose(trajectory.mean_probs().sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(trajectory.aum(data.y), trajectory.margins.mean(axis=0), atol=1e-5)
    # the model learns: the given labels' margins grow from the first epoch to the last
    assert trajectory.margins[-1].mean() > trajectory.margins[0].mean()
    assert early_epoch(4) == 1 and early_epoch(8) == 2 and early_epoch(30) == 8
    early = build_model("mlp", data, seed=0)
    early.load_state_dict(run.early_state)
    assert any(not torch.equal(a, b) for a, b in zip(early.state_dict().values(), model.state_dict().values()))
