"""End of turn: generation stops at every end-of-turn token a template defines, and SFT targets end with it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dcr.align.train import encode
from dcr.generate import generate_texts
from dcr.prompts import chat_turn_end, response_suffix, stop_ids
from dcr.testing import tiny_lm

GEMMA_STYLE = ("{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
               "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
TURN_ENDS = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>"]
# template -> (chat template to install or None, the end-of-turn text that template must use)
CASES = {"chat": (GEMMA_STYLE, "<end_of_turn>"), "qwen2.5": (None, "<|im_end|>"),
         "llama3": (None, "<|eot_id|>"), "plain": (None, "</s>")}


def _lm(template: str) -> tuple[Any, Any]:
    model, tok = tiny_lm("llama", seed=0)
    tok.add_special_tokens({"additional_special_tokens": TURN_ENDS + ["<start_of_turn>"]})
    chat, _ = CASES[template]
    tok.chat_template = chat
    return model, tok


def _always(model: Any, token_id: int) -> Any:
    """Make the model predict ``token_id`` at every step (an LM head of zeros plus a one-hot bias)."""
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[token_id] = 10.0
    model.lm_head = head
    return model


@pytest.mark.parametrize("template", sorted(CASES))
def test_stop_ids_and_sft_target_end(template: str) -> None:
    model, tok = _lm(template)
    end = CASES[template][1]
    assert response_suffix(tok, template) == end
    end_id = tok.convert_tokens_to_ids(end)
    assert end_id in stop_ids(tok, template, model) and tok.eos_token_id in stop_ids(tok, template, model)
    enc = encode(tok, {"prompt": "hi", "response": "ok"}, template, 256)
    assert enc is not None and enc["input_ids"][-1] == end_id and enc["labels"][-1] == end_id


@pytest.mark.parametrize("template", sorted(CASES))
def test_generation_stops_at_end_of_turn(template: str) -> None:
    """The model emits the template's end-of-turn token first: one forward pass, not max_new_tokens of them."""
    model, tok = _lm(template)
    end_id = tok.convert_tokens_to_ids(CASES[template][1])
    _always(model, end_id)
    calls = []
    model.model.register_forward_hook(lambda *a: calls.append(1))
    assert generate_texts(model, tok, ["hello there"], max_new_tokens=12, template=template) == [""]
    assert len(calls) == 1


def test_generation_config_eos_list_is_kept() -> None:
    model, tok = _lm("plain")
    model.generation_config.eos_token_id = [tok.eos_token_id, 7]
    assert stop_ids(tok, "plain", model) == [tok.eos_token_id, 7]


def test_chat_turn_end_falls_back_to_eos() -> None:
    _, tok = tiny_lm("llama")  # its ChatML-like template ends a message with a bare newline
    assert chat_turn_end(tok) == tok.eos_token


@pytest.mark.integration
@pytest.mark.parametrize("name,end", [("smollm2-135m", "<|im_end|>"),
                                      ("gemma3-270m", "<eos>")])  # the base model has no chat template: plain
def test_real_tokenizers(name: str, end: str) -> None:
    from dcr.models import load_tokenizer, pull

    tok = load_tokenizer(str(pull(name)))
    assert response_suffix(tok, "auto") == end
    assert tok.convert_tokens_to_ids(end) in stop_ids(tok, "auto")
