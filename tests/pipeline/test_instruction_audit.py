"""The instruction audit end to end on a tiny random causal LM: a run folder the review opens, every score, the
influence on the test prompts, class detection, and a rerun with another score from the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ogaudit.data.instructions import planted_of
from ogaudit.errors import SettingsError
from ogaudit.pipeline.run import AuditSettings, audit
from ogaudit.results import RunFolder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory, tiny_causal_lm, cache_dir):
    folder = tmp_path_factory.mktemp("llm") / "tasks"
    settings = AuditSettings(model=str(tiny_causal_lm), limit=60, epochs=1, projection_dim=256, map_method="pca")
    torch.set_num_threads(1)
    return folder, settings, audit("instruct-tasks", settings, out_dir=folder, cache_dir=cache_dir)


def test_the_run_holds_every_score_and_the_planted_truth(llm_run):
    folder, settings, result = llm_run
    table = result.scores
    assert len(table) == 60 and (table["is_noisy"] == planted_of(result.dataset)).all() and table["is_noisy"].any()
    for column in ("iforest_category", "grad_norm", "loss", "perplexity", "grad_cosine"):
        assert np.isfinite(table[column]).all(), column
    np.testing.assert_allclose(table["score"], table["iforest_category"])  # the default ranks as the paper does
    np.testing.assert_allclose(table["perplexity"], np.exp(table["loss"]))
    assert (table["suggested_label"] == table["given_label"]).all()  # a category is never "relabelled"
    model = result.record["model"]
    assert set(model["score_metrics"]) == {"iforest-per-class", "l2", "loss", "perplexity", "grad-cosine"}
    assert model["reference"] == "instruct-tasks-test" and model["class_detection"]["cosine"]["test_samples"] == 100
    assert result.record["metrics"] == model["score_metrics"]["iforest-per-class"]
    run = RunFolder(folder).open_run()
    assert (
        run.table["sample_id"].tolist() == table["sample_id"].tolist()
        and run.record["dataset"]["kind"] == "instructions"
    )
    arrays = RunFolder(folder).read_llm()
    assert arrays["train_gradients"].shape == (60, model["gradient_dim"]) and arrays["test_gradients"].shape[0] == 100
    assert arrays["test_prompts"].shape == (100,) and any(name.startswith("lora/") for name in arrays)


def test_gradients_are_those_of_the_response_loss(llm_run, tiny_causal_lm):
    """The l2 column is the norm of the projected gradient rows stored in llm.npz (one owner: the pipeline)."""
    folder, _, result = llm_run
    arrays = RunFolder(folder).read_llm()
    np.testing.assert_allclose(np.linalg.norm(arrays["train_gradients"], axis=1), result.scores["grad_norm"], rtol=1e-5)


def test_a_rerun_with_another_score_reads_the_cache(llm_run, cache_dir, monkeypatch):
    folder, settings, first = llm_run
    from ogaudit.pipeline import instructions

    def laid_out_again(*args, **kwargs):
        raise AssertionError("the map was laid out again: it should come from the cache")

    monkeypatch.setattr(instructions, "gradient_map", laid_out_again)
    again = audit("instruct-tasks", AuditSettings(**{**settings.to_dict(), "detector": "loss"}), cache_dir=cache_dir)
    np.testing.assert_array_equal(again.map[["x", "y"]].to_numpy(), first.map[["x", "y"]].to_numpy())
    assert again.record["model"]["cached"] is True
    np.testing.assert_allclose(again.scores["score"], first.scores["loss"], rtol=1e-6)
    np.testing.assert_allclose(again.scores["grad_norm"], first.scores["grad_norm"], rtol=1e-6)
    timings = again.record["timings_s"]
    assert timings["fine_tune"] < 2 and timings["frozen_states"] < 2 and timings["gradients"] < 2


def test_label_settings_are_refused_or_replaced(tiny_causal_lm, cache_dir, small_instructions):
    with pytest.raises(SettingsError, match="causal LM"):
        audit(small_instructions, AuditSettings(model="mlp"), cache_dir=cache_dir)
    with pytest.raises(SettingsError, match="noise_rate"):
        audit(small_instructions, AuditSettings(model=str(tiny_causal_lm), noise_rate=0.1), cache_dir=cache_dir)
    with pytest.raises(SettingsError, match="prompt/response"):
        audit("digits", AuditSettings(model=str(tiny_causal_lm)), cache_dir=cache_dir)


def test_verify_retunes_with_and_without_the_decisions(llm_run, cache_dir):
    import pandas as pd

    from ogaudit.data.instructions import load_instructions
    from ogaudit.pipeline.instructions import verify_instructions
    from ogaudit.review.instructions import edit_note

    _, settings, result = llm_run
    dataset = result.dataset
    planted = dataset.sample_ids[planted_of(dataset)]
    first = str(dataset.sample_ids[~planted_of(dataset)][0])
    state = pd.DataFrame(
        {
            "sample_id": [*planted.tolist(), first],
            "action": ["remove"] * len(planted) + ["keep"],
            "note": [None] * len(planted) + [edit_note("a new answer")],
        }
    )
    reference = load_instructions("instruct-tasks-test", limit=20)
    report = verify_instructions(
        dataset, state, reference, settings, cache=cache_dir_cache(cache_dir), exact_match_limit=4
    )
    assert report["counts"] == {"input": 60, "kept": 60 - len(planted), "removed": len(planted), "edited": 1}
    for side in ("before", "after"):
        assert len(report[side]["heldout_loss"]) == 1 and np.isfinite(report[side]["heldout_loss"]).all()
        assert len(report[side]["exact_match"]) == (1 if report["exact_match_pairs"] else 0)
    assert report["before"]["heldout_loss"] != report["after"]["heldout_loss"]


def cache_dir_cache(folder):
    from ogaudit.cache.artifacts import ArtifactCache

    return ArtifactCache(folder)


def test_a_typed_pair_gets_the_gradient_its_reference_twin_got(llm_run, cache_dir):
    """A user's own test prompt is set against the training pairs in the run's projection: the same pair typed in
    gets the gradient the audit stored for it."""
    from ogaudit.pipeline.instructions import pair_gradients

    folder, settings, _ = llm_run
    arrays = RunFolder(folder).read_llm()
    typed = pair_gradients(
        arrays, settings, arrays["test_prompts"][:3], arrays["test_responses"][:3], cache=cache_dir_cache(cache_dir)
    )
    np.testing.assert_allclose(typed, arrays["test_gradients"][:3], rtol=1e-3, atol=1e-5)
    with pytest.raises(SettingsError, match="non-empty"):
        pair_gradients(arrays, settings, ["a prompt"], [" "], cache=cache_dir_cache(cache_dir))
