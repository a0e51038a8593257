"""What an audit is asked to do, validated once at the edge, and the names of every choice.

This module imports neither torch nor scikit-learn: the command line builds its parser and the review commands
read a project's settings from here without loading the engine. The engine modules take their choice names from
here (``detectors.DETECTORS`` is checked against :data:`DETECTOR_NAMES` by a test), so there is one list of each.

Every rule on a setting lives in one ``check_*`` function below, used by :class:`AuditSettings`, the command
line and the app alike; each error names the setting, the value received, what is allowed and the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ogaudit.errors import SettingsError

DETECTOR_NAMES = (
    "posterior-auto",
    "posterior",
    "posterior-ratio",
    "consensus",
    "cf-ratio",
    "neighbours",
    "l2",
    "l1",
    "iforest",
    "iforest-per-class",
    "loss",
    "self-confidence",
    "aum",
    "margin",
    "checkpoints",
    "simifeat",
    "dynamics",
)
DEFAULT_DETECTOR = "posterior-auto"
LLM_SCORES = ("iforest-per-class", "l2", "loss", "perplexity", "grad-cosine")
"""Scores of an audit of instruction data for a causal LM (:mod:`ogaudit.pipeline.instructions`): the paper's
per-category IsolationForest on projected LoRA gradients, their L2 norm, the response NLL and its perplexity, and
the gradient-cosine (TracIn/LESS-style) baseline. The last two exist for these audits only."""
LLM_ONLY_SCORES = ("perplexity", "grad-cosine")
CAUSAL_LMS = ("smollm2",)
"""Causal LMs by name (:mod:`ogaudit.models.causal_lm`); a Hugging Face model folder is the other choice."""
GRADIENT_DETECTORS = (
    "l2",
    "l1",
    "iforest",
    "iforest-per-class",
    "neighbours",
    "consensus",
    "posterior",
    "posterior-auto",
    "posterior-ratio",
)
"""Detectors that read gradient vectors, so can also score projected gradients of chosen layers."""
DYNAMICS_DETECTORS = ("aum", "margin", "checkpoints", "simifeat", "dynamics")
"""Detectors that read the training trajectory (``ogaudit.detectors.dynamics``): they need a model trained by the
audit, not a user's checkpoint."""
MAP_METHODS = ("umap", "pca", "none")
MODEL_KINDS = ("auto", "cnn", "mlp", "efficientnet", "linear", "lora")
NOISE_KINDS = ("symmetric", "pairs", "instance", "annotator")
TRAIN_LOSSES = ("cross-entropy", "gce", "sce", "label-smoothing")
"""The training losses of the audit's own model (:func:`ogaudit.models.training.training_loss`): cross-entropy (the
default), generalized cross-entropy (GCE, Zhang & Sabuncu 2018, ``q`` = 0.7), symmetric cross-entropy (SCE, Wang
et al. 2019, α = 0.1, β = 1, A = −4), two losses robust to wrong labels, and cross-entropy with label smoothing
(ε = 0.1; Lukasik et al. 2020 on label noise). docs/BENCHMARKS.md, "Detection under
realistic noise", measures whether they help the audit's flags."""
DEFAULT_BUDGET = 0.05
DEFAULT_PROJECTION_DIM = 4096
MIN_PROJECTION_DIM = 16
MAX_PROJECTION_DIM = 2**20
MAX_EPOCHS = 500


def check_budget(value: object) -> float:
    """A flag budget: a fraction in (0, 1) (0.05 = 5%) or a whole count ≥ 1. Returns it as a float."""
    try:
        budget = float(value)
    except (TypeError, ValueError):
        budget = math.nan
    if not math.isfinite(budget) or budget <= 0 or (budget >= 1 and budget != int(budget)):
        raise SettingsError(
            f"budget must be a fraction in (0, 1) such as 0.05, or a whole count ≥ 1 such as 200; got {value!r}."
        )
    return budget


def budget_count(budget: object, n: int) -> int:
    """How many of ``n`` samples a flag budget flags: a fraction rounds (``round(budget · n)``), a count is taken as
    it is, and the result is clipped to ``[1, n]`` (at least one sample of a non-empty set is flagged)."""
    budget = check_budget(budget)
    count = int(budget) if budget >= 1 else int(round(budget * n))
    return min(max(count, 1), n) if n else 0


