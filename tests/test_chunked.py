"""dcr.chunked: the LM-head cross-entropy a chunk of tokens at a time, with the gradient taken in the forward
(frozen head) or by recomputation (checkpointing), against one call on all rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcr.chunked import chunked_cross_entropy


def _setup(seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(23, 16, requires_grad=True)
    return head, hidden, torch.randint(0, 50, (23,))


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("chunk", [1, 5, 23, 64])
def test_chunked_equals_one_call(frozen: bool, chunk: int) -> None:
    head, hidden, y = _setup()
    head.requires_grad_(not frozen)
    ref = F.cross_entropy(head(hidden).float(), y, reduction="sum")
    (ref * 0.37).backward()
    ref_grad, hidden.grad = hidden.grad.clone(), None
    got = chunked_cross_entropy(head, hidden, y, chunk, frozen=frozen)
    (got * 0.37).backward()  # an upstream gradient other than 1, as refine's lambda / tokens
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(hidden.grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_frozen_path_gives_the_checkpointed_loss_bit_for_bit_and_keeps_no_logits() -> None:
    head, hidden, y = _setup(1)
    head.requires_grad_(False)
    slow = chunked_cross_entropy(head, hidden, y, 4, frozen=False)
    calls = []
    fast = chunked_cross_entropy(lambda h: calls.append(1) or head(h), hidden, y, 4, frozen=True)
    assert torch.equal(fast, slow)
    fast.backward()
    assert len(calls) == 6  # ceil(23 / 4) chunks, each run once: nothing recomputed in the backward


def test_a_trained_head_needs_the_checkpointed_path() -> None:
    head, hidden, y = _setup(2)
    chunked_cross_entropy(head, hidden, y, 4, frozen=False).backward()
    assert head.weight.grad is not None and hidden.grad is not None


def test_without_grad_nothing_is_kept() -> None:
    head, hidden, y = _setup(3)
    with torch.no_grad():
        out = chunked_cross_entropy(head, hidden, y, 4, frozen=True)
    assert not out.requires_grad
    torch.testing.assert_close(out, F.cross_entropy(head(hidden).detach(), y, reduction="sum"))
