"""``ogaudit scan DATA --out DIR``: train (or load) a model, score every sample, write the project folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ogaudit.results import RunFolder
from ogaudit.settings import (
    DEFAULT_BUDGET,
    DEFAULT_DETECTOR,
    DEFAULT_PROJECTION_DIM,
    DETECTOR_NAMES,
    LLM_ONLY_SCORES,
    LLM_SCORES,
    MAP_METHODS,
    MODEL_KINDS,
    NOISE_KINDS,
    AuditSettings,
    check_budget,
)

EPILOG = """examples:
  ogaudit scan mnist5k --noise-rate 0.1 --out runs/mnist      # built-in demo with 10% planted noise
  ogaudit scan path/to/imagefolder --out runs/mine             # your data, sensible defaults
  ogaudit scan data.npz --detector iforest --budget 200 --out runs/npz
  ogaudit scan tweets --out runs/tweets                        # built-in text: sentiment tweets, real label noise
  ogaudit scan reviews.jsonl --text-column body --label-column stars --out runs/reviews
  ogaudit scan photos.csv --path-column file --label-column species --out runs/photos   # any manifest columns
  ogaudit scan hf_saved_folder --out runs/hf    # a Hugging Face save_to_disk folder (or .parquet/.arrow table)
  ogaudit scan photos/ --model torchvision:resnet18 --weights mine.safetensors --out runs/mine  # your model
  ogaudit scan photos/ --model timm:convnext_atto --weights mine.safetensors --out runs/timm
  ogaudit scan reviews.jsonl --model hf:./my-bert-classifier --out runs/bert   # save_pretrained folder
  ogaudit scan data.npz --predictions preds.npz --out runs/preds  # your model's features + probabilities
  ogaudit scan instruct-tasks --out runs/llm                   # built-in prompt/response pairs, 20% wrong responses
  ogaudit scan pairs.jsonl --model smollm2 --reference test.jsonl --out runs/pairs   # your instruction data
  ogaudit scan pairs.jsonl --model path/to/hf-model-folder --out runs/pairs          # your own causal LM