def check_projection_dim(value: object, *, at_least: int = MIN_PROJECTION_DIM) -> int:
    """The total dimension of projected gradients: an integer in [``at_least``, 2**20]."""
    if isinstance(value, bool) or not isinstance(value, int) or not at_least <= value <= MAX_PROJECTION_DIM:
        raise SettingsError(
            f"projection_dim must be an integer between {at_least} and {MAX_PROJECTION_DIM}; got {value!r}. "
            f"{DEFAULT_PROJECTION_DIM} is a good default."
        )
    return value


def check_epochs(value: object) -> int | None:
    """Training epochs: None (chosen by data size) or an integer in [1, 500]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EPOCHS:
        raise SettingsError(
            f"epochs must be a whole number between 1 and {MAX_EPOCHS}, or left out to choose by data size; "
            f"got {value!r}."
        )
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SettingsError(f"{name} {value!r} is not one of {', '.join(choices)}.")
    return value  # type: ignore[return-value]


SAMPLE_PASSES = 150_000
"""Auto epochs aim at this many sample visits: ~15 epochs on 10k samples, more on small data, fewer on big."""


MAX_SAMPLE_VISITS = 1_500_000
"""Auto epochs never exceed this many sample visits (5 epochs of 300k): past it each epoch already shows the model
more distinct samples than a small set's whole training, and a 10⁶-sample scan must not spend 5 full epochs."""


