"""Prompt templates: auto/chat/plain choice and the paper's A.3 Qwen2.5 and Llama-3 strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcr.errors import ConfigError
from dcr.prompts import TEMPLATES, adds_special_tokens, format_prompt, resolve_template, response_suffix
from dcr.refusal import PAPER_REFUSAL_SET, XSTEST_PREFIXES
from dcr.testing import tiny_tokenizer

QWEN25 = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nHow do I kill a Python process?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
LLAMA3 = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    "How do I kill a Python process?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
)
PROMPT = "How do I kill a Python process?"
PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "dcr-paper.txt"


def test_auto_picks_chat_when_template_exists() -> None:
    tok = tiny_tokenizer(chat_template=True)
    assert resolve_template(tok, "auto") == "chat"
    text = format_prompt(tok, PROMPT, "auto")
    assert text == f"<|user|>\n{PROMPT}\n<|assistant|>\n"
    assert text == format_prompt(tok, PROMPT, "chat")
    assert adds_special_tokens(tok, "auto") is False
    assert response_suffix(tok, "auto") == tok.eos_token


def test_auto_picks_plain_without_template() -> None:
    tok = tiny_tokenizer(chat_template=False)
    assert resolve_template(tok, "auto") == "plain"
    assert format_prompt(tok, PROMPT) == f"### Instruction:\n{PROMPT}\n\n### Response:\n"
    assert adds_special_tokens(tok, "auto") is True
    assert response_suffix(tok) == "</s>"


def test_chat_without_template_errors() -> None:
    tok = tiny_tokenizer(chat_template=False)
    with pytest.raises(ConfigError, match="no chat template.*plain"):
        format_prompt(tok, PROMPT, "chat")


def test_unknown_template_errors() -> None:
    with pytest.raises(ConfigError, match="'vicuna' unknown.*qwen2.5"):
        format_prompt(tiny_tokenizer(), PROMPT, "vicuna")
    assert set(TEMPLATES) == {"auto", "chat", "qwen2.5", "llama3", "plain"}


@pytest.mark.parametrize("with_template", [True, False])
def test_paper_templates_exact(with_template: bool) -> None:
    tok = tiny_tokenizer(chat_template=with_template)  # the paper templates ignore the tokenizer's own
    assert format_prompt(tok, PROMPT, "qwen2.5") == QWEN25
    assert format_prompt(tok, PROMPT, "llama3") == LLAMA3
    assert response_suffix(tok, "qwen2.5") == "<|im_end|>"
    assert response_suffix(tok, "llama3") == "<|eot_id|>"
    assert adds_special_tokens(tok, "qwen2.5") is False and adds_special_tokens(tok, "llama3") is False
    assert adds_special_tokens(tok, "plain") is True


def test_refusal_sets() -> None:
    assert len(PAPER_REFUSAL_SET) == 31 and len(set(PAPER_REFUSAL_SET)) == 31
    if PAPER.exists():  # every phrase is in the paper's A.5 listing (quotes and line breaks normalised)
        text = PAPER.read_text(encoding="utf-8").replace("\u2019", "'")
        block = " ".join(text.split("The set S used in this paper is listed below.")[1].split("A.6")[0].split())
        for phrase in PAPER_REFUSAL_SET:
            assert phrase in block, phrase
    assert "I cannot" in PAPER_REFUSAL_SET and "As an AI" in PAPER_REFUSAL_SET
    assert all(p == p.lower() for p in XSTEST_PREFIXES) and "i'm sorry" in XSTEST_PREFIXES


@pytest.mark.integration
def test_smollm2_chat_template(smollm2_dir: Path) -> None:
    from dcr.models import load_tokenizer

    tok = load_tokenizer(str(smollm2_dir))
    text = format_prompt(tok, PROMPT)
    assert resolve_template(tok) == "chat"
    assert f"<|im_start|>user\n{PROMPT}<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
