"""The audit of instruction-tuning data for a causal LM: the paper's third part (Chhabra et al., ICML 2025, §5.3).

Stages, each with its own cache entry, so a rerun with another score or budget takes seconds:

1. **model**: SmolLM2-135M-Instruct (float weights cached after the first load) or a local Hugging Face folder
   (:func:`~ogaudit.models.causal_lm.load_causal_lm`);
2. **frozen states**: the hidden states entering the top :data:`~ogaudit.models.causal_lm.TOP_BLOCKS` blocks, once
   per pair, in a :class:`~ogaudit.cache.store.SampleStore` (cache kind ``llm-states``), resumable by chunk;
3. **fine-tune**: LoRA adapters on ``q_proj`` / ``v_proj`` of the top blocks, trained briefly on every pair from
   the cached states (cache kind ``llm-adapters``);
4. **gradients**: per-sample gradients of the response NLL with respect to every adapter matrix, randomly
   projected by the multi-layer engine (:func:`~ogaudit.gradients.layers.project_layer_gradients`, cache kind
   ``layer-gradients``); the same for the reference (test) pairs;
5. **scores**: the paper's per-category IsolationForest on the projected gradients (``iforest-per-class``), their
   L2 norm (``l2``), the response NLL (``loss``) and perplexity, and the gradient-cosine baseline
   (``grad-cosine``, TracIn/LESS-style, against the reference pairs of the same category); every one is a column
   of the table, the chosen one is ``score``. With reference pairs: the influence of every training pair on each
   of them and the paper's class-detection AUC and recall (Table 3).
6. **map**: the projected gradients laid out in 2-D.

The run is written by :class:`~ogaudit.results.RunFolder` like any other, plus ``llm.npz`` (gradients, reference
pairs, adapters), so the app reviews it and answers "which training pairs drive this test prompt".
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ogaudit.cache.artifacts import ArtifactCache
from ogaudit.cache.store import SampleStore
from ogaudit.data.dataset import Dataset
from ogaudit.data.instructions import is_instructions, planted_of, prompts_of, responses_of
from ogaudit.detectors.metrics import detection_metrics
from ogaudit.detectors.outliers import IsolationForestDetector
from ogaudit.detectors.scoring import score_table
from ogaudit.detectors.similarity import GradientCosineDetector, class_detection, influence
from ogaudit.errors import SettingsError
from ogaudit.gradients import ProjectedEvidence
from ogaudit.gradients.layers import LayerGradientSettings, layer_store, project_layer_gradients
from ogaudit.map.layout import gradient_map
from ogaudit.models import causal_lm
from ogaudit.progress import ProgressCallback, report, within
from ogaudit.settings import DEFAULT_DETECTOR, LLM_SCORES, AuditSettings
from ogaudit.storage import fingerprint

DEFAULT_LLM_SCORE = "iforest-per-class"
"""The score an instruction audit ranks by when the settings name none of :data:`~ogaudit.settings.LLM_SCORES`
(the settings' default detector is a label-noise detector that has no meaning for responses): the paper's, which
had the best average precision and flag precision on the built-in tasks (docs/BENCHMARKS.md, "Language-model
fine-tuning data")."""
LLM_EPOCHS = 2
"""Fine-tuning epochs when the settings leave ``epochs`` out."""
LEARNING_RATE = 2e-3
TRAIN_BATCH = 16
GRADIENT_BATCH = 16
STATE_CHUNK = 64
SCORE_COLUMNS = {"iforest-per-class": "iforest_category", "l2": "grad_norm", "loss": "loss", "perplexity": "perplexity"}
SCORE_COLUMNS["grad-cosine"] = "grad_cosine"


def llm_settings(settings: AuditSettings, notice=None) -> AuditSettings:
    """``settings`` for an instruction audit: a causal LM (``auto`` → ``smollm2``) and one of
    :data:`~ogaudit.settings.LLM_SCORES` (another detector → :data:`DEFAULT_LLM_SCORE`, said through ``notice``)."""
    if settings.model == "auto":
        settings = replace(settings, model=causal_lm.SMOLLM2)
    if not settings.is_causal_lm:
        raise SettingsError(
            f"Instruction data (prompt/response pairs) is audited by fine-tuning a causal LM: use --model smollm2 or "
            f"the path of a Hugging Face causal-LM folder, not {settings.model!r}."
        )
    if settings.layers:
        raise SettingsError("layers are chosen by the instruction audit itself (the LoRA adapters); leave them out.")
    if settings.noise_rate:
        raise SettingsError(
            "noise_rate plants wrong labels; instruction data has responses. The built-in instruct-tasks has planted "
            "wrong responses."
        )
    if settings.detector not in LLM_SCORES:
        if notice is not None and settings.detector != DEFAULT_DETECTOR:
            notice(f"detector {settings.detector!r} scores labels; this audit ranks by {DEFAULT_LLM_SCORE!r}")
        settings = replace(settings, detector=DEFAULT_LLM_SCORE)
    return settings


def audit_instructions(
    dataset: Dataset,
    settings: AuditSettings,
    *,
    reference: Dataset | None = None,
    cache: ArtifactCache,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    notice=None,
) -> dict:
    """Run stages 1-6 (see the module) on prompt/response pairs; returns the pieces of a run.

    ``reference``: held-out pairs (e.g. ``instruct-tasks-test``) for the gradient-cosine score, the influence view
    and class detection; without it, the cosine reference is the training pairs of the same category.

    Returns a dict: ``scores`` (the table), ``coords`` (N, 2), ``llm`` (the arrays of ``llm.npz``), ``info`` (what the
    run record keeps: model, epochs, history, timings, metrics of every score, class detection) and ``lm``.
    """
    if not is_instructions(dataset):
        raise SettingsError(f"{dataset.describe()} is not instruction data; load prompt/response pairs.")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    report(progress, "train", 0.0, "loading the language model")
    lm = causal_lm.load_causal_lm(settings.model, cache=cache, notice=notice)
    timings["load_model"] = time.perf_counter() - start

    start = time.perf_counter()
    rows, n_rows, states_key = pair_rows(lm, dataset, cache, within(progress, "train", 0.0, 0.4), cancel)
    timings["frozen_states"] = time.perf_counter() - start

    start = time.perf_counter()
    epochs = settings.epochs or LLM_EPOCHS
    top = causal_lm.TopNetwork(lm, seed=settings.seed)
    adapters_key, history, cached = _adapters(
        top, rows, n_rows, states_key, epochs, settings.seed, cache, within(progress, "train", 0.4, 1.0), cancel, notice
    )
    timings["fine_tune"] = time.perf_counter() - start

    start = time.perf_counter()
    losses = _losses(top, rows, n_rows, states_key, adapters_key, cache)
    gradients = _gradients(
        top, rows, n_rows, states_key, adapters_key, settings, cache, within(progress, "gradients", 0, 0.8), cancel
    )
    test = None
    if reference is not None:
        test_rows, test_n, test_key = pair_rows(lm, reference, cache, None, cancel)
        test_gradients = _gradients(
            top,
            test_rows,
            test_n,
            test_key,
            adapters_key,
            settings,
            cache,
            within(progress, "gradients", 0.8, 1),
            cancel,
        )
        test = (reference, np.asarray(test_gradients, dtype=np.float32))
    timings["gradients"] = time.perf_counter() - start

    start = time.perf_counter()
    report(progress, "detect", 0.0, "scoring")
    matrix = np.asarray(gradients, dtype=np.float32)
    table, metrics, detection = _scores(dataset, matrix, losses, test, settings)
    timings["detect"] = time.perf_counter() - start
    start = time.perf_counter()
    coords = _map(matrix, _gradients_key(states_key, adapters_key, settings), settings, cache, progress, cancel)
    timings["map"] = time.perf_counter() - start

    arrays = {"train_gradients": matrix}
    if test is not None:
        ref, test_matrix = test
        arrays |= {
            "test_gradients": test_matrix,
            "test_labels": _labels_in(ref, dataset.class_names),
            "test_ids": np.asarray(ref.sample_ids, dtype=str),
            "test_prompts": np.asarray(prompts_of(ref), dtype=str),
            "test_responses": np.asarray(responses_of(ref), dtype=str),
        }
    arrays |= {f"lora/{name}": p.numpy() for name, p in top.adapter_state().items()}
    info = {
        "kind": "causal-lm",
        "name": lm.name,
        "key": fingerprint(adapters_key, settings.projection_dim),
        "reason": "instruction data: LoRA fine-tuning of a causal LM",
        "cached": cached,
        "epochs": epochs,
        "history": history,
        "top_blocks": causal_lm.TOP_BLOCKS,
        "lora_rank": causal_lm.LORA_RANK,
        "adapters": list(top.adapter_names()),
        "gradient_dim": int(matrix.shape[1]),
        "llm_timings_s": {k: round(v, 3) for k, v in timings.items()},
        "score_metrics": metrics,
        "class_detection": detection,
        "reference": None if reference is None else reference.source,
    }
    return {"scores": table, "coords": coords, "llm": arrays, "info": info, "lm": lm, "top": top}


def pair_rows(lm, dataset: Dataset, cache: ArtifactCache, progress, cancel):
    """``(rows(index) -> packed (n, T, H + 3) float32, N, key)``: the pairs' frozen hidden states from their cache
    entry (computed now by chunks of :data:`STATE_CHUNK` pairs when missing), packed with their tokens."""
    ids, response, attention = causal_lm.encode_pairs(lm.tokenizer, prompts_of(dataset), responses_of(dataset))
    hidden = lm.model.config.hidden_size
    key = fingerprint("llm-states-v1", lm.key, causal_lm.TOP_BLOCKS, ids, attention)
    entry = cache.entry("llm-states", key, {"model": lm.name, "pairs": len(ids), "tokens": ids.shape[1]})
    fields = {"states": ((ids.shape[1], hidden), "float32")}

    def read(folder):
        return SampleStore.open(folder, n_rows=len(ids), fields=fields, chunk_rows=STATE_CHUNK).rows("states")

    with entry.exclusive(cancel=cancel):
        states = entry.load(read)
        if states is None:
            store = SampleStore(entry.work_dir(), len(ids), fields, chunk_rows=STATE_CHUNK, source=key)
            store.fill(
                lambda a, b: {"states": causal_lm.lower_states(lm, ids[a:b], attention[a:b])},
                progress=progress,
                cancel=cancel,
                stage="train",
                what="pairs through the frozen layers",
            )
            entry.commit()
            states = entry.load(read)

    def rows(index) -> np.ndarray:
        index = np.asarray(index)
        return causal_lm.pack(states[index], ids[index], response[index], attention[index])

    return rows, len(ids), fingerprint(key, response)


def _adapters(top, rows, n_rows, states_key, epochs, seed, cache, progress, cancel, notice):
    key = fingerprint("llm-adapters-v1", states_key, epochs, seed, LEARNING_RATE, TRAIN_BATCH, causal_lm.LORA_RANK)
    entry = cache.entry("llm-adapters", key, {"epochs": epochs, "seed": seed, "pairs": n_rows})

    def read(folder):
        from safetensors.torch import load_file

        saved = load_file(str(folder / "adapters.safetensors"))
        history = [float(v) for v in np.load(folder / "history.npy")]
        with torch.no_grad():
            for name, parameter in top.named_parameters():
                if name in saved:
                    parameter.copy_(saved[name])
        return history

    with entry.exclusive(cancel=cancel):
        history = entry.load(read, notice=notice)
        if history is not None:
            return key, history, True
        history = causal_lm.fine_tune(
            top,
            rows,
            n_rows,
            epochs=epochs,
            batch_size=TRAIN_BATCH,
            learning_rate=LEARNING_RATE,
            seed=seed,
            progress=_renamed(progress, "train"),
            cancel=cancel,
        )

        def write(folder):
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in top.adapter_state().items()}, str(folder / "adapters.safetensors"))
            np.save(folder / "history.npy", np.asarray(history))

        entry.save(write)
    return key, history, False


