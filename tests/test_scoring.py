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


OPTIONS = [["A", "B", " yes, gladly", "C"], [" no", "x"], ["I cannot", "Sure, here", "Z", " q"], ["ab", "b", "abc"]]


@pytest.mark.parametrize("per_call", [1, 3])
def test_shared_context_equals_one_pair_at_a_time(tiny_family: str, per_call: int) -> None:
    """Each context run once with its own options (single- and multi-token, several lengths, contexts of
    different lengths left-padded together) gives continuation_logprobs' sums for every pair."""
    from dcr.scoring import shared_context_logprobs

    model, tok = tiny_lm(tiny_family, seed=3)
    got = shared_context_logprobs(model, tok, CONTEXTS, OPTIONS, contexts_per_call=per_call)
    want = continuation_logprobs(model, tok, [c for c, o in zip(CONTEXTS, OPTIONS) for _ in o],
                                 [y for o in OPTIONS for y in o], batch_size=1)
    flat = torch.cat(got)
    assert [len(g) for g in got] == [len(o) for o in OPTIONS] and flat.dtype is torch.float32
    torch.testing.assert_close(flat, want, atol=1e-4, rtol=1e-4)
    assert len({round(float(v), 3) for v in flat}) == len(flat)  # every pair its own value


@pytest.mark.parametrize("tree", [True, False])
def test_shared_context_runs_each_context_once_and_splits_tails_by_budget(monkeypatch: pytest.MonkeyPatch,
                                                                          tree: bool) -> None:
    """Single-token options cost no forward beyond the context's; multi-token options run as one token trie per
    context in one forward (tree attention; ``tree``) or in length buckets on cache copies (models with sliding
    layers); a budget below one row's logits splits either into one row per forward; the sums do not change."""
    import dcr.scoring
    from dcr.scoring import shared_context_logprobs

    monkeypatch.setattr(dcr.scoring, "full_attention_only", lambda model: tree)
    model, tok = tiny_lm("llama", seed=0)
    letters = [["A", "B", "C", "D"]] * 3
    calls = _forward_calls(monkeypatch, model)
    shared_context_logprobs(model, tok, CONTEXTS[:3], letters, contexts_per_call=3)
    assert len(calls) == 1 and calls[0]["input_ids"].shape[0] == 3
    calls.clear()
    full = torch.cat(shared_context_logprobs(model, tok, CONTEXTS, OPTIONS, contexts_per_call=4))
    if tree:  # the context, then every row's trie at once
        assert [kw["input_ids"].shape[0] for kw in calls] == [4, 4]
    calls.clear()
    vocab = model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(dcr.scoring, "LOGITS_BUDGET", 4 * vocab)  # less than any tail's logits: one row per forward
    split = torch.cat(shared_context_logprobs(model, tok, CONTEXTS, OPTIONS, contexts_per_call=4))
    tails = len(CONTEXTS) if tree else sum(len(y) > 1 for o in OPTIONS for y in o)
    assert len(calls) == 1 + tails and all(kw["input_ids"].shape[0] == 1 for kw in calls[1:])
    torch.testing.assert_close(split, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tree", [True, False])
def test_contexts_without_long_options_share_a_call(monkeypatch: pytest.MonkeyPatch, tree: bool) -> None:
    """A call whose contexts have only single-token options beside contexts with longer ones (ARC, PIQA) scores
    only the latter's tails, on their own cache rows."""
    import dcr.scoring
    from dcr.scoring import shared_context_logprobs

    monkeypatch.setattr(dcr.scoring, "full_attention_only", lambda model: tree)
    model, tok = tiny_lm("gemma3", seed=5)
    options = [["A", "B"], [" no", "x"], ["C"], ["I cannot", "Z"]]
    got = torch.cat(shared_context_logprobs(model, tok, CONTEXTS, options, contexts_per_call=4))
    want = continuation_logprobs(model, tok, [c for c, o in zip(CONTEXTS, options) for _ in o],
                                 [y for o in options for y in o], batch_size=1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("tree", [True, False])
def test_shared_context_paths_agree(tiny_family: str, monkeypatch: pytest.MonkeyPatch, tree: bool) -> None:
    """The tree path and the bucket path each give continuation_logprobs' sums (where a family has sliding
    layers, forcing the tree is still exact here: the tiny contexts are shorter than its window)."""
    import dcr.scoring
    from dcr.scoring import shared_context_logprobs

    monkeypatch.setattr(dcr.scoring, "full_attention_only", lambda model: tree)
    model, tok = tiny_lm(tiny_family, seed=4)
    got = torch.cat(shared_context_logprobs(model, tok, CONTEXTS, OPTIONS, contexts_per_call=2))
    want = continuation_logprobs(model, tok, [c for c, o in zip(CONTEXTS, OPTIONS) for _ in o],
                                 [y for o in OPTIONS for y in o], batch_size=1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_shared_context_errors() -> None:
    from dcr.scoring import shared_context_logprobs

    model, tok = tiny_lm("llama")
    with pytest.raises(ValueError, match="2 contexts but 1 option lists"):
        shared_context_logprobs(model, tok, ["a", "b"], [["c"]])
    with pytest.raises(ValueError, match="an option of \\['c', ''\\] tokenises to nothing"):
        shared_context_logprobs(model, tok, ["a"], [["c", ""]])
    with pytest.raises(ValueError, match="context tokenises to nothing"):
        shared_context_logprobs(model, tok, ["ok", ""], [["abc"], ["abc"]])
