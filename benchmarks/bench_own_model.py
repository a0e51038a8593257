"""Your own model: the same noisy data audited three ways, side by side.

1. **ogaudit's own model**: ``ogaudit.audit((x, y))``, the small CNN it trains itself (``--epochs``);
2. **your in-memory model**: a small CNN this script trains in plain torch on the same noisy labels, as a user
   would, then ``ogaudit.audit((x, y), model=net)`` (its forward, a hook on its head, nothing trained);
3. **your predictions**: that model's penultimate features and softmax, computed by a plain forward pass, then
   ``ogaudit.score(features, probs, y)`` (no model, no training; what ``--predictions FILE`` reads).

Baseline on the same predictions: ``self-confidence`` (``1 − p(given)``, cleanlab's default label-quality score on
in-sample probabilities). Each row: AUROC, average precision and precision of the flagged 5% against the planted
wrong labels, and wall time (for 2 and 3: the user's own training is listed apart, since they have already paid
it). Fashion-MNIST train images, ``--samples`` of them (stratified), 20% symmetric planted noise.

Run (niced: the machine is shared):
    nice -n 10 .venv/bin/python benchmarks/bench_own_model.py --samples 10000 --epochs 5 [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import ogaudit
from ogaudit.data.builtins import load_fashion_mnist
from ogaudit.data.dataset import stratified_subset
from ogaudit.data.noise import inject_label_noise
from ogaudit.detectors.metrics import detection_metrics

NOISE_RATE = 0.2
BUDGET = 0.05
DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
SECTION = "## Your own model"


class UserCNN(nn.Module):
    """What a user might have written for 28 px grey images: two conv blocks, a hidden layer, a linear head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(128, classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """(N, 28, 28, 1) uint8 → (N, 1, 28, 28) float in [0, 1]: ToTensor()'s convention, the user's preprocessing."""
    return torch.as_tensor(x).permute(0, 3, 1, 2).float() / 255.0


def train_user_model(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> UserCNN:
    torch.manual_seed(seed)
    net = UserCNN()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    inputs, labels = to_tensor(x), torch.as_tensor(y)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), 128):
            index = order[start : start + 128]
            loss = nn.functional.cross_entropy(net(inputs[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


@torch.no_grad()
def user_predictions(net: UserCNN, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features and softmax by the user's own code (no ogaudit)."""
    features, probs = [], []
    for start in range(0, len(x), 512):
        h = net.features(to_tensor(x[start : start + 512]))
        features.append(h.numpy())
        probs.append(torch.softmax(net.classifier(h), dim=1).numpy())
    return np.concatenate(features), np.concatenate(probs)


def row(name: str, is_noisy: np.ndarray, scores: np.ndarray, seconds: float, note: str) -> dict:
    metrics = detection_metrics(is_noisy, scores, budget=BUDGET)
    return {"name": name, **metrics, "seconds": seconds, "note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of both trainings (ogaudit's and the user's)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--write-docs", action="store_true", help="replace the section in docs/BENCHMARKS.md")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (1 on a crowded machine: 2 threads contend)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tempfile

    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="bench-own-model-"))
    full = load_fashion_mnist("train")
    data = stratified_subset(full, args.samples, seed=args.seed)
    noisy = inject_label_noise(data, NOISE_RATE, kind="symmetric", seed=args.seed)
    x, y = noisy.x, noisy.y
    is_noisy = noisy.y != noisy.true_y
    epochs = args.epochs
    load = os.getloadavg()[0]
    rows = []

    start = time.perf_counter()
    own = ogaudit.audit(
        (x, y), ogaudit.AuditSettings(map_method="none", seed=args.seed), cache_dir=cache, progress=False
    )
    seconds = time.perf_counter() - start
    rows.append(
        row(
            "ogaudit's own model", is_noisy, own.scores["score"].to_numpy(), seconds, f"trains its CNN, {epochs} epochs"
        )
    )

    start = time.perf_counter()
    net = train_user_model(x, y, epochs, args.seed)
    user_training = time.perf_counter() - start

    start = time.perf_counter()
    mine = ogaudit.audit(
        (x, y), ogaudit.AuditSettings(map_method="none", seed=args.seed), model=net, cache_dir=cache, progress=False
    )
    seconds = time.perf_counter() - start
    note = f"nothing trained (the user's training, {epochs} epochs: {user_training:.0f} s)"
    rows.append(row("your in-memory model", is_noisy, mine.scores["score"].to_numpy(), seconds, note))

    start = time.perf_counter()
    features, probs = user_predictions(net, x)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    scored = ogaudit.score(features, probs, y, budget=BUDGET, seed=args.seed)
    seconds = time.perf_counter() - start
    note = f"ogaudit.score only; the user's forward pass: {forward:.1f} s"
    rows.append(row("your predictions + features", is_noisy, scored["score"].to_numpy(), seconds, note))
    start = time.perf_counter()
    baseline = ogaudit.score(features, probs, y, detector="self-confidence", budget=BUDGET)
    seconds = time.perf_counter() - start
    rows.append(
        row(
            "baseline: self-confidence, same predictions",
            is_noisy,
            baseline["score"].to_numpy(),
            seconds,
            "1 − p(given)",
        )
    )
    load = max(load, os.getloadavg()[0])

    lines = [
        SECTION,
        "",
        f"Fashion-MNIST, {len(y):,} training images (stratified, seed {args.seed}), {NOISE_RATE:.0%} symmetric planted "
        f"noise ({int(is_noisy.sum()):,} wrong labels), the default detector (`posterior`), {BUDGET:.0%} flagged. "
        "The same noisy labels audited three ways: ogaudit training its own small CNN; the user's own small CNN "
        f"(16/32-channel convolutions, trained by the benchmark in plain torch with Adam, as a user would, {epochs} "
        "epochs as ogaudit's own) passed in "
        "memory with `ogaudit.audit((x, y), model=net)`; and that model's penultimate features and softmax, "
        "computed by the user's own forward pass, given to `ogaudit.score(features, probs, y)` (what "
        "`ogaudit scan DATA --predictions FILE` reads). Wall time is ogaudit's part; the user's training and "
        "forward pass are in the note.",
        "",
        "| audited with | AUROC | AP | precision of the flags | wall time | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['auroc']:.3f} | {r['average_precision']:.3f} | {r['precision_at_budget']:.3f} | "
            f"{r['seconds']:.1f} s | {r['note']} |"
        )
    lines += [
        "",
        f"2 CPU cores shared with other work (load average up to {load:.1f} during the run), one seed: differences "
        "in the third decimal are noise. `nice -n 10 .venv/bin/python benchmarks/bench_own_model.py --samples "
        f"{args.samples} --epochs {epochs} --threads {torch.get_num_threads()} --write-docs` reproduces it.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        docs = DOCS.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(SECTION) + r"\n.*?(?=\n## |\Z)", re.S)
        docs = (
            pattern.sub(lambda _m: text.rstrip("\n") + "\n", docs) if SECTION in docs else docs.rstrip() + "\n\n" + text
        )
        DOCS.write_text(docs, encoding="utf-8")


if __name__ == "__main__":
    main()