def _losses(top, rows, n_rows, rows_key, adapters_key, cache) -> np.ndarray:
    """(N,) each pair's response NLL under the fine-tuned adapters, cached with them (a rerun reads it)."""
    key = fingerprint("llm-losses-v1", rows_key, adapters_key)
    entry = cache.entry("scores", key, {"model": "causal-lm", "pairs": n_rows, "what": "response NLL"})
    found = entry.load(lambda folder: np.load(folder / "losses.npy", allow_pickle=False))
    if found is not None and found.shape == (n_rows,):
        return found
    losses = causal_lm.pair_losses(top, rows, n_rows)
    entry.save(lambda folder: np.save(folder / "losses.npy", losses))
    return losses


def _gradients(top, rows, n_rows, rows_key, adapters_key, settings, cache, progress, cancel):
    layers = LayerGradientSettings(
        layers=top.adapter_names(), dim=settings.projection_dim, seed=settings.seed, batch_size=GRADIENT_BATCH
    )
    labels = np.zeros(n_rows, dtype=np.int64)
    inputs_key = fingerprint("llm-pairs", rows_key, adapters_key)
    key = _gradients_key(rows_key, adapters_key, settings)
    entry = cache.entry("layer-gradients", key, {"model": "causal-lm", "pairs": n_rows, "dim": settings.projection_dim})

    def read(folder):
        return np.asarray(SampleStore.open(folder).rows("gradients"), dtype=np.float32)

    with entry.exclusive(cancel=cancel):
        found = entry.load(read)
        if found is not None:
            return found
        store = layer_store(entry.work_dir(), top, labels, layers, inputs_fingerprint=inputs_key)
        project_layer_gradients(
            top,
            lambda start, stop: rows(np.arange(start, stop)),
            labels,
            layers,
            store=store,
            progress=_renamed(progress, "gradients"),
            cancel=cancel,
            loss=causal_lm.summed_loss,
        )
        entry.commit()
        return entry.load(read)


