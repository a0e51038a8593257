"""Peer benchmark on Fashion-MNIST: ogaudit's detectors against loss, cleanlab (in-sample and 5-fold
cross-validated) and captum's TracInCPFast, then trim-and-retrain, then gradient extraction and UMAP scale rows.

Run (the full protocol):
    .venv/bin/python benchmarks/bench_peers.py --seeds 3 --samples 20000 --write-docs

Prints, in one run:
1. detection of 20% planted noise (symmetric and class-pair) over ``--seeds`` seeds, each seed drawing its own
   ``--samples`` subset of the 60k training images and its own noise: AUROC, average precision, precision and
   recall at the 5% budget and at the true noise rate (mean ± std), and each method's wall time, training included;
2. trim and retrain: clean Fashion-MNIST test accuracy of the model trained on the noisy data vs the same recipe
   retrained after removing each method's top 5%;
3. gradient extraction throughput of the small CNN and the EfficientNet-Lite0 backbone (bare forward pass, closed
   form, multi-layer engine, the paper's batch-1 loops), and UMAP wall time at 10k and 60k points.

Every training (the audited model, each cross-validation fold, each retrain) is cached under ``--cache-dir``
with the wall time it took when it ran, so a repeated run reuses it and reports the same times. Timings are
from the run that trained; the machine is shared, so they carry its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ogaudit.cache.artifacts import default_cache_dir
from ogaudit.data.builtins import load_fashion_mnist
from ogaudit.data.dataset import Dataset
from ogaudit.data.load import load_dataset
from ogaudit.data.noise import inject_label_noise
from ogaudit.detectors.base import flag_budget
from ogaudit.detectors.metrics import detection_metrics
from ogaudit.detectors.outliers import DEFAULT_DETECTOR, DETECTORS, make_detector
from ogaudit.gradients import HeadEvidence
from ogaudit.models.nets import build_model
from ogaudit.models.training import (
    TrainSettings,
    batched_features,
    load_model_state,
    model_cache_key,
    train_model,
)
from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.settings import auto_epochs
from ogaudit.storage import atomic_path, fingerprint

NOISE_RATE = 0.2
BUDGET = 0.05
FOLDS = 5
KINDS = ("symmetric", "pairs")
PEERS = ("cleanlab (in-sample)", "cleanlab (5-fold CV)", "captum TracInCPFast")
METRICS = (
    ("auroc", "AUROC"),
    ("average_precision", "AP"),
    ("precision_at_budget", "P@5%"),
    ("recall_at_budget", "R@5%"),
    ("precision_at_noise_rate", "P=R@20%"),
)
TIMING_CAVEAT = (
    "One run, not interleaved, so the ratios carry the machine's load at that moment; bench_engine.py's "
    "interleaved rounds (small CNN, best of 5) are the careful measurement."
)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


# ---------------------------------------------------------------- cached trainings


def _sidecar(cache: Path, name: str) -> Path:
    return cache / "bench-peers" / f"{name}.json"


def _load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _save_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(payload))


def noisy_dataset(samples: int, seed: int, kind: str) -> Dataset:
    subset = load_dataset("fashion-mnist", limit=samples, seed=seed)
    return inject_label_noise(subset, NOISE_RATE, kind=kind, seed=seed)


def audited_model(dataset: Dataset, seed: int, cache: Path, epochs: int | None = None):
    """The audit's own model and head evidence (pipeline cache), with the train and gradient times of the run
    that trained it."""
    key = model_cache_key(dataset, "cnn", TrainSettings(epochs=epochs, seed=seed))
    side = _sidecar(cache, f"main-{key}")
    start = time.perf_counter()
    result = audit(dataset, AuditSettings(model="cnn", seed=seed, epochs=epochs, map_method="none"), cache_dir=cache)
    wall = time.perf_counter() - start
    timings = result.record["timings_s"]
    if not result.record["model"]["cached"] or not side.exists():
        if result.record["model"]["cached"]:
            print(f"  (no recorded training time for {key}: its model was cached before this benchmark)")
        _save_json(side, {"timings_s": timings, "wall_s": wall})
    recorded = _load_json(side)["timings_s"]
    model = build_model("cnn", dataset, seed=seed)
    load_model_state(model, cache / "models" / f"{key}.pt")
    return result.evidence, model, key, recorded


def train_and_predict(train: Dataset, seed: int, inputs: np.ndarray, epochs: int | None) -> tuple[np.ndarray, float]:
    """Train the audit's recipe (small CNN, auto epochs, seed) on ``train``; softmax probabilities on ``inputs``."""
    start = time.perf_counter()
    model = build_model("cnn", train, seed=seed)
    train_model(model, train, TrainSettings(epochs=epochs, seed=seed))
    features = batched_features(model, inputs)
    with torch.no_grad():
        probs = torch.softmax(model.head(torch.as_tensor(features)), dim=1).numpy()
    return probs, time.perf_counter() - start