def auto_epochs(n_samples: int) -> int:
    """Enough passes to fit the clean majority, few enough not to memorise the noisy labels.

    ``clip(round(150k / N), 5, 30)`` up to 300k samples; above, ``ceil(1.5M / N)`` (4 at 400k, 2 at 10⁶, then 1).
    """
    n = max(n_samples, 1)
    if n * 5 > MAX_SAMPLE_VISITS:
        return max(1, -(-MAX_SAMPLE_VISITS // n))
    return int(min(max(round(SAMPLE_PASSES / n), 5), 30))


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained. ``epochs=None`` picks :func:`auto_epochs` for the data size, or
    :func:`fine_tune_epochs` when ``fine_tune`` (a pretrained encoder's adapters: few passes, small batches)."""

    epochs: int | None = None
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    fine_tune: bool = False
    loss: str = "cross-entropy"

    def __post_init__(self):
        check_epochs(self.epochs)
        check_choice("loss", self.loss, TRAIN_LOSSES)
        if not 1 <= self.batch_size <= 65536:
            raise SettingsError(f"batch_size must be between 1 and 65536; got {self.batch_size}.")
        if not 0 < self.learning_rate < 10:
            raise SettingsError(f"learning_rate must be in (0, 10); got {self.learning_rate}.")

    def resolved_epochs(self, n_samples: int) -> int:
        if self.epochs is not None:
            return self.epochs
        if self.fine_tune:
            return fine_tune_epochs(n_samples)
        return auto_epochs(n_samples)


FINE_TUNE_SAMPLE_PASSES = 10_000
FINE_TUNE_BATCH_SIZE = 32


def fine_tune_epochs(n_samples: int) -> int:
    """Epochs of LoRA fine-tuning (``model="lora"``): ``clip(round(10k / N), 2, 10)``: 2 from about 4,000 texts on
    (2,400 steps of 32 at 38k tweets), 10 up to 1,000. Each epoch is a pass of the encoder, so fewer than a head's."""
    return int(min(max(round(FINE_TUNE_SAMPLE_PASSES / max(n_samples, 1)), 2), 10))


def is_model_folder(model: object) -> bool:
    """Whether ``model`` names a Hugging Face model folder (a directory holding ``config.json``)."""
    try:
        return isinstance(model, str) and (Path(model).expanduser() / "config.json").is_file()
    except (OSError, ValueError):
        return False


def _split_layer_names(name):
    """``"conv2,fc1"`` or ``"conv2 fc1"`` as two names (module names never hold commas or spaces); else as given."""
    if not isinstance(name, str):
        return [name]
    parts = [part for part in re.split(r"[,\s]+", name) if part]
    return parts if parts else [name]


@dataclass(frozen=True)
class AuditSettings:
    """Everything that decides an audit's result. Validated on creation; saved in the run record.

    model : "auto" (MLP for vectors, small CNN for images ≤ 64 px, pretrained EfficientNet-Lite0 above, a linear
        head on frozen sentence embeddings for text), "cnn", "mlp", "efficientnet", "linear", "lora" (text: LoRA
        fine-tuning of the encoder's top layers, scored by the projected gradients of its adapters and head;
        :mod:`ogaudit.models.lora`), a checkpoint path (TorchScript, or a state dict / ``.safetensors`` with
        ``arch``), or ``"hf:FOLDER"``, a Hugging Face image or text classifier folder (:mod:`ogaudit.models.hub`).
    arch : the architecture of a state-dict checkpoint: a torchvision name (``"resnet18"``, or
        ``"torchvision:resnet18"``) or ``"timm:NAME"``.
    detector : one of :data:`DETECTOR_NAMES`; higher score = more suspicious.
    budget : fraction of samples to flag (0.05 = 5%) or, when ≥ 1, a count.
    layers : empty for the last layer in closed form; else names of Linear/Conv2d layers whose gradients are
        projected to ``projection_dim`` dimensions (checked against the built model before training).
    noise_rate, noise_kind : plant label noise (demos, benchmarks); the true labels are kept for scoring.
    fold_labels : class names that differ only by case or surrounding spaces are one class (else refused).
    text_column, label_column, id_column : for text tables, the columns to read (None: found by their names;
        see :mod:`ogaudit.data.text`). ``label_column`` also names the label column of a CSV manifest or a
        Parquet/Arrow/Hugging Face table of images.
    path_column : for a CSV manifest, the column of image paths (None: found by its name, ``path``, ``filepath``,
        ``file`` ...; see :mod:`ogaudit.data.manifest`); for a Parquet/Arrow/Hugging Face table, its image column.
    predictions : a file of your model's predictions on the data (``.npz`` or ``.parquet``: penultimate
        features and probabilities or logits, optionally sample ids; :mod:`ogaudit.data.predictions`): the
        samples are scored from them, with no model run and nothing trained. None: a model is trained or given.
    loss : the training loss of the model the audit trains, one of :data:`TRAIN_LOSSES` (``"cross-entropy"``,
        ``"gce"``, ``"sce"``, ``"label-smoothing"``); it does not apply to a given checkpoint or predictions (refused with them) nor to
        LoRA fine-tuning. The default stays cross-entropy: docs/BENCHMARKS.md, "Does a noise-robust training loss
        help?".

    Raises :class:`~ogaudit.errors.SettingsError` naming the first setting out of range.
    """

    model: str = "auto"
    arch: str | None = None
    epochs: int | None = None
    detector: str = DEFAULT_DETECTOR
    budget: float = DEFAULT_BUDGET
    map_method: str = "umap"
    seed: int = 0
    noise_rate: float = 0.0
    noise_kind: str = "symmetric"
    limit: int | None = None
    layers: tuple[str, ...] = ()
    projection_dim: int = DEFAULT_PROJECTION_DIM
    fold_labels: bool = False
    text_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    path_column: str | None = None
    predictions: str | None = None
    loss: str = "cross-entropy"

    def __post_init__(self):
        layers = (self.layers,) if isinstance(self.layers, str) else tuple(self.layers)
        layers = tuple(part for name in layers for part in _split_layer_names(name))
        object.__setattr__(self, "layers", layers)
        if not isinstance(self.model, str) or (
            self.model not in MODEL_KINDS + CAUSAL_LMS
            and not Path(self.model).suffix
            and not self.model.startswith("hf:")
            and not is_model_folder(self.model)
        ):
            raise SettingsError(
                f"model {self.model!r} is not one of {', '.join(MODEL_KINDS + CAUSAL_LMS)} and does not look like a "
                "checkpoint path (a file ending in .pt, .pth, .ckpt or .safetensors), a Hugging Face folder "
                "(hf:FOLDER) or a causal-LM folder (one with config.json, for prompt/response pairs)."
            )
        check_choice("detector", self.detector, DETECTOR_NAMES + LLM_ONLY_SCORES)
        if self.detector in DYNAMICS_DETECTORS and self.model not in MODEL_KINDS:
            raise SettingsError(
                f"detector {self.detector!r} reads the training trajectory, which a checkpoint does not have; choose "
                f"a detector outside {DYNAMICS_DETECTORS}, such as 'posterior', or let the audit train a model."
            )
        if self.layers and self.detector not in GRADIENT_DETECTORS:
            raise SettingsError(
                f"layers need a gradient detector ({', '.join(GRADIENT_DETECTORS)}); got {self.detector!r}."
            )
        if not all(isinstance(name, str) and name for name in self.layers) or len(set(self.layers)) != len(self.layers):
            raise SettingsError(f"layers must be distinct, non-empty layer names such as conv2 fc1; got {layers!r}.")
        check_choice("map_method", self.map_method, MAP_METHODS)
        check_choice("noise_kind", self.noise_kind, NOISE_KINDS)
        if not isinstance(self.noise_rate, int | float) or not 0 <= self.noise_rate < 1:
            raise SettingsError(f"noise_rate must be in [0, 1), e.g. 0.1 for 10%; got {self.noise_rate!r}.")
        object.__setattr__(self, "budget", check_budget(self.budget))
        check_projection_dim(self.projection_dim, at_least=max(MIN_PROJECTION_DIM, len(self.layers)))
        self.train_settings  # noqa: B018 - validates epochs and seed the way training will read them
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise SettingsError(f"seed must be a whole number in [0, 2**63); got {self.seed!r}.")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)):
            raise SettingsError(f"limit must be a whole number of samples; got {self.limit!r}.")
        if self.limit is not None and self.limit < 2:
            raise SettingsError(f"limit must be at least 2 samples; got {self.limit}.")
        if self.predictions is not None:
            if not isinstance(self.predictions, str) or not self.predictions.strip():
                raise SettingsError(f"predictions must be a file path or None; got {self.predictions!r}.")
            clashing = [
                f"{name}={value!r}"
                for name, value in (("model", self.model), ("arch", self.arch), ("epochs", self.epochs))
                if value not in (None, "auto")
            ] + ([f"layers={list(self.layers)}"] if self.layers else [])
            if clashing:
                raise SettingsError(
                    f"predictions={self.predictions!r} replaces the model (scored from your predictions, nothing "
                    f"trained or run), so {', '.join(clashing)} cannot apply; leave {'it' if len(clashing) == 1 else 'them'} out."
                )
        check_choice("loss", self.loss, TRAIN_LOSSES)
        if self.loss != "cross-entropy" and (self.model not in MODEL_KINDS or self.model == "lora" or self.predictions):
            raise SettingsError(
                f"loss={self.loss!r} sets how the audit trains its own model; with "
                f"{'predictions' if self.predictions else f'model={self.model!r}'} nothing is trained that way, so "
                "leave loss at 'cross-entropy'."
            )
        for name in ("text_column", "label_column", "id_column", "path_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SettingsError(f"{name} must be a column name or None; got {value!r}.")

    @property
    def is_causal_lm(self) -> bool:
        """Whether the model is a causal LM fine-tuned on instruction data (a name, or a model folder)."""
        return self.model in CAUSAL_LMS or is_model_folder(self.model)

    @property
    def text_options(self) -> dict:
        """The column choices for :func:`ogaudit.data.text.load_text_dataset` (None: found by name)."""
        return {"text_column": self.text_column, "label_column": self.label_column, "id_column": self.id_column}

    @property
    def train_settings(self) -> TrainSettings:
        """How the audit's model is trained (epochs and seed; the rest at their defaults, but for LoRA
        fine-tuning: batches of :data:`FINE_TUNE_BATCH_SIZE`, epochs by :func:`fine_tune_epochs`)."""
        if self.model == "lora":
            return TrainSettings(epochs=self.epochs, seed=self.seed, batch_size=FINE_TUNE_BATCH_SIZE, fine_tune=True)
        return TrainSettings(epochs=self.epochs, seed=self.seed, loss=self.loss)

    def to_dict(self) -> dict:
        """JSON-able settings (``layers`` as a list), as saved in ``run.json`` and ``request.json``."""
        saved = asdict(self)
        saved["layers"] = list(self.layers)
        if saved["path_column"] is None:  # as a release without it wrote them: the same record, the same fingerprint
            del saved["path_column"]
        if saved["loss"] == "cross-entropy":  # likewise
            del saved["loss"]
        return saved

    @classmethod
    def from_dict(cls, saved: dict, *, source: str = "settings") -> AuditSettings:
        """Settings saved by :meth:`to_dict` (this or an earlier release); ``source`` names the file in errors.

        Keys this release does not know are refused with a message naming ``source``, not a ``TypeError``.
        """
        if not isinstance(saved, dict):
            raise SettingsError(f"{source}: the settings must be a JSON object; got {type(saved).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - known)
        if unknown:
            raise SettingsError(
                f"{source} has settings this version of ogaudit does not know: {', '.join(unknown)}. It was "
                "probably written by a newer ogaudit: upgrade, or start a new audit."
            )
        try:
            return cls(**saved)
        except SettingsError as error:
            raise SettingsError(f"{source}: {error}") from error