def _gradients_key(rows_key, adapters_key, settings) -> str:
    """The cache key of the pairs' projected gradients (and of what is computed from them alone, the map)."""
    inputs_key = fingerprint("llm-pairs", rows_key, adapters_key)
    return fingerprint("llm-gradients-v1", inputs_key, settings.projection_dim, settings.seed)


def _map(matrix: np.ndarray, gradients_key: str, settings, cache: ArtifactCache, progress, cancel) -> np.ndarray:
    """(N, 2) the gradients' map, cached by the gradients' key, the layout method and seed: a rerun with another
    detector or budget reads it (it was laid out again on every run, 9–10 s of a 14–17 s rerun)."""
    from ogaudit.map.layout import MAP_DIM, MAP_SAMPLE
    from ogaudit.pipeline.stages import cached_map

    n = len(matrix)
    meta = {"gradients": gradients_key, "method": settings.map_method, "seed": settings.seed, "map_dim": MAP_DIM}
    if n > MAP_SAMPLE:
        meta["map_sample"] = MAP_SAMPLE
    return cached_map(
        cache.entry("map", fingerprint("llm-map", meta), meta),
        n,
        lambda: gradient_map(matrix, method=settings.map_method, seed=settings.seed, progress=progress, cancel=cancel),
    )


def _renamed(progress, stage):
    if progress is None:
        return None
    return lambda _stage, fraction, message: progress(stage, fraction, message)