"""


def _budget(text: str) -> float:
    from ogaudit.errors import SettingsError

    try:
        return check_budget(text)
    except SettingsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_scan_command(subparsers: argparse._SubParsersAction) -> None:
    scan = subparsers.add_parser(
        "scan",
        help="train (or load) a model, score every sample, write the project folder (run.json and its tables)",
        description="Train a model on DATA, take each sample's last-layer loss gradient, flag the outliers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scan.add_argument(
        "data",
        help="built-in (digits, mnist5k, fashion-mnist; text: tweets, rotten-tomatoes; instructions: instruct-tasks), an "
        "ImageFolder dir, a .csv manifest, an .npz, a text table (.csv/.tsv/.jsonl/.parquet with a text and a label "
        "column), or prompt/response pairs (.jsonl with prompt and response fields or chat messages, .csv, .parquet)",
    )
    scan.add_argument("--out", required=True, type=Path, help="project folder to write (the review happens there)")
    scan.add_argument(
        "--model",
        default="auto",
        help=f"{'|'.join(MODEL_KINDS)}, your model: torchvision:NAME or timm:NAME (with --weights FILE), "
        "hf:FOLDER (a Hugging Face image or text classifier saved with save_pretrained: config.json + "
        "safetensors), or a checkpoint path (default auto: MLP for vectors, small CNN for images "
        "up to 64 px, pretrained EfficientNet-Lite0 with a trained head for larger photos, a linear head on frozen "
        "all-MiniLM-L6-v2 embeddings for text); lora: text only, fine-tunes the encoder's top 2 layers with LoRA "
        "and scores the projected gradients of the adapters and head (an encoder pass per epoch: slow on a CPU); "
        "prompt/response pairs: smollm2 (SmolLM2-135M-Instruct, the default for them) or a Hugging Face causal-LM "
        "folder, fine-tuned with LoRA on its top 2 blocks",
    )
    scan.add_argument(
        "--reference",
        help="prompt/response pairs only: held-out pairs (a file or instruct-tasks-test) for the gradient-cosine "
        "score, the influence view and class detection (instruct-tasks uses instruct-tasks-test by default)",
    )
    scan.add_argument(
        "--weights",
        type=Path,
        help="with --model torchvision:NAME or timm:NAME: your trained weights (.safetensors, or a torch.save "
        "state dict read with weights_only=True); audited as they are, nothing trained, nothing downloaded",
    )
    scan.add_argument(
        "--predictions",
        type=Path,
        help="your model's predictions on DATA instead of a model: an .npz (features, probs or logits, optional "
        "sample_ids) or .parquet (features / probs columns, optional sample_id); scored with no training",
    )
    scan.add_argument("--arch", help="torchvision architecture of a state-dict checkpoint, e.g. resnet18")
    scan.add_argument(
        "--trust-checkpoint-code",
        action="store_true",
        help="allow a TorchScript checkpoint: loading it RUNS THE FILE'S CODE with your rights; only for files "
        "you made or trust (state dicts and .safetensors never need this)",
    )
    scan.add_argument(
        "--epochs", type=int, help="training epochs (default: by data size, 5 to 30; fewer above 300k samples)"
    )
    scan.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        choices=sorted(DETECTOR_NAMES + LLM_ONLY_SCORES),
        help=f"how samples are scored, higher = more suspicious (default {DEFAULT_DETECTOR}; prompt/response pairs: "
        f"{', '.join(LLM_SCORES)}, default iforest-per-class)",
    )
    scan.add_argument(
        "--budget",
        type=_budget,
        default=DEFAULT_BUDGET,
        help=f"fraction to flag (0.05 = 5%%) or a count (default {DEFAULT_BUDGET})",
    )
    scan.add_argument("--map", dest="map_method", default="umap", choices=MAP_METHODS, help="gradient map layout")
    scan.add_argument("--noise-rate", type=float, default=0.0, help="plant this fraction of wrong labels (demos)")
    scan.add_argument(
        "--noise-kind",
        default="symmetric",
        choices=NOISE_KINDS,
        help="how planted labels go wrong: symmetric (any other class), pairs (a partner class), instance (where a weak classifier doubts, to its second choice), annotator (majority of 3 simulated annotators)",
    )
    scan.add_argument("--limit", type=int, help="use a stratified random subset of this many samples")
    scan.add_argument(
        "--fold-labels",
        action="store_true",
        help="treat class names differing only by case or surrounding spaces (Sneaker, sneaker) as one class",
    )
    scan.add_argument("--text-column", help="text tables: the column holding the text (default: text, sentence, ...)")
    scan.add_argument(
        "--label-column",
        help="text tables, CSV manifests, Parquet/Arrow/Hugging Face tables: the label column (default: label, "
        "class, ..., a ClassLabel)",
    )
    scan.add_argument(
        "--path-column",
        help="CSV manifests: the column of image paths (default: path, filepath, file, ...); Parquet/Arrow tables: "
        "the image column. Absolute paths are read inside the manifest's folder or $OGAUDIT_DATA_ROOTS",
    )
    scan.add_argument(
        "--id-column", help="text tables: a column of unique sample ids (default: id if unique, else row)"
    )
    scan.add_argument(
        "--layers",
        nargs="+",
        default=(),
        help="also use these Linear/Conv2d layers' gradients (projected); names are checked before training",
    )
    scan.add_argument(
        "--projection-dim", type=int, default=DEFAULT_PROJECTION_DIM, help="dimensions for --layers gradients"
    )
    scan.add_argument("--seed", type=int, default=0, help="seeds training, noise, detectors and the map")
    scan.add_argument("--cache-dir", type=Path, help="model/feature/map cache (default $OGAUDIT_CACHE or ~/.cache)")
    scan.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="where the per-sample stages (forward pass, gradients) run: this process, or a Ray cluster "
        "(needs pip install 'ogaudit[ray]'); training, detection and the map run here either way",
    )
    scan.add_argument(
        "--ray-address",
        help="with --engine ray: 'auto' (a cluster started here with `ray start --head`), ray://HEAD:10001, or "
        "leave out to use $RAY_ADDRESS or start a small Ray instance on this machine",
    )
    scan.add_argument("--quiet", action="store_true", help="no progress bars")
    scan.add_argument(
        "--json", action="store_true", help="print one JSON summary on stdout (the messages go to stderr)"
    )
    scan.set_defaults(handler=run_scan)


class _StageBars:
    """Progress of each pipeline stage, driven by the progress callback; notices are printed as they come.

    In a terminal, one tqdm bar per stage. Elsewhere (a log file, CI, a pipe) plain lines a log can be read by:
    ``ogaudit: train 40% epoch 4/10``, one per stage each time it passes another :data:`LOG_STEP` of its work.
    """

    LOG_STEP = 0.1

    def __init__(self, enabled: bool, *, terminal: bool | None = None):
        self.enabled, self.bar, self.stage, self.logged = enabled, None, None, -1.0
        self.terminal = sys.stderr.isatty() if terminal is None else terminal

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if stage == "notice":
            print(f"ogaudit: note: {message}", file=sys.stderr)
            return
        if not self.enabled:
            return
        if not self.terminal:
            self._log(stage, fraction, message)
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=f"{stage:<9}", unit="%", file=sys.stderr, leave=True)
        self.bar.set_postfix_str(message, refresh=False)
        self.bar.update(round(fraction * 100) - self.bar.n)

    def _log(self, stage: str, fraction: float, message: str) -> None:
        if stage != self.stage:
            self.stage, self.logged = stage, -1.0
        if self.logged >= 1.0:
            return  # the stage's 100% line is printed once, however often the stage reports it
        if fraction >= 1.0 or fraction - self.logged >= self.LOG_STEP:
            self.logged = fraction
            print(f"ogaudit: {stage} {fraction:.0%} {message}".rstrip(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


NAMED_ARCHITECTURES = ("torchvision:", "timm:")


def _model_and_arch(args: argparse.Namespace) -> tuple[str, str | None]:
    """``AuditSettings(model, arch)`` of ``--model``, ``--weights`` and ``--arch``: ``--model timm:NAME --weights
    W`` is ``model=W, arch="timm:NAME"`` (:mod:`ogaudit.models.hub`)."""
    from ogaudit.errors import SettingsError

    if args.model.startswith(NAMED_ARCHITECTURES):
        if args.weights is None:
            raise SettingsError(
                f"--model {args.model} needs --weights FILE: your trained weights (.safetensors, or "
                "torch.save(model.state_dict(), FILE)); ogaudit downloads none."
            )
        if args.arch is not None:
            raise SettingsError(f"--model {args.model} names the architecture already; leave out --arch {args.arch}.")
        return str(args.weights), args.model
    if args.weights is not None:
        raise SettingsError(
            f"--weights goes with --model torchvision:NAME or --model timm:NAME (the architecture), not --model "
            f"{args.model}; e.g. --model torchvision:resnet18 --weights {args.weights}."
        )
    return args.model, args.arch


def run_scan(args: argparse.Namespace) -> int:
    """Validate every setting, then audit through :func:`ogaudit.api.audit`, as a notebook does (the engine is
    imported only now); ``--out`` becomes a :class:`~ogaudit.project.Project`."""
    model, arch = _model_and_arch(args)
    settings = AuditSettings(
        model=model,
        arch=arch,
        epochs=args.epochs,
        detector=args.detector,
        budget=args.budget,
        map_method=args.map_method,
        seed=args.seed,
        noise_rate=args.noise_rate,
        noise_kind=args.noise_kind,
        limit=args.limit,
        layers=tuple(args.layers),
        projection_dim=args.projection_dim,
        fold_labels=args.fold_labels,
        text_column=args.text_column,
        label_column=args.label_column,
        id_column=args.id_column,
        path_column=args.path_column,
        predictions=None if args.predictions is None else str(args.predictions),
    )
    if args.ray_address is not None and args.engine != "ray":
        from ogaudit.errors import SettingsError

        raise SettingsError(f"--ray-address {args.ray_address!r} needs --engine ray.")
    from ogaudit.api import audit
    from ogaudit.review.evidence import scoring_text

    bars = _StageBars(not args.quiet)
    try:
        result = audit(
            args.data,
            settings,
            out_dir=args.out,
            cache_dir=args.cache_dir,
            progress=bars,
            trust_checkpoint_code=args.trust_checkpoint_code,
            engine=args.engine,
            ray_address=args.ray_address,
            reference=args.reference,
        )
    finally:
        bars.close()
    record = result.record
    lines = [f"{result.dataset.describe()}; model {record['model']['kind']} ({record['model']['reason']})"]
    lines += [f"note: {note}" for note in record["dataset"].get("notes", []) + record["model"].get("notes", [])]
    if record["dataset"]["skipped_count"]:
        lines.append(f"skipped {record['dataset']['skipped_count']} unusable input(s): see run.json")
    lines.append(
        f"flagged {record['flagged']} of {len(result.scores)} samples with detector {record['settings']['detector']}"
    )
    scored = scoring_text(record["settings"]["detector"], record.get("detector_state"))
    if scored is not None:
        lines.append(scored)
    if "metrics" in record and "auroc" in record["metrics"]:
        m = record["metrics"]
        lines.append(
            f"planted noise: {m['noisy']} samples; AUROC {m['auroc']:.3f}, average precision "
            f"{m['average_precision']:.3f}, precision of the flags {m['precision_at_budget']:.3f}"
        )
    for name, found in (record["model"].get("class_detection") or {}).items():
        lines.append(f"class detection ({name} influence): AUC {found['auc']:.3f}, recall {found['recall']:.3f}")
    tables = result.paths["scores"].parent
    latest = RunFolder(result.out_dir).latest_files()
    lines.append(
        f"wrote {result.paths['run']} and the run's tables beside it ({', '.join(p.name for p in latest.values())}: "
        f"always the latest run); this run's folder: {tables}"
    )
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        summary = {
            "ok": True,
            "project": str(result.out_dir),
            "run": str(result.paths["run"]),
            "files": {name: str(path) for name, path in latest.items()},
            "run_dir": str(tables),
            "samples": len(result.scores),
            "flagged": int(record["flagged"]),
            "skipped": int(record["dataset"]["skipped_count"]),
            "model": record["model"]["kind"],
            "detector": record["settings"]["detector"],
            "detector_state": record.get("detector_state", {}),
            "metrics": record.get("metrics"),
            "notices": record.get("notices", []),
            "timings_s": record.get("timings_s", {}),
        }
        print(json.dumps(summary))
    return 0
