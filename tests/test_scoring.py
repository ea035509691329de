"""continuation_logprobs: batched == unbatched == a manual sum from one forward pass."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dcr.scoring import continuation_logprobs
from dcr.testing import tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONTEXTS = ["<|user|>\nHow do I kill a process?\n<|assistant|>\n", "Q: hi\nA:", "a", "Tell me a story.\n"]
CONTINUATIONS = ["I cannot", " hello there", "bc", "No."]


def _manual(model: torch.nn.Module, tok: object, ctx: str, cont: str) -> float:
    a = tok(ctx, add_special_tokens=False)["input_ids"]
    b = tok(cont, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([a + b])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.float()[0], dim=-1)
    return float(sum(logp[len(a) + j - 1, t] for j, t in enumerate(b)))


def test_batched_equals_unbatched_equals_manual(tiny_family: str) -> None:
    model, tok = tiny_lm(tiny_family, seed=0)
    batched = continuation_logprobs(model, tok, CONTEXTS, CONTINUATIONS, batch_size=4)
    single = continuation_logprobs(model, tok, CONTEXTS, CONTINUATIONS, batch_size=1)
    manual = torch.tensor([_manual(model, tok, c, y) for c, y in zip(CONTEXTS, CONTINUATIONS)])
    assert batched.dtype is torch.float32 and batched.shape == (4,)
    assert torch.allclose(batched, single, atol=1e-4)
    assert torch.allclose(batched, manual, atol=1e-4)
    assert (batched < 0).all()
    # the values differ per pair: the comparison is not between constants
    assert len({round(float(v), 3) for v in batched}) == 4


def _forward_calls(monkeypatch: pytest.MonkeyPatch, model: Any) -> list[dict[str, Any]]:
    """The keyword arguments of every forward call of ``model`` from now on."""
    calls: list[dict[str, Any]] = []
    forward = model.forward

    def spy(*args: object, **kw: Any) -> object:
        calls.append(kw)
        return forward(*args, **kw)

    monkeypatch.setattr(model, "forward", spy)
    return calls


def test_logits_budget_splits_batches_and_keeps_only_scored_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget of one row's logits forces one row per forward (262k vocabularies); the model is asked only
    for the positions that predict continuation tokens; the sums do not change."""
    import dcr.scoring

    model, tok = tiny_lm("llama", seed=0)
    full = continuation_logprobs(model, tok, CONTEXTS, CONTINUATIONS, batch_size=4)
    calls = _forward_calls(monkeypatch, model)
    vocab = model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(dcr.scoring, "LOGITS_BUDGET", 4 * vocab * 12)  # 12 fp32 positions of one row
    split = continuation_logprobs(model, tok, CONTEXTS, CONTINUATIONS, batch_size=4)
    assert torch.allclose(split, full, atol=1e-5)
    lengths = [len(tok(y, add_special_tokens=False)["input_ids"]) for y in CONTINUATIONS]
    kept = [len(kw["logits_to_keep"]) for kw in calls]
    assert len(kept) == 4 and kept == lengths  # one row per forward, its continuation positions only


def test_logits_budget_counts_the_heads_bytes_per_logit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rows of 10 positions fit a budget of 2 x 10 x 2 bytes x vocab at bf16, not at fp32 (4 bytes)."""
    import dcr.scoring
    from dcr.scoring import _within_budget

    monkeypatch.setattr(dcr.scoring, "LOGITS_BUDGET", 2 * 10 * 2 * 100)
    spans = [(0, 10), (0, 10), (2, 8)]
    assert _within_budget(spans, 100 * 2) == [(0, 2), (2, 3)]
    assert _within_budget(spans, 100 * 4) == [(0, 1), (1, 2), (2, 3)]
    model, tok = tiny_lm("llama", seed=0)
    vocab = model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(dcr.scoring, "LOGITS_BUDGET", 2 * vocab * 2 * 64)  # two 64-position rows in bf16
    calls = _forward_calls(monkeypatch, model)
    continuation_logprobs(model, tok, ["c" * 4] * 2, ["x" * 60] * 2, batch_size=2)
    assert [kw["input_ids"].shape[0] for kw in calls] == [1, 1]  # fp32 head: twice the bf16 bytes
    calls.clear()
    continuation_logprobs(model.to(torch.bfloat16), tok, ["c" * 4] * 2, ["x" * 60] * 2, batch_size=2)
    assert [kw["input_ids"].shape[0] for kw in calls] == [2]


def test_logprob_is_sum_over_tokens() -> None:
    """log P(xy | c) = log P(x | c) + log P(y | c x) (character tokenizer: concatenation is exact)."""
    model, tok = tiny_lm("llama", seed=1)
    whole = continuation_logprobs(model, tok, ["ctx "], ["abcd"])[0]
    parts = continuation_logprobs(model, tok, ["ctx ", "ctx ab"], ["ab", "cd"])
    assert torch.allclose(whole, parts.sum(), atol=1e-4)


def test_bf16_model_still_fp32_output() -> None:
    model, tok = tiny_lm("qwen2", seed=0)
    ref = continuation_logprobs(model, tok, CONTEXTS, CONTINUATIONS)
    out = continuation_logprobs(model.to(torch.bfloat16), tok, CONTEXTS, CONTINUATIONS)
    assert out.dtype is torch.float32
    assert torch.allclose(out, ref, atol=0.5)


def test_errors() -> None:
    model, tok = tiny_lm("llama")
    with pytest.raises(ValueError, match="2 contexts but 1 continuations"):
        continuation_logprobs(model, tok, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="tokenises to nothing"):
        continuation_logprobs(model, tok, ["a"], [""])


def test_empty_context_rejected() -> None:
    model, tok = tiny_lm("llama")
    with pytest.raises(ValueError, match="context '' tokenises to nothing"):
        continuation_logprobs(model, tok, [""], ["abc"])
    with pytest.raises(ValueError, match="context '' tokenises"):  # also inside a batch with valid pairs
        continuation_logprobs(model, tok, ["ok", ""], ["abc", "abc"])
