"""The "New audit" panel: choose data, model, detector, budget, map and planted noise; start the job."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ogaudit.cache.artifacts import default_cache_dir
from ogaudit.data.builtins import BUILTINS
from ogaudit.data.instructions import INSTRUCTION_BUILTINS
from ogaudit.data.text import TEXT_BUILTINS, TEXT_SUFFIXES
from ogaudit.data.uploads import MAX_UPLOAD_BYTES
from ogaudit.errors import OgauditError
from ogaudit.server.jobs import submit_audit
from ogaudit.settings import DEFAULT_BUDGET, DEFAULT_DETECTOR, DETECTOR_NAMES, MAP_METHODS, NOISE_KINDS
from ogaudit.ui import state
from ogaudit.ui.forms import MODEL_CHOICES, SOURCES, SetupChoices, prepare_audit
from ogaudit.ui.text import md

MODEL_HELP = {
    "auto": "auto (small CNN ≤ 64 px, EfficientNet-Lite0 above, MLP for vectors, linear head for text)",
    "cnn": "small CNN, trained from scratch",
    "mlp": "MLP (feature vectors)",
    "efficientnet": "pretrained EfficientNet-Lite0 + trained head",
    "linear": "linear head (text: on frozen MiniLM embeddings)",
    "lora": "text: fine-tune MiniLM's top layers (LoRA); slow on a CPU",
    "checkpoint": "my checkpoint (upload below)",
}


def new_audit_panel(root: Path, by: str | None = None) -> None:
    """A form in the sidebar; on submit, the project folder is made and the audit starts in the background, its
    request naming ``by`` (who started it: they may delete the project if it fails).

    The data source is chosen outside the form, so that the form shows only that source's inputs (a form's own
    widgets change nothing on the page until it is submitted).
    """
    source = st.radio("Data", SOURCES, horizontal=True, key="setup-source")
    with st.form("new-audit", enter_to_submit=False):  # Enter in a field must not start an audit
        if source == "Built-in":
            st.selectbox(
                "Built-in",
                (*BUILTINS, *TEXT_BUILTINS, INSTRUCTION_BUILTINS[0]),
                index=BUILTINS.index("mnist5k"),
                key="setup-builtin",
                help="instruct-tasks: prompt/response pairs with planted wrong responses, audited by fine-tuning "
                "SmolLM2 (model auto) with LoRA",
            )
        elif source == "Path":
            st.text_input(
                "Path",
                placeholder="/data/images, labels.csv, data.npz, a Hugging Face folder or .parquet, a FiftyOne export, "
                "or texts .csv/.tsv/.jsonl/.parquet",
                key="setup-path",
            )
        elif source == "Upload zip":
            st.file_uploader(
                f"Zip of an image folder (≤ {MAX_UPLOAD_BYTES // 1024**2} MB)", type=["zip"], key="setup-upload"
            )
        else:
            st.file_uploader(
                f"Text table: .csv, .tsv, .jsonl or .parquet (≤ {MAX_UPLOAD_BYTES // 1024**2} MB)",
                type=[suffix.lstrip(".") for suffix in sorted(TEXT_SUFFIXES)],
                key="setup-text-upload",
            )
        if source in ("Path", "Upload text table"):
            st.caption("Tables and manifests: the columns to read (blank: found by their names)")
            left, middle, right = st.columns(3)
            left.text_input("Text column", placeholder="text, review…", key="setup-text-column")
            middle.text_input("Label column", placeholder="label, sentiment…", key="setup-label-column")
            right.text_input("Id column", placeholder="id… (else row numbers)", key="setup-id-column")
        if source == "Path":
            st.text_input(
                "Image path column (CSV manifests, Parquet tables)",
                placeholder="path, filepath, file… (absolute paths: inside the data folders)",
                key="setup-path-column",
            )
        st.selectbox("Model", MODEL_CHOICES, format_func=MODEL_HELP.get, key="setup-model")
        with st.expander("Your checkpoint (model: my checkpoint)"):
            st.file_uploader(
                "Checkpoint (state dict; TorchScript is refused)",
                type=["pt", "pth", "ckpt", "safetensors"],
                key="setup-checkpoint",
            )
            st.text_input(
                "Checkpoint architecture (torchvision name, or timm:NAME)", placeholder="resnet18", key="setup-arch"
            )
        with st.expander("Your model's predictions (instead of a model: nothing trained)"):
            st.file_uploader(
                "Features + probabilities per sample (.npz: features, probs or logits, sample_ids; or .parquet)",
                type=["npz", "parquet"],
                key="setup-predictions",
            )
        detectors = sorted(DETECTOR_NAMES)
        st.selectbox("Detector", detectors, index=detectors.index(DEFAULT_DETECTOR), key="setup-detector")
        st.number_input(
            "Flag budget (fraction, or a count ≥ 1)", min_value=0.001, value=DEFAULT_BUDGET, key="setup-budget"
        )
        st.selectbox(
            "Map", MAP_METHODS, key="setup-map", help="UMAP is slower (first use compiles, ~10 s); PCA is instant."
        )
        st.number_input("Planted noise (demo: flip this share of labels)", 0.0, 0.9, 0.0, 0.05, key="setup-noise")
        st.selectbox(
            "Planted noise kind",
            NOISE_KINDS,
            key="setup-noise-kind",
            help="symmetric: any other class; pairs: a fixed partner class; instance: where a weak classifier is "
            "unsure, to its second choice; annotator: the majority of three simulated annotators who confuse "
            "similar classes",
        )
        st.number_input("Epochs (0 = by data size)", 0, 500, 0, key="setup-epochs")
        st.number_input("Subset size (0 = all samples)", 0, None, 0, key="setup-limit")
        st.text_input("Project name (optional)", key="setup-name")
        submitted = st.form_submit_button("Start audit", type="primary")
    if submitted:
        _start(root, by)


def _choices() -> SetupChoices:
    get = st.session_state.get
    upload, checkpoint, table = get("setup-upload"), get("setup-checkpoint"), get("setup-text-upload")
    predictions = get("setup-predictions")
    return SetupChoices(
        source=get("setup-source"),
        builtin=get("setup-builtin") or "mnist5k",
        path=get("setup-path") or "",
        upload=None if upload is None else upload.getvalue(),
        upload_name="" if upload is None else upload.name,
        text_upload=None if table is None else table.getvalue(),
        text_upload_name="" if table is None else table.name,
        text_column=get("setup-text-column") or "",
        label_column=get("setup-label-column") or "",
        id_column=get("setup-id-column") or "",
        path_column=get("setup-path-column") or "",
        model=get("setup-model"),
        checkpoint=None if checkpoint is None else checkpoint.getvalue(),
        checkpoint_name="" if checkpoint is None else checkpoint.name,
        arch=get("setup-arch") or "",
        predictions=None if predictions is None else predictions.getvalue(),
        predictions_name="" if predictions is None else predictions.name,
        detector=get("setup-detector"),
        budget=get("setup-budget"),
        map_method=get("setup-map"),
        noise_rate=get("setup-noise"),
        noise_kind=get("setup-noise-kind") or "symmetric",
        epochs=int(get("setup-epochs")),
        limit=int(get("setup-limit")),
        name=get("setup-name") or "",
    )


def _start(root: Path, by: str | None = None) -> None:
    try:
        project, data, settings = prepare_audit(_choices(), root)
    except OgauditError as error:
        st.error(md(error))
        return
    job = submit_audit(state.job_registry(), project, data, settings, cache_dir=default_cache_dir(), by=by)
    st.query_params["project"] = project.name
    st.query_params["job"] = job.job_id
    st.rerun()
