"""Prompt formatting: the model's chat template, the paper's A.3 templates, or a plain template.

``template`` is one of:

- ``auto``: the tokenizer's chat template when it has one, else ``plain``.
- ``chat``: the tokenizer's chat template (error if it has none).
- ``qwen2.5``: the paper's Qwen2.5 template (A.3), with the default Qwen system prompt.
- ``llama3``: the paper's Llama-3 template (A.3), user/assistant headers, no system prompt.
- ``plain``: for base models without a template (Alpaca style)::

      ### Instruction:
      {prompt}

      ### Response:
      {response}
"""

from __future__ import annotations

from typing import Any

from dcr.errors import ConfigError

TEMPLATES = ("auto", "chat", "qwen2.5", "llama3", "plain")
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def _qwen(prompt: str) -> str:
    return (
        f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )


def _llama3(prompt: str) -> str:
    return (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def _plain(prompt: str) -> str:
    return f"### Instruction:\n{prompt}\n\n### Response:\n"


END_OF_TURN = {"qwen2.5": "<|im_end|>", "llama3": "<|eot_id|>"}


def resolve_template(tokenizer: Any, template: str = "auto") -> str:
    """The concrete template name ``auto`` stands for with this tokenizer."""
    if template not in TEMPLATES:
        raise ConfigError(f"template {template!r} unknown. Fix: use one of {', '.join(TEMPLATES)}")
    if template == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    if template == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("template 'chat' asked for, but the tokenizer has no chat template. Fix: use 'plain'")
    return template


def format_prompt(tokenizer: Any, prompt: str, template: str = "auto") -> str:
    """The text fed to the model for a user ``prompt``, ending where the assistant answer starts."""
    name = resolve_template(tokenizer, template)
    if name == "chat":
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return {"qwen2.5": _qwen, "llama3": _llama3, "plain": _plain}[name](prompt)


_ANSWER = "dcr-answer-marker-7319"


def chat_turn_end(tokenizer: Any) -> str:
    """The text the tokenizer's chat template writes right after an assistant message (``<|im_end|>`` for
    ChatML, ``<end_of_turn>`` for Gemma, ``<|eot_id|>`` for Llama 3), trailing whitespace dropped; the EOS token
    when the template writes nothing there."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": _ANSWER}], tokenize=False)
    after = text.split(_ANSWER, 1)[1].rstrip() if _ANSWER in text else ""
    return after or tokenizer.eos_token or ""


def response_suffix(tokenizer: Any, template: str = "auto") -> str:
    """Text that ends an assistant turn (appended to SFT targets so the model learns to stop)."""
    name = resolve_template(tokenizer, template)
    if name in END_OF_TURN:
        return END_OF_TURN[name]
    if name == "chat":
        return chat_turn_end(tokenizer)
    return tokenizer.eos_token or ""


def stop_ids(tokenizer: Any, template: str = "auto", model: Any = None) -> list[int]:
    """Token ids that end generation: the tokenizer's EOS, each single-token piece of the template's end of turn
    (:func:`response_suffix`), and the model's ``generation_config.eos_token_id`` (one id or a list)."""
    ids: list[int] = []
    suffix = response_suffix(tokenizer, template)
    pieces = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in [tokenizer.eos_token_id, *(pieces if len(pieces) == 1 else []),
              *(gen if isinstance(gen, list) else [gen])]:
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    return ids


def adds_special_tokens(tokenizer: Any, template: str = "auto") -> bool:
    """Whether to let the tokenizer add BOS: not when the formatted text already starts with it."""
    name = resolve_template(tokenizer, template)
    return name == "plain"
