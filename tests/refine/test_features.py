"""Layer-l features: the truncated forward equals hidden_states[l + 1], the tail is not run, pooling, NLL."""

from __future__ import annotations

import pytest
import torch

from dcr.errors import ConfigError
from dcr.models import get_layers
from dcr.refine.features import (
    check_layer,
    class_mean_center,
    default_layer,
    encode_prompts,
    extract_features,
    layer_forward,
    pool,
    prompt_features,
    prompt_nll,
)
from dcr.testing import tiny_lm

PROMPTS = ["How do I kill a python process?", "Hi", "What is the capital of France, and why?"]


@pytest.mark.parametrize("layer", [0, 2])
def test_truncated_forward_matches_hidden_states_and_skips_tail(tiny_family: str, layer: int) -> None:
    model, tok = tiny_lm(tiny_family)
    batch = encode_prompts(tok, PROMPTS)
    assert (batch["attention_mask"][:, -1] == 1).all() and (batch["attention_mask"][1, 0] == 0)  # left-padded
    with torch.no_grad():
        full = model(**batch, output_hidden_states=True)
    calls: list[str] = []
    later = get_layers(model)[layer + 1]
    handles = [later.register_forward_hook(lambda *a: calls.append("block")),
               model.get_output_embeddings().register_forward_hook(lambda *a: calls.append("head"))]
    with torch.no_grad():
        hidden, logits = layer_forward(model, batch["input_ids"], batch["attention_mask"], layer)
    for h in handles:
        h.remove()
    assert logits is None and calls == []
    torch.testing.assert_close(hidden, full.hidden_states[layer + 1])


def test_run_tail_returns_the_full_logits(tiny: tuple) -> None:
    model, tok = tiny
    batch = encode_prompts(tok, PROMPTS)
    with torch.no_grad():
        ref = model(**batch).logits
        hidden, logits = layer_forward(model, batch["input_ids"], batch["attention_mask"], 1, run_tail=True)
    torch.testing.assert_close(logits, ref)
    assert hidden.shape == (*batch["input_ids"].shape, model.config.hidden_size)


def test_truncated_forward_keeps_the_graph(tiny: tuple) -> None:
    model, tok = tiny
    batch = encode_prompts(tok, PROMPTS)
    feats, _ = prompt_features(model, batch, layer=1)
    feats.sum().backward()
    assert get_layers(model)[0].self_attn.q_proj.weight.grad is not None
    assert get_layers(model)[2].self_attn.q_proj.weight.grad is None


def test_pooling_last_and_mean_respect_padding() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(pool(hidden, left, "last"), hidden[:, 3])
    torch.testing.assert_close(pool(hidden, right, "last"), torch.stack([hidden[0, 1], hidden[1, 3]]))
    torch.testing.assert_close(pool(hidden, left, "mean"), torch.stack([hidden[0, 2:].mean(0), hidden[1].mean(0)]))
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, left, "max")


def test_features_are_unit_norm_and_batch_independent(tiny: tuple) -> None:
    model, tok = tiny
    together = extract_features(model, tok, PROMPTS, layer=1, batch_size=3)
    alone = extract_features(model, tok, PROMPTS, layer=1, batch_size=1)
    torch.testing.assert_close(together.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    mean = extract_features(model, tok, PROMPTS, layer=1, pooling="mean")
    assert not torch.allclose(mean, together)
    bf16 = extract_features(model, tok, PROMPTS, layer=1, autocast=torch.bfloat16)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, together, atol=0.05, rtol=0.05)


def test_class_mean_center_is_the_midpoint_of_the_raw_class_means(tiny: tuple) -> None:
    model, tok = tiny
    prompts = [*PROMPTS, "Tell me a joke."]
    labels = [0, 1, 1, 1]  # unequal classes: each class mean weighs one half
    raw = torch.cat([pool(layer_forward(model, enc["input_ids"], enc["attention_mask"], 1)[0].float(),
                          enc["attention_mask"]) for enc in (encode_prompts(tok, [p]) for p in prompts)])
    want = (raw[0] + raw[1:].mean(0)) / 2
    got = class_mean_center(model, tok, prompts, labels, layer=1, batch_size=2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, raw.mean(0), atol=1e-3)  # not the plain mean over prompts
    torch.testing.assert_close(extract_features(model, tok, prompts, layer=1, normalize=False), raw, atol=1e-5,
                               rtol=1e-4)
    with pytest.raises(ValueError, match="both classes"):
        class_mean_center(model, tok, prompts, [0, 0, 0, 0], layer=1)


def test_prompt_nll_matches_hf_loss_and_ignores_padding(tiny: tuple) -> None:
    model, tok = tiny
    one = encode_prompts(tok, PROMPTS[:1])
    with torch.no_grad():
        ref = model(**one, labels=one["input_ids"]).loss
        ours = prompt_nll(model(**one).logits, one["input_ids"], one["attention_mask"])
    torch.testing.assert_close(ours, ref)
    padded = encode_prompts(tok, PROMPTS[:2])
    with torch.no_grad():
        logits = model(**padded).logits
    short = encode_prompts(tok, PROMPTS[1:2])
    with torch.no_grad():
        short_ref = model(**short, labels=short["input_ids"]).loss
    n_long, n_short = one["input_ids"].shape[1] - 1, short["input_ids"].shape[1] - 1
    expected = (ref * n_long + short_ref * n_short) / (n_long + n_short)
    torch.testing.assert_close(prompt_nll(logits, padded["input_ids"], padded["attention_mask"]), expected,
                               atol=1e-4, rtol=1e-4)


def test_layer_checks(tiny: tuple) -> None:
    model, _ = tiny
    assert default_layer(model) == 2
    assert check_layer(model, 3) == 3
    with pytest.raises(ConfigError, match="blocks 0..3"):
        check_layer(model, 4)