def _labels_in(dataset: Dataset, class_names: list[str]) -> np.ndarray:
    """``dataset``'s categories as indices into ``class_names`` (−1 for a category the training data lacks)."""
    index = {name: i for i, name in enumerate(class_names)}
    return np.asarray([index.get(dataset.class_names[c], -1) for c in dataset.y], dtype=np.int64)


def _scores(dataset: Dataset, matrix: np.ndarray, losses: np.ndarray, test, settings: AuditSettings):
    labels = dataset.y
    n_classes = dataset.n_classes
    onehot = np.eye(n_classes, dtype=np.float32)[labels]
    evidence = ProjectedEvidence(matrix, onehot, labels)
    columns = {
        "iforest_category": IsolationForestDetector(per_class=True, random_state=settings.seed)
        .fit(evidence)
        .outlier_scores(evidence),
        "grad_norm": evidence.gradient_norms(2),
        "loss": losses,
        "perplexity": np.exp(np.minimum(losses, 50.0)),
    }
    detection = None
    if test is not None:
        ref, test_matrix = test
        test_labels = _labels_in(ref, dataset.class_names)
        known = test_labels >= 0
        cosine = GradientCosineDetector(reference=test_matrix[known], reference_labels=test_labels[known])
        columns["grad_cosine"] = cosine.fit(evidence).outlier_scores(evidence)
        scores = influence(matrix, test_matrix[known])
        detection = {
            "inner_product": class_detection(scores, labels, test_labels[known]),
            "cosine": class_detection(
                influence(matrix, test_matrix[known], normalise=True), labels, test_labels[known]
            ),
        }
    else:
        columns["grad_cosine"] = GradientCosineDetector().fit(evidence).outlier_scores(evidence)
    score = columns[SCORE_COLUMNS[settings.detector]]
    table = score_table(
        np.asarray(score, dtype=np.float64),
        -onehot,  # the suggested "label" is the pair's own category: responses are reviewed, not categories
        onehot,
        labels,
        class_names=dataset.class_names,
        sample_ids=dataset.sample_ids,
        budget=settings.budget,
    )
    for name, values in columns.items():
        table[name] = np.asarray(values, dtype=np.float64)
    planted = planted_of(dataset)
    metrics = {}
    if planted is not None:
        table["is_noisy"] = planted
        for name, column in SCORE_COLUMNS.items():
            metrics[name] = detection_metrics(planted, table[column].to_numpy(), budget=settings.budget)
    return table, metrics, detection