def cross_validated_probs(
    dataset: Dataset, seed: int, cache: Path, epochs: int | None = None, *, folds: int = FOLDS
) -> tuple[np.ndarray, float]:
    """Out-of-fold probabilities from ``folds`` trainings (stratified by ``dataset.y``), each sample scored by the
    fold that did not train on it; total wall time of the folds. Cached by the data, seed, folds and epochs.

    Each fold trains as many epochs as the audited model did on all the data (not its own, larger automatic
    count), so cleanlab's cross-validation is charged no more passes than the recipe needs."""
    from sklearn.model_selection import StratifiedKFold

    epochs = epochs or auto_epochs(len(dataset))

    path = cache / "bench-peers" / f"cv-{fingerprint('cv-v1', dataset.fingerprint(), seed, folds, epochs)}.npz"
    if path.exists():
        stored = np.load(path)
        return stored["probs"], float(stored["seconds"])
    probs = np.zeros((len(dataset), dataset.n_classes), dtype=np.float32)
    seconds = 0.0
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(dataset.y, dataset.y)
    for fold, (train_rows, held_rows) in enumerate(splits):
        fold_probs, took = train_and_predict(dataset.subset(train_rows), seed, dataset.x[held_rows], epochs)
        probs[held_rows] = fold_probs
        seconds += took
        print(f"    fold {fold + 1}/{folds}: {took:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, probs=probs, seconds=seconds)
    return probs, seconds


def retrained_accuracy(
    dataset: Dataset, keep: np.ndarray, seed: int, test: Dataset, cache: Path, epochs: int | None = None
) -> float:
    """Clean test accuracy of the recipe trained on ``dataset`` rows ``keep``; cached by the kept data."""
    kept = dataset.subset(np.flatnonzero(keep))
    side = _sidecar(cache, f"retrain-{fingerprint('retrain-v1', kept.fingerprint(), seed, epochs)}")
    stored = _load_json(side)
    if stored is None:
        probs, took = train_and_predict(kept, seed, test.x, epochs)
        stored = {"accuracy": float((probs.argmax(1) == test.y).mean()), "seconds": took}
        _save_json(side, stored)
    return stored["accuracy"]


# ---------------------------------------------------------------- peers


def cleanlab_scores(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """cleanlab's label-quality score (self-confidence by default), flipped so that higher = more suspicious."""
    from cleanlab.rank import get_label_quality_scores

    return 1.0 - get_label_quality_scores(labels, probs)


def tracin_self_influence(model, dataset: Dataset, checkpoint: Path) -> np.ndarray:
    """captum's TracInCPFast self-influence on the final linear layer, one checkpoint (the trained model)."""
    from captum.influence import TracInCPFast
    from torch.utils.data import TensorDataset

    train = TensorDataset(torch.as_tensor(dataset.x), torch.as_tensor(dataset.y))
    tracin = TracInCPFast(
        model,
        model.head,
        train,
        [str(checkpoint)],
        loss_fn=torch.nn.CrossEntropyLoss(reduction="sum"),
        batch_size=256,
    )
    return tracin.self_influence(outer_loop_by_checkpoints=False).detach().numpy()


def score_methods(
    dataset: Dataset, audited: tuple, seed: int, cache: Path, epochs: int | None = None, with_cv: bool = True
) -> dict[str, tuple[np.ndarray, float]]:
    """Every method's scores (higher = more suspicious) and total wall time, training included; ``audited`` is
    :func:`audited_model`'s result for ``dataset``."""
    evidence, model, key, timings = audited
    base = timings["train"] + timings["gradients"]
    methods = {}
    for name in DETECTORS:
        start = time.perf_counter()
        scores = make_detector(name, seed=seed).fit(evidence).outlier_scores(evidence)
        methods[name] = (scores, base + time.perf_counter() - start)
    start = time.perf_counter()
    methods[PEERS[0]] = (cleanlab_scores(dataset.y, evidence.probs), base + time.perf_counter() - start)
    if with_cv:
        cv_probs, cv_seconds = cross_validated_probs(dataset, seed, cache, epochs)
        start = time.perf_counter()
        methods[PEERS[1]] = (cleanlab_scores(dataset.y, cv_probs), cv_seconds + time.perf_counter() - start)
    start = time.perf_counter()
    try:
        influence = tracin_self_influence(model, dataset, cache / "models" / f"{key}.pt")
        methods[PEERS[2]] = (influence, timings["train"] + time.perf_counter() - start)
    except Exception as error:  # a peer library failing must not stop the benchmark; say why instead
        print(f"  captum TracInCPFast did not run: {type(error).__name__}: {error}")
    return methods


# ---------------------------------------------------------------- the default detector

SWEEP = (10, 20, 40)
TRIED = """What else was tried before choosing. On the 20k models of seed 0 (auto epochs; average precision,
symmetric / class-pair; cleanlab 5-fold CV 0.963 / 0.596 there): the previous default `consensus` (`log cf-ratio +
log neighbour disagreement + loss`) 0.961 / 0.729, with the loss weighted 1.5× 0.963 / 0.711, 2× 0.964 / 0.700;
the posterior with the neighbours' histogram squared 0.966 / 0.727; the posterior plus half its own
counterfactual log ratio 0.965 / 0.750; plus the log of the mean training-time `‖p − e_y‖` 0.969 / 0.721; loss alone
0.963 / 0.641; `cf-ratio` 0.912 / 0.821; the plain posterior 0.969 / 0.716. Adding the counterfactual ratio gains
under pair noise and loses under symmetric noise, where cross-validated cleanlab is hardest to beat; the trajectory
term gains a little on both but needs a training run (a user's checkpoint has none). The plain posterior has one
parameter and works for every model, so it is the default; `cf-ratio` stays one option away for pair-heavy data.
It was chosen on seed 0 alone; seeds 1 and 2 (in the tables above and below) were run after the choice.

Earlier, at 10k samples and 4 epochs (seed 0; symmetric / class-pair): `l2` 0.862 / 0.643; loss 0.940 / 0.557;
`‖p − e_y‖` alone 0.922 / 0.694; probability margin `max_{c≠y} p_c − p_y` 0.891 / 0.728; `cf-ratio` 0.862 / 0.747;
`cf-ratio × ‖h̃‖` 0.850 / 0.735; `‖p − e_y‖` × feature norm divided by its class median (given class) 0.842 / 0.639,
(predicted class) 0.852 / 0.635; logit margin `log p_ĉ − log p_y` 0.941 / 0.632; mean over training epochs of
`‖p − e_y‖` 0.925 / 0.657, of the full norm `‖p − e_y‖ ‖h̃‖` (TracIn-style over the trajectory) 0.757 / 0.579, over
the first half of training 0.639 / 0.487; cosine to the class-mean gradient direction 0.932 / 0.299; `neighbours`
alone 0.871 / 0.582; rank-average(loss, `cf-ratio × ‖h̃‖`) 0.924 / 0.679; loss × `cf-ratio` 0.923 / 0.702."""


def neighbour_count_sweep(evidence, is_noisy: np.ndarray) -> dict[int, float]:
    """Average precision of the default ``posterior`` for each neighbour count in ``SWEEP``."""
    from sklearn.metrics import average_precision_score

    from ogaudit.detectors.outliers import NeighbourPosteriorDetector

    return {
        k: float(
            average_precision_score(is_noisy, NeighbourPosteriorDetector(k=k).fit(evidence).outlier_scores(evidence))
        )
        for k in SWEEP
    }


def default_summary(detection, cv_times, sweep, seeds) -> str:
    """What the default is, why, and how it compares with cleanlab on cross-validated probabilities."""
    lines = [
        f"### The default detector: `{DEFAULT_DETECTOR}`",
        "",
        "`posterior` scores `−log π(y)`, where `π ∝ p ⊙ q` fuses two views of each sample's true label:",
        "",
        "* `p`, the model's softmax: the factor `p − e_y` of the last-layer gradient `g(y) = (p − e_y) ⊗ [h, 1]`;",
        "* `q`, the label histogram of the 20 samples whose gradients point the most the same way (cosine of the "
        "gradient's feature factor `h`), Laplace-smoothed: `q_c = (#neighbours labelled c + 1) / (20 + C)`.",
        "",
        "`π(y)` is how likely the given label is by the model and the gradient neighbours together, so "
        "`exp(−score)` reads as a probability, and the suggested label is `argmax π`. The model's softmax alone "
        "misses flips it has partly memorised (its in-sample probabilities are what cross-validation exists to "
        "avoid); the neighbours' labels alone miss a flip whose neighbours share the wrong label. A flip has to "
        "fool both to hide, and no extra training is needed: one training, one forward pass, one neighbour "
        "search. The one parameter, the neighbour count, was left at the `neighbours` detector's 20 (not tuned); "
        "the sweep shows how little it matters:",
        "",
        "| noise | " + " | ".join(f"k = {k}" for k in SWEEP) + " |",
        "|---|" + "---|" * len(SWEEP),
    ]
    for kind in KINDS:
        cells = [mean_std([run[w] for run in sweep[kind]]) for w in SWEEP]
        lines.append(f"| {kind} (AP, seeds {seeds}) | " + " | ".join(cells) + " |")
    lines += ["", "Against cleanlab on 5-fold cross-validated probabilities, same seeds (those that ran CV):", ""]
    for kind in KINDS:
        ours, theirs = detection[kind].get(DEFAULT_DETECTOR), detection[kind].get(PEERS[1])
        if not ours or not theirs:
            continue
        n = len(theirs)
        ap_ours = [r["average_precision"] for r in ours[:n]]
        ap_theirs = [r["average_precision"] for r in theirs]
        time_ratio = [a["seconds"] / b["seconds"] for a, b in zip(ours[:n], theirs)]
        wins = sum(a >= b for a, b in zip(ap_ours, ap_theirs))
        verdict = "meets" if max(time_ratio) <= 1 / 3 else "misses"
        lines.append(
            f"* {kind}: AP {mean_std(ap_ours)} vs {mean_std(ap_theirs)} (default ≥ CV on {wins}/{n} seeds), "
            f"at {mean_std(time_ratio, 2)} of its wall time ({verdict} the ≤ 1/3 target)."
        )
    lines += [
        "",
        "In work done, the default trains once on N samples and cleanlab CV five times on 0.8 N for the same "
        "epochs: 1/4 of the sample passes, plus a forward pass and the neighbour search. The measured wall-time "
        "ratio also carries the machine's load while each training ran (the spread of the wall-time column).",
    ]
    lines += ["", TRIED]
    return "\n".join(lines)


# ---------------------------------------------------------------- tables


def mean_std(values: list[float], digits: int = 3) -> str:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def detection_table(results: dict[str, list[dict]], cv_time: list[float]) -> str:
    lines = [
        "| method | seeds | " + " | ".join(label for _, label in METRICS) + " | wall time (s) | time ÷ cleanlab CV |",
        "|---|---|" + "---|" * (len(METRICS) + 2),
    ]
    ordered = sorted(results, key=lambda name: -np.mean([r["average_precision"] for r in results[name]]))
    for name in ordered:
        rows = results[name]
        label = f"**{name}** (default)" if name == DEFAULT_DETECTOR else name
        cells = [mean_std([r[key] for r in rows]) for key, _ in METRICS]
        seconds = [r["seconds"] for r in rows]
        ratio = [s / c for s, c in zip(seconds, cv_time)]  # NaN where that seed had no cross-validation
        lines.append(
            f"| {label} | {len(rows)} | " + " | ".join(cells) + f" | {mean_std(seconds, 0)} | {mean_std(ratio, 2)} |"
        )
    return "\n".join(lines)


def retrain_table(accuracy: dict[str, list[float]]) -> str:
    lines = ["| training data | test accuracy | change vs noisy |", "|---|---|---|"]
    noisy = np.asarray(accuracy["all noisy data (no removal)"])
    for name, values in accuracy.items():
        # seeds run in order, so a method run on fewer seeds (cleanlab CV) pairs with the first noisy models
        delta = "" if name.startswith("all noisy") else mean_std(list(np.asarray(values) - noisy[: len(values)]))
        lines.append(f"| {name} | {mean_std(values)} | {delta} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- scale


def gradient_rows(model, images: Dataset, layers: tuple[str, str], loop_count: int) -> tuple[list[str], dict]:
    """Table rows (samples/s) of a bare forward pass (batch 64 and batch 1), the closed form, the multi-layer
    engine over ``layers`` and batch-1 loops, on ``images`` (loops on the first ``loop_count``; one run)."""
    from ogaudit.gradients import reference_last_layer_gradients
    from ogaudit.gradients.layers import LayerGradientSettings, project_layer_gradients, reference_layer_gradients

    torch.set_grad_enabled(True)
    model.eval()
    x, y = images.x, images.y
    engine_settings = LayerGradientSettings(layers, dim=4096, batch_size=64)

    def bare():
        with torch.no_grad():
            for start in range(0, len(x), 64):
                model(torch.as_tensor(x[start : start + 64]))

    def bare_single():
        with torch.no_grad():
            for row in range(loop_count):
                model(torch.as_tensor(x[row : row + 1]))

    def closed():
        features = batched_features(model, x, batch_size=64)
        with torch.no_grad():
            logits = model.head(torch.as_tensor(features)).numpy()
        return HeadEvidence.from_head(features, logits, y).gradients()

    def rate(work, n: int) -> tuple[float, object]:
        start = time.perf_counter()
        result = work()
        return n / (time.perf_counter() - start), result

    bare()  # warm-up: first-call allocations
    rates = {"bare": rate(bare, len(x))[0], "single": rate(bare_single, loop_count)[0]}
    rates["closed"], fast = rate(closed, len(x))
    rates["engine"], _ = rate(lambda: project_layer_gradients(model, x, y, engine_settings), len(x))
    rates["loop"], slow = rate(
        lambda: reference_last_layer_gradients(model, x[:loop_count], y[:loop_count]), loop_count
    )
    rates["deep_loop"], _ = rate(
        lambda: reference_layer_gradients(model, x[:loop_count], y[:loop_count], layers), loop_count
    )
    rates["agree"] = float(np.abs(fast[:loop_count] - slow).max())
    rates["parameters"] = sum(p.numel() for name in layers for p in model.get_submodule(name).parameters())
    names = " + ".join(f"`{name}`" for name in layers)
    rows = [
        ("bare batched forward pass (batch 64)", "bare"),
        ("bare forward pass, batch 1", "single"),
        ("closed-form last-layer gradients (materialised)", "closed"),
        (f"multi-layer engine, {names}, D = {engine_settings.dim}", "engine"),
        ("batch-1 autograd loop, last layer (the paper's way)", "loop"),
        (f"batch-1 autograd loop, {names}", "deep_loop"),
    ]
    return [f"| {label} | {rates[key]:.1f} | {rates[key] / rates['bare']:.2f} |" for label, key in rows], rates


def gradient_extraction(cnn, effnet_count: int, effnet_loop: int) -> str:
    """The small CNN (first seed's model) and EfficientNet-Lite0 (ImageNet weights, frozen), same code."""
    cnn_images = load_dataset("fashion-mnist", limit=4096, seed=0)
    cnn_rows, cnn = gradient_rows(cnn, cnn_images, ("body.fc", "head"), 512)
    images = load_dataset("fashion-mnist", limit=effnet_count, seed=0)
    effnet = build_model("efficientnet", images, seed=0)
    effnet_rows, eff = gradient_rows(effnet, images, ("body.net._conv_head", "head"), effnet_loop)
    lines = [
        f"Small CNN: the first seed's symmetric-noise model, {len(cnn_images):,} Fashion-MNIST images, batch-1 loops "
        f"on the first 512; multi-layer rows over `body.fc` + `head` ({cnn['parameters']:,} parameters). "
        f"EfficientNet-Lite0: ImageNet weights, frozen, {effnet_count} images upscaled to "
        f"{effnet.preprocess.size} px, loops on the first {effnet_loop}; multi-layer rows over the 1×1 `_conv_head` "
        f"convolution + `head` ({eff['parameters']:,} parameters). Largest closed-form vs loop difference "
        f"{cnn['agree']:.1e} (CNN), {eff['agree']:.1e} (EfficientNet).",
        "",
        "| model | path | samples/s | relative to bare forward |",
        "|---|---|---|---|",
        *(f"| small CNN {row}" for row in cnn_rows),
        *(f"| EfficientNet-Lite0 {row}" for row in effnet_rows),
        "",
        "| model | closed form ÷ bare forward (throughput) | closed form ÷ last-layer loop | engine ÷ loop, same layers |",
        "|---|---|---|---|",
    ]
    for label, r in (("small CNN", cnn), ("EfficientNet-Lite0", eff)):
        lines.append(
            f"| {label} | {r['closed'] / r['bare']:.2f} | {r['closed'] / r['loop']:.1f}× | "
            f"{r['engine'] / r['deep_loop']:.1f}× |"
        )
    lines += [
        "",
        "The EfficientNet backbone is frozen, so every backward pass stops at the first chosen layer and every path "
        "costs about one backbone forward pass per sample: what the closed form and the engine add over the loops "
        "there is batching, which is worth "
        f"{eff['bare'] / eff['single']:.2f}× per sample on this CPU (forward pass, batch 64 vs batch 1); for the "
        f"small CNN it is worth {cnn['bare'] / cnn['single']:.2f}×, and its loops also pay a backward pass per "
        "sample. " + TIMING_CAVEAT,
    ]
    return "\n".join(lines)


def umap_rows(model, sizes: tuple[int, ...]) -> str:
    """UMAP wall time over last-layer gradients of the first seed's model, warm (numba compiled first)."""
    from ogaudit.map.layout import gradient_map, start_umap_warm_up

    start = time.perf_counter()
    start_umap_warm_up().join()
    warm = time.perf_counter() - start
    full = load_fashion_mnist("train")
    lines = ["| points | gradient dims | UMAP wall time (s) |", "|---|---|---|"]
    for size in sizes:
        data = full if size >= len(full) else load_dataset("fashion-mnist", limit=size, seed=0)
        features = batched_features(model, data.x)
        with torch.no_grad():
            logits = model.head(torch.as_tensor(features)).numpy()
        vectors = HeadEvidence.from_head(features, logits, data.y).gradients()
        start = time.perf_counter()
        gradient_map(vectors, method="umap", seed=0)
        lines.append(f"| {len(data):,} | {vectors.shape[1]} | {time.perf_counter() - start:.1f} |")
        del vectors
    lines.append("")
    lines.append(
        f"Rows normalised, PCA to 50 dims, then UMAP (`random_state` set, so one thread); numba compilation "
        f"({warm:.0f} s in this process) was paid before timing. umap-learn runs 500 optimisation epochs up to "
        "10,000 points and 200 above. Vectors: last-layer "
        "gradients under the first seed's symmetric-noise model."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def machine() -> str:
    import captum
    import cleanlab
    import sklearn

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared; load average "
        f"{load:.1f} at the end), no GPU; Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"cleanlab {cleanlab.__version__}, captum {captum.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..seeds-1 (subset, noise and training)")
    parser.add_argument("--samples", type=int, default=20000, help="training subset drawn from the 60k")
    parser.add_argument("--epochs", type=int, default=None, help="fixed epochs for every training (default: auto)")
    parser.add_argument("--cv-seeds", type=int, default=None, help="seeds that get 5-fold CV (default: all)")
    parser.add_argument("--retrain-seeds", type=int, default=None, help="seeds for trim-and-retrain (default: all)")
    parser.add_argument(
        "--retrain-methods",
        default=None,
        help="comma-separated methods to trim and retrain with (default: the default detector, l2 (the paper's), "
        "loss, cleanlab in-sample and 5-fold CV)",
    )
    parser.add_argument("--skip-retrain", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--effnet-samples", type=int, default=256)
    parser.add_argument("--effnet-loop", type=int, default=64)
    parser.add_argument("--cache-dir", default=str(default_cache_dir()))
    parser.add_argument("--write-docs", action="store_true", help=f"replace the '## Peers' section of {DOCS.name}")
    args = parser.parse_args(argv)
    cache = Path(args.cache_dir)
    seeds = list(range(args.seeds))
    cv_seeds = seeds[: args.cv_seeds] if args.cv_seeds is not None else seeds
    retrain_seeds = seeds[: args.retrain_seeds] if args.retrain_seeds is not None else seeds
    retrain_methods = (
        args.retrain_methods.split(",")
        if args.retrain_methods
        else [DEFAULT_DETECTOR, "l2", "loss", PEERS[0], PEERS[1]]
    )
    started = time.perf_counter()
    test = load_fashion_mnist("test") if not args.skip_retrain else None

    detection: dict[str, dict[str, list[dict]]] = {kind: {} for kind in KINDS}
    cv_times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    retrain: dict[str, dict[str, list[float]]] = {kind: {} for kind in KINDS}
    sweep: dict[str, list[dict[float, float]]] = {kind: [] for kind in KINDS}
    first_model = None
    for seed in seeds:
        for kind in KINDS:
            print(f"seed {seed}, {kind} noise", flush=True)
            dataset = noisy_dataset(args.samples, seed, kind)
            is_noisy = dataset.true_y != dataset.y
            audited = audited_model(dataset, seed, cache, args.epochs)
            evidence, model = audited[:2]
            methods = score_methods(dataset, audited, seed, cache, args.epochs, with_cv=seed in cv_seeds)
            cv_times[kind].append(methods[PEERS[1]][1] if PEERS[1] in methods else float("nan"))
            sweep[kind].append(neighbour_count_sweep(evidence, is_noisy))
            for name, (scores, seconds) in methods.items():
                row = detection_metrics(is_noisy, scores, budget=BUDGET)
                row["seconds"] = seconds
                detection[kind].setdefault(name, []).append(row)
            print(
                "  AP: " + ", ".join(f"{n} {detection[kind][n][-1]['average_precision']:.3f}" for n in methods),
                flush=True,
            )
            if first_model is None:
                first_model = model
            if args.skip_retrain or seed not in retrain_seeds:
                continue
            features = batched_features(model, test.x)
            with torch.no_grad():
                noisy_acc = float((model.head(torch.as_tensor(features)).argmax(1).numpy() == test.y).mean())
            retrain[kind].setdefault("all noisy data (no removal)", []).append(noisy_acc)
            for name in (m for m in retrain_methods if m in methods):
                flagged, _ = flag_budget(methods[name][0], BUDGET)
                accuracy = retrained_accuracy(dataset, ~flagged, seed, test, cache, args.epochs)
                removed_noisy = int(is_noisy[flagged].sum())
                label = f"minus {name}'s top 5%"
                retrain[kind].setdefault(label, []).append(accuracy)
                retrain[kind].setdefault(f"__removed {label}", []).append(removed_noisy / flagged.sum())
                print(f"  retrain without {name}'s 5%: test accuracy {accuracy:.4f} (noisy model {noisy_acc:.4f})")

    sections = [
        "## Peers: detection and trim-and-retrain (`benchmarks/bench_peers.py`)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_peers.py {' '.join(sys.argv[1:] if argv is None else argv)}`"
        f" ({time.perf_counter() - started:.0f} s for this run, cached trainings reused where present).",
        "",
        f"Machine: {machine()}.",
        "",
        f"Data: Fashion-MNIST, {args.samples:,} samples drawn (stratified) from the 60k training images per seed "
        f"(`load_dataset('fashion-mnist', limit={args.samples}, seed=s)`), 20% of the labels flipped by "
        f"`inject_label_noise(kind, seed=s)`; seeds {seeds}. Model: the audit's small CNN, "
        f"{'auto' if args.epochs is None else args.epochs} epochs, AdamW, batch 128. "
        "Mean ± std over seeds. P@5% / R@5%: precision / recall of the top 5% (the default budget); P=R@20%: "
        "precision of the top 20% (= recall, since 20% are noisy). Wall time includes the training each method "
        "needs: one training + one forward pass for ogaudit, loss, cleanlab in-sample and TracIn; five fold "
        "trainings + held-out predictions for cleanlab 5-fold CV.",
        "",
        f"Scope of this run: 5-fold cross-validation on seeds {cv_seeds}; trim-and-retrain on seeds "
        f"{[] if args.skip_retrain else retrain_seeds} for {retrain_methods}. The full protocol is "
        "`.venv/bin/python benchmarks/bench_peers.py --seeds 3 --samples 20000 --write-docs` (auto epochs, every "
        "seed cross-validated and retrained: 6 audited models, 30 fold trainings and up to 6 per retrained method; "
        "methods that flag the same samples share a retrain).",
    ]
    sections += ["", default_summary(detection, cv_times, sweep, seeds)]
    for kind in KINDS:
        title = {"symmetric": "symmetric noise", "pairs": "class-pair noise (Fashion-MNIST confusions)"}[kind]
        sections += ["", f"### Detection, {title}", "", detection_table(detection[kind], cv_times[kind])]
    sections += [
        "",
        "captum's TracInCPFast self-influence with the one (final) checkpoint on the last layer is the squared "
        "last-layer gradient norm, so it ranks samples as `l2` (the paper's "
        "detector) does: the two rows agree up to float rounding, which confirms both implementations.",
    ]
    if not args.skip_retrain:
        sections += [
            "",
            f"### Trim and retrain (seeds {retrain_seeds})",
            "",
            "Clean Fashion-MNIST test accuracy (10k) of the same recipe trained on all noisy samples vs retrained "
            "after removing a method's top 5%. The share of the removed samples that were truly noisy is in "
            "brackets. Each row is one training per seed, and the same recipe's test accuracy moves by a point or "
            "more between seeds on its own: read differences smaller than the ± as training noise.",
        ]
        for kind in KINDS:
            shown = {k: v for k, v in retrain[kind].items() if not k.startswith("__")}
            for key in list(shown):
                removed = retrain[kind].get(f"__removed {key}")
                if removed:
                    shown[f"{key} [{mean_std(removed, 2)} noisy]"] = shown.pop(key)
            sections += ["", f"{kind}:", "", retrain_table(shown)]
    if not args.skip_scale:
        print("scale rows", flush=True)
        sections += [
            "",
            "### Gradient extraction: small CNN and EfficientNet-Lite0",
            "",
            gradient_extraction(first_model, args.effnet_samples, args.effnet_loop),
        ]
        sections += ["", "### Scale: UMAP", "", umap_rows(first_model, (10_000, 60_000))]
    text = "\n".join(sections) + "\n"
    print()
    print(text)
    if args.write_docs:
        write_section(text)
    return 0


def write_section(section: str) -> None:
    """Replace this benchmark's ``## Peers`` sections of docs/BENCHMARKS.md (create it if absent)."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            skipping = line.startswith("## Peers")
        if not skipping:
            kept.append(line)
    body = "\n".join(kept).rstrip() + "\n\n" + section
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(DOCS) as tmp:
        Path(tmp).write_text(body)


if __name__ == "__main__":
    sys.exit(main())
