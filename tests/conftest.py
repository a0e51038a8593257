"""Shared fixtures: a session-wide model cache and small real datasets written in each input kind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ogaudit.data.load import load_dataset

BROWSER_RERUNS = 1
"""How many times a failed browser test is run again (pytest-rerunfailures; the summary counts each as "rerun").

A real browser against a real server on CI's two shared cores has timing no test controls: a click that lands
while Streamlit swaps a page can be dropped. Each such failure is also fixed where it is understood (waits on
what the user sees, not on time); the rerun keeps one unlucky schedule from failing the whole run, and a browser
test that fails twice still fails."""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("flaky"):
            item.add_marker(pytest.mark.flaky(reruns=BROWSER_RERUNS, reruns_delay=2))


@pytest.fixture(autouse=True)
def local_server(monkeypatch):
    """AppTest runs no server, so Streamlit reports no listening address (which means every interface and
    would require sign-in). Tests run the app as a local-only server unless they say otherwise."""
    import ogaudit.ui.auth

    monkeypatch.setattr(ogaudit.ui.auth, "listen_address", lambda: "127.0.0.1")
    monkeypatch.delenv("OGAUDIT_AUTH", raising=False)
    monkeypatch.delenv("OGAUDIT_DATA_ROOTS", raising=False)


@pytest.fixture(autouse=True)
def fresh_server_state():
    """Each test its own server: a fresh process-wide :class:`~ogaudit.server.state.ServerState` (limiter, jobs,
    upload grants, resumed roots), as a newly started server has. Nothing a client sends can reset it."""
    from ogaudit.server.state import reset_server_state

    reset_server_state()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ogaudit-cache")


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


FINISHED_SETTINGS = {"epochs": 1, "map_method": "pca", "noise_rate": 0.1, "limit": 300}
"""The shared finished project's audit: 300 digits, 10% planted noise, one epoch, a PCA map (a few seconds)."""


@pytest.fixture(scope="session")
def finished_project(tmp_path_factory, cache_dir):
    """``(folder, result)``: one real audit written to a project folder, shared by every test that reads a finished
    project, instead of one training per test module. Read it in place; copy it (:func:`copy_of`) to write to it."""
    from ogaudit.pipeline.run import AuditSettings, audit

    folder = tmp_path_factory.mktemp("finished") / "digits"
    result = audit("digits", AuditSettings(**FINISHED_SETTINGS), out_dir=folder, cache_dir=cache_dir)
    return folder, result


@pytest.fixture(autouse=True)
def shared_project_untouched(request):
    """A test that reads the shared :func:`finished_project` must leave it as it found it (a ledger opened in place
    made a later test see a ledger a signed-out visitor never wrote): this names the test that wrote to it."""
    if "finished_project" not in request.fixturenames:
        yield
        return
    folder = request.getfixturevalue("finished_project")[0]

    def listing() -> dict[str, int]:
        return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}

    before = listing()
    yield
    after = listing()
    assert after == before, (
        f"{request.node.nodeid} wrote to the shared finished project (use copy_of): "
        f"{sorted(set(after.items()) ^ set(before.items()))[:5]}"
    )


@pytest.fixture
def copy_of(tmp_path):
    """``copy_of(folder, name=None)``: a copy of a project folder under this test's ``tmp_path``."""

    def copy(folder: Path, name: str | None = None) -> Path:
        return Path(shutil.copytree(folder, tmp_path / (name or folder.name)))

    return copy


def write_image_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> list[str]:
    """Save (N, H, W) uint8 images as PNGs under root/<class>/; return the relative paths."""
    rel_paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        rel = f"{names[label]}/img_{i:04d}.png"
        (root / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / rel)
        rel_paths.append(rel)
    return rel_paths


@pytest.fixture(scope="session")
def digit_files(tmp_path_factory, digits):
    """300 real digits as an ImageFolder, a CSV manifest over the same files, and an .npz."""
    root = tmp_path_factory.mktemp("digit-files")
    index = np.arange(300)
    images = digits.x[index, :, :, 0]
    labels = digits.y[index]
    folder = root / "folder"
    rel_paths = write_image_folder(folder, images, labels, digits.class_names)
    manifest = folder / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{digits.class_names[y]}\n" for p, y in zip(rel_paths, labels)))
    npz = root / "digits.npz"
    np.savez(npz, x=images, y=labels, ids=np.array([f"d{i}" for i in index]))
    return {"folder": folder, "manifest": manifest, "npz": npz}


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory) -> Path:
    """A Hugging Face causal-LM folder built here: a random 3-block Llama (hidden 32) with a byte-level tokenizer
    made in code, saved as safetensors. Everything a causal-LM test needs, in a second, offline."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ogaudit.models.causal_lm import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llm") / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_instructions(tmp_path_factory) -> Path:
    """60 pairs of the built-in tasks (6 per category, some planted wrong) written as JSON Lines."""
    import json

    from ogaudit.data.instructions import load_instructions, planted_of, prompts_of, responses_of

    dataset = load_instructions("instruct-tasks", limit=60, seed=0)
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(len(dataset)):
            row = {
                "id": str(dataset.sample_ids[i]),
                "prompt": prompts_of(dataset)[i],
                "response": responses_of(dataset)[i],
                "category": dataset.class_names[dataset.y[i]],
                "planted": bool(planted_of(dataset)[i]),
            }
            handle.write(json.dumps(row) + "\n")
    return path


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one torch thread is several times faster than two under load."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def module_chromium():
    """One headless chromium per test module (a launch costs ~7 s on CI's two loaded cores), for :func:`browser`."""
    from appserver import launched_chromium

    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def browser(module_chromium):
    """The module's chromium for one test: open pages in new contexts (``browser.new_context()``); every context
    the test opened is closed after it, so no page of a stopped server keeps reconnecting. Modules that define
    their own ``browser`` fixture keep theirs."""
    yield module_chromium
    for context in list(module_chromium.contexts):
        context.close()