def instruction_frame(dataset: Dataset) -> pd.DataFrame:
    """sample_id, category, prompt, response of every pair (what the review and exports show)."""
    return pd.DataFrame(
        {
            "sample_id": dataset.sample_ids,
            "category": np.asarray(dataset.class_names, dtype=object)[dataset.y],
            "prompt": prompts_of(dataset),
            "response": responses_of(dataset),
        }
    )


def run_instruction_audit(data, settings: AuditSettings, *, project, cache: ArtifactCache, reference, progress, cancel):
    """:func:`ogaudit.audit` for instruction data: load, :func:`audit_instructions`, write the run into ``project``
    (a :class:`~ogaudit.results.RunFolder` or None). Returns ``(dataset, scores, map frame, record, llm arrays,
    paths)``.

    ``reference`` names held-out pairs (a path, a built-in, a Dataset); for ``instruct-tasks`` it defaults to
    ``instruct-tasks-test`` with the same seed."""
    from ogaudit.data.instructions import load_instructions
    from ogaudit.pipeline.record import run_record

    notices: list[str] = []

    def notice(text: str) -> None:
        notices.append(text)
        report(progress, "notice", 0.0, text)

    settings = llm_settings(settings, notice)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    report(progress, "load", 0.0, "starting")
    if isinstance(data, Dataset):
        dataset = data
        if settings.limit is not None and settings.limit < len(dataset):
            from ogaudit.data.dataset import stratified_subset

            dataset = stratified_subset(dataset, settings.limit, seed=settings.seed)
    else:
        from ogaudit.data.load import load_dataset

        dataset = load_dataset(data, limit=settings.limit, seed=settings.seed)
    if not is_instructions(dataset):
        raise SettingsError(
            f"model {settings.model!r} is a causal LM: it audits prompt/response pairs (a .jsonl/.csv/.parquet with "
            f"prompt and response fields, or instruct-tasks), not {dataset.describe()}."
        )
    if reference is None and str(data) == "instruct-tasks":
        reference = "instruct-tasks-test"
    if reference is not None and not isinstance(reference, Dataset):
        reference = load_instructions(reference, seed=settings.seed)
    dataset = dataset.pinned()
    timings["load"] = round(time.perf_counter() - start, 3)
    report(progress, "load", 1.0, "done")
    if project is not None:
        warning = project.review_notice(dataset.fingerprint())
        if warning is not None:
            notice(warning)
    start = time.perf_counter()
    out = audit_instructions(
        dataset, settings, reference=reference, cache=cache, progress=progress, cancel=cancel, notice=notice
    )
    info = out["info"]
    for stage, seconds in info["llm_timings_s"].items():
        timings[stage] = seconds
    timings["total"] = round(time.perf_counter() - start + timings["load"], 3)
    scores = out["scores"]
    map_frame = pd.DataFrame({"sample_id": dataset.sample_ids, "x": out["coords"][:, 0], "y": out["coords"][:, 1]})
    record = run_record(data, dataset, settings, info, timings, scores, notices)
    record["engine"] = "local"
    paths = {}
    if project is not None:
        paths = project.write_run(scores, map_frame, record, llm=out["llm"])
    return dataset, scores, map_frame, record, out, paths


