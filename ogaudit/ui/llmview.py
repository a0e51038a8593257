"""The "Language model" tab of an instruction audit: prompt/response cards with the evidence behind each flag and
keep / remove / edit; which training pairs drive a test prompt; how each score did on planted wrong responses.

Arranges library calls only: the scores come from the run table (:mod:`ogaudit.pipeline.instructions`), the
influence from ``llm.npz`` (:func:`ogaudit.detectors.similarity.influence`), decisions go through
:func:`ogaudit.review.actions.decide` (an edited response is a ``keep`` with the new text in its note,
:mod:`ogaudit.review.instructions`). Every text is user data, shown with ``st.text`` (never rendered as markdown).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ogaudit.data.dataset import Dataset
from ogaudit.data.instructions import is_instructions, prompts_of, responses_of
from ogaudit.detectors.similarity import influence
from ogaudit.errors import OgauditError
from ogaudit.results import Run, RunFolder
from ogaudit.review.actions import decide
from ogaudit.review.instructions import edit_note, edited_responses
from ogaudit.review.ledger import Ledger
from ogaudit.ui.text import md

LONG_TEXT = 400
"""Characters above which a prompt or response box keeps a fixed height and scrolls."""
BOX_PX = 160
PAGE = 10
EVIDENCE = {
    "loss": "response NLL",
    "grad_norm": "LoRA gradient norm",
    "iforest_category": "isolation forest in its category",
    "grad_cosine": "disagreement with its task's reference gradients (−cos)",
}


def is_instruction_run(run: Run) -> bool:
    return run.record.get("dataset", {}).get("kind") == "instructions"


def llm_panel(
    ledger: Ledger,
    run: Run,
    decisions: pd.DataFrame,
    annotator: str | None,
    dataset: Dataset | None,
    *,
    can_verify: bool = False,
):
    """The whole tab: score summary, flagged cards, the influence view, and (``can_verify``) the re-tune check."""
    model = run.record.get("model", {})
    _summary(model)
    if dataset is None or not is_instructions(dataset):
        st.info("The prompt/response pairs cannot be read: the data moved or changed since the audit.")
        return
    st.markdown("#### Flagged pairs")
    _cards(ledger, run, decisions, annotator, dataset)
    st.markdown("#### Which training pairs drive this test prompt")
    _influence(run, dataset)
    if can_verify:
        st.markdown("#### Verify: re-tune with and without the decisions")
        _verify(run, dataset, decisions)


def _verify(run: Run, dataset: Dataset, decisions: pd.DataFrame) -> None:
    reference = run.record.get("model", {}).get("reference")
    if not reference:
        st.info("This audit had no held-out pairs (ogaudit scan … --reference FILE) to measure on.")
        return
    st.caption(
        "Fine-tunes the adapters twice from the same start (all pairs; the pairs kept, with edited responses), "
        "then measures the held-out response NLL and exact-match accuracy on the arithmetic test prompts. Minutes "
        "with SmolLM2 on a CPU; one seed, so a small difference is not a change."
    )
    key = f"llm-verify-{run.fingerprint}"
    if st.button("Re-tune and compare", key="llm-verify"):
        from ogaudit.cache.artifacts import ArtifactCache
        from ogaudit.data.instructions import load_instructions
        from ogaudit.pipeline.instructions import verify_instructions

        with st.spinner("Re-tuning twice…"):
            try:
                st.session_state[key] = verify_instructions(
                    dataset,
                    decisions,
                    load_instructions(reference, seed=run.settings.seed),
                    run.settings,
                    cache=ArtifactCache(),
                )
            except OgauditError as error:
                st.error(md(error))
    report = st.session_state.get(key)
    if report:
        rows = [
            {
                "": side,
                "pairs": report["counts"]["input"] if side == "before" else report["counts"]["kept"],
                "held-out NLL": float(np.mean(report[side]["heldout_loss"])),
                "exact match": float(np.mean(report[side]["exact_match"])) if report[side]["exact_match"] else None,
            }
            for side in ("before", "after")
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="llm-verify-table")
        st.caption(
            f"{report['counts']['removed']} removed, {report['counts']['edited']} edited; exact match on "
            f"{report['exact_match_pairs']} arithmetic test prompts."
        )


def _summary(model: dict) -> None:
    metrics = model.get("score_metrics") or {}
    if metrics:
        table = pd.DataFrame(
            [
                {
                    "score": name,
                    "AUROC": m.get("auroc"),
                    "average precision": m.get("average_precision"),
                    "precision of the flags": m.get("precision_at_budget"),
                }
                for name, m in metrics.items()
            ]
        )
        st.caption("Each score on the planted wrong responses (the run ranks by its detector's):")
        st.dataframe(table, hide_index=True, key="llm-metrics")
    found = model.get("class_detection") or {}
    if found:
        st.caption(
            "Class detection (the paper's Table 3 measure: do a test prompt's most influential training pairs come "
            "from its own task?): "
            + "; ".join(f"{md(name)} AUC {v['auc']:.3f}, recall {v['recall']:.3f}" for name, v in found.items())
        )


def _text_box(text: str, key: str) -> None:
    height = BOX_PX if len(text) > LONG_TEXT else "content"
    with st.container(border=True, key=key, height=height):
        st.text(text)


def _cards(ledger: Ledger, run: Run, decisions: pd.DataFrame, annotator: str | None, dataset: Dataset) -> None:
    table = run.table
    flagged = table[table["flagged"]].sort_values("rank", kind="stable")
    if flagged.empty:
        st.success("No pair is flagged.")
        return
    position = {sample_id: i for i, sample_id in enumerate(dataset.sample_ids.tolist())}
    current = decisions.set_index("sample_id") if len(decisions) else pd.DataFrame()
    edits = edited_responses(decisions) if len(decisions) else {}
    ranks = {c: table[c].rank(ascending=False, method="min").astype(int) for c in EVIDENCE if c in table}
    pages = max(1, -(-len(flagged) // PAGE))
    page = st.number_input("Page", min_value=1, max_value=pages, value=1, key="llm-page")
    prompts, responses = prompts_of(dataset), responses_of(dataset)
    for row in flagged.iloc[(page - 1) * PAGE : page * PAGE].itertuples():
        sample_id = str(row.sample_id)
        if sample_id not in position:
            continue
        i = position[sample_id]
        with st.container(border=True, key=f"llm-card-{sample_id}"):
            head = f"**#{row.rank}** · {md(sample_id)} · task **{md(row.given_label)}** · score {row.score:.3g}"
            if sample_id in current.index:
                head += f" · decision: **{md(current.loc[sample_id, 'action'])}** by {md(current.loc[sample_id, 'annotator'])}"
            st.markdown(head)
            st.caption("Prompt")
            _text_box(str(prompts[i]), f"llm-prompt-{sample_id}")
            st.caption("Response" + (" (edited in review; the original below)" if sample_id in edits else ""))
            if sample_id in edits:
                _text_box(edits[sample_id], f"llm-edited-{sample_id}")
            _text_box(str(responses[i]), f"llm-response-{sample_id}")
            n = len(table)
            st.caption(
                "Why flagged: "
                + "; ".join(
                    f"{label} {getattr(row, column):.3g} (rank {ranks[column][row.Index]} of {n:,})"
                    for column, label in EVIDENCE.items()
                    if column in ranks
                )
                + (f"; perplexity {row.perplexity:.3g}" if hasattr(row, "perplexity") else "")
            )
            _actions(ledger, run, sample_id, str(responses[i]), edits.get(sample_id), annotator)


def _actions(ledger, run, sample_id: str, response: str, edited: str | None, annotator: str | None) -> None:
    cells = st.columns([1, 1, 3])
    disabled = not annotator
    if cells[0].button("Keep", key=f"llm-keep-{sample_id}", disabled=disabled):
        _decide(ledger, run, sample_id, "keep", annotator)
    if cells[1].button("Remove", key=f"llm-remove-{sample_id}", disabled=disabled):
        _decide(ledger, run, sample_id, "remove", annotator)
    with cells[2].expander("Edit the response"):
        text = st.text_area("New response", value=edited or response, key=f"llm-edit-{sample_id}")
        if st.button("Save the edit", key=f"llm-save-{sample_id}", disabled=disabled):
            try:
                _decide(ledger, run, sample_id, "keep", annotator, note=edit_note(text))
            except OgauditError as error:
                st.error(md(error))


def _decide(ledger, run, sample_id: str, action: str, annotator: str | None, note: str | None = None) -> None:
    decide(ledger, run, [sample_id], action, annotator=annotator, note=note)
    st.rerun()


@st.cache_resource(max_entries=2, show_spinner="Reading the LoRA gradients…")
def _arrays(path: str, fingerprint: str) -> dict | None:
    return RunFolder(path).read_llm()


def _influence(run: Run, dataset: Dataset) -> None:
    try:
        arrays = _arrays(str(run.path), f"{run.fingerprint}-{run.record.get('run_dir')}")
    except OgauditError as error:
        st.warning(md(error))
        return
    if arrays is None:
        return
    has_tests = "test_gradients" in arrays
    sources = (["A held-out test prompt"] if has_tests else []) + ["My own prompt and answer"]
    source = st.radio("Explain", sources, horizontal=True, key="llm-explain")
    if source == "My own prompt and answer":
        prompt = st.text_area("Prompt", key="llm-own-prompt")
        answer = st.text_area("Answer (the response whose drivers you want)", key="llm-own-answer")
        key = f"llm-own-{run.fingerprint}"
        if st.button("Find the training pairs behind this answer", key="llm-own-go"):
            from ogaudit.cache.artifacts import ArtifactCache
            from ogaudit.pipeline.instructions import pair_gradients

            with st.spinner("Taking the answer's gradient…"):
                try:
                    st.session_state[key] = (
                        prompt,
                        answer,
                        pair_gradients(arrays, run.settings, [prompt], [answer], cache=ArtifactCache())[0],
                    )
                except OgauditError as error:
                    st.error(md(error))
        found = st.session_state.get(key)
        if not found or found[:2] != (prompt, answer):
            return
        gradient = found[2]
    else:
        prompts = arrays["test_prompts"]
        labels = [f"{i}: {str(p)[:90]}" for i, p in enumerate(prompts)]
        choice = st.selectbox("Test prompt", range(len(prompts)), format_func=lambda i: labels[i], key="llm-test")
        _text_box(f"{prompts[choice]}\n──── expected ────\n{arrays['test_responses'][choice]}", "llm-test-pair")
        gradient = arrays["test_gradients"][choice]
    _drivers(run, dataset, arrays, gradient)


def _drivers(run: Run, dataset: Dataset, arrays: dict, gradient: np.ndarray) -> None:
    scores = influence(arrays["train_gradients"], gradient)[0]
    order = np.argsort(-scores, kind="stable")
    table = run.table
    frame = pd.DataFrame(
        {
            "influence": scores,
            "task": table["given_label"].to_numpy(),
            "sample_id": table["sample_id"].to_numpy(),
            "flagged": table["flagged"].to_numpy(),
            "prompt": [str(p)[:120] for p in prompts_of(dataset)],
            "response": [str(r)[:120] for r in responses_of(dataset)],
        }
    )
    st.caption(
        "Influence = ⟨test gradient, training gradient⟩ of the LoRA adapters (TracIn): a positive pair pulled the "
        "model towards this answer, a negative one away from it."
    )
    st.dataframe(frame.iloc[order[:10]], hide_index=True, key="llm-drivers")
    st.caption("Pushing away from this answer most:")
    st.dataframe(frame.iloc[order[::-1][:5]], hide_index=True, key="llm-opposers")
