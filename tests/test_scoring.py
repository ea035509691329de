"""continuation_logprobs: batched == unbatched == a manual sum from one forward pass."""

from __future__ import annotations

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