ARITHMETIC_TASKS = ("addition", "subtraction", "addition-reasoning", "multiplication-reasoning")
"""Categories whose answers are checked by exact match in :func:`verify_instructions` (the built-in arithmetic)."""


def verify_instructions(
    dataset: Dataset,
    state: pd.DataFrame,
    reference: Dataset,
    settings: AuditSettings,
    *,
    cache: ArtifactCache,
    seeds: tuple[int, ...] = (0,),
    exact_match_limit: int = 40,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> dict:
    """Re-tune with and without the review's decisions and compare on held-out pairs.

    "before": LoRA fine-tuned on every pair as audited; "after": on the pairs kept, with edited responses
    (:mod:`ogaudit.review.instructions`). Both from the same initial adapters, the same epochs and seed; the frozen
    states are reused (only edited pairs pass through the frozen layers again). Measured on ``reference``: the mean
    response NLL (lower is better), and exact-match accuracy of greedy answers on up to ``exact_match_limit``
    reference pairs of the arithmetic categories (:data:`ARITHMETIC_TASKS`; none for other data).

    Returns ``{"before": {...}, "after": {...}, "counts": {...}, "seeds": [...]}``, each side with per-seed
    ``heldout_loss`` and ``exact_match`` lists.
    """
    from ogaudit.data.instructions import with_responses
    from ogaudit.review.instructions import cleaned_pairs

    settings = llm_settings(settings)
    keep, edits, counts = cleaned_pairs(dataset, state)
    lm = causal_lm.load_causal_lm(settings.model, cache=cache)
    rows, n_rows, _ = pair_rows(lm, dataset, cache, None, cancel)
    edited_positions = sorted(edits)
    if edited_positions:
        changed = with_responses(dataset, edits).subset(np.asarray(edited_positions))
        edit_rows, _, _ = pair_rows(lm, changed, cache, None, cancel)
        where = {p: i for i, p in enumerate(edited_positions)}
    kept = np.flatnonzero(keep)

    def cleaned_rows(index) -> np.ndarray:
        positions = kept[np.asarray(index)]
        plain = [p for p in positions if p not in edits]
        parts = {}
        if plain:
            parts.update(zip(plain, rows(np.asarray(plain)), strict=True))
        changed_here = [p for p in positions if p in edits]
        if changed_here:
            parts.update(zip(changed_here, edit_rows(np.asarray([where[p] for p in changed_here])), strict=True))
        width = max(part.shape[0] for part in parts.values())
        return np.stack([_pad(parts[p], width) for p in positions])

    test_rows, test_n, _ = pair_rows(lm, reference, cache, None, cancel)
    categories = np.asarray(reference.class_names, dtype=object)[reference.y]
    checked = np.flatnonzero(np.isin(categories, ARITHMETIC_TASKS))[:exact_match_limit]
    expected = responses_of(reference)[checked]
    longest = max((len(lm.tokenizer(str(r), add_special_tokens=False)["input_ids"]) for r in expected), default=0)
    top = causal_lm.TopNetwork(lm, seed=settings.seed)
    initial = top.adapter_state()
    epochs = settings.epochs or LLM_EPOCHS
    sides = {"before": (rows, n_rows), "after": (cleaned_rows, len(kept))}
    out: dict = {"counts": counts, "seeds": list(seeds), "exact_match_pairs": len(checked), "epochs": epochs}
    steps, done = len(seeds) * 2, 0
    for name, (side_rows, side_n) in sides.items():
        out[name] = {"heldout_loss": [], "exact_match": []}
        for seed in seeds:
            with torch.no_grad():
                for parameter_name, parameter in top.named_parameters():
                    if parameter_name in initial:
                        parameter.copy_(initial[parameter_name])
            causal_lm.fine_tune(
                top,
                side_rows,
                side_n,
                epochs=epochs,
                batch_size=TRAIN_BATCH,
                learning_rate=LEARNING_RATE,
                seed=seed,
                cancel=cancel,
            )
            out[name]["heldout_loss"].append(float(causal_lm.pair_losses(top, test_rows, test_n).mean()))
            if len(checked):
                answers = causal_lm.generate(lm, prompts_of(reference)[checked], max_new_tokens=longest + 2)
                right = [
                    a.strip() == str(r).strip() for a, r in zip(answers, responses_of(reference)[checked], strict=True)
                ]
                out[name]["exact_match"].append(float(np.mean(right)))
            done += 1
            report(progress, "verify", done / steps, f"{name}, seed {seed}")
    return out


def _pad(packed: np.ndarray, width: int) -> np.ndarray:
    """One pair's packed rows (T, H + 3) padded with empty tokens (attention 0) to ``width`` tokens."""
    if packed.shape[0] >= width:
        return packed
    return np.concatenate([packed, np.zeros((width - packed.shape[0], packed.shape[1]), dtype=packed.dtype)])


def pair_gradients(
    arrays: dict[str, np.ndarray],
    settings: AuditSettings,
    prompts,
    responses,
    *,
    cache: ArtifactCache,
) -> np.ndarray:
    """(M, D) projected LoRA gradients of new prompt/response pairs under a finished run's adapters, in the run's
    projection: what a user's own test prompt needs to be set against every training pair's gradient.

    ``arrays``: the run's ``llm.npz`` (:meth:`~ogaudit.results.RunFolder.read_llm`; its ``lora/<name>`` weights);
    ``settings``: the run's settings (model, projection dimension, seed). The pairs pass through the whole model
    once (no cache: a handful of pairs)."""
    settings = llm_settings(settings)
    prompts, responses = [str(p) for p in prompts], [str(r) for r in responses]
    if (
        not prompts
        or len(prompts) != len(responses)
        or not all(p.strip() and r.strip() for p, r in zip(prompts, responses, strict=True))
    ):
        raise SettingsError("Give one non-empty response for each non-empty prompt.")
    lm = causal_lm.load_causal_lm(settings.model, cache=cache)
    top = causal_lm.TopNetwork(lm, seed=settings.seed)
    saved = {name[len("lora/") :]: value for name, value in arrays.items() if name.startswith("lora/")}
    with torch.no_grad():
        for name, parameter in top.named_parameters():
            if name in saved:
                parameter.copy_(torch.as_tensor(saved[name]))
    ids, response, attention = causal_lm.encode_pairs(lm.tokenizer, prompts, responses)
    states = causal_lm.lower_states(lm, ids, attention)
    packed = causal_lm.pack(states, ids, response, attention)
    layers = LayerGradientSettings(
        layers=top.adapter_names(), dim=settings.projection_dim, seed=settings.seed, batch_size=GRADIENT_BATCH
    )
    return np.asarray(
        project_layer_gradients(
            top, packed, np.zeros(len(prompts), dtype=np.int64), layers, loss=causal_lm.summed_loss
        ),
        dtype=np.float32,
    )
