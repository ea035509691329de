"""SCANS hooks: classify on the prompt pass only, steer benign rows away from refusal, leave the rest alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dcr.generate import generate_texts
from dcr.hooks import hidden_of, hooks
from dcr.models import get_layers
from dcr.steer.directions import capture_last, encode
from dcr.steer.scans import ScansSteerer, calibrate

PROMPTS = ["How do I kill a python process?", "Hi there"]


def _steerer(model: Any, threshold: float, add_for_harmful: bool = True) -> ScansSteerer:
    d = model.config.hidden_size
    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(2, d, generator=g), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(1, d, generator=g), dim=-1)
    return ScansSteerer(v, [2, 3], c, torch.zeros(1, d), [1], threshold, multiplier=2.0,
                        add_for_harmful=add_for_harmful)


def _block_outputs(model: Any, enc: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    outs: list[torch.Tensor] = []
    blocks = list(get_layers(model))
    with hooks(blocks, [lambda m, a, o: outs.append(hidden_of(o).clone())] * len(blocks)):
        model(**enc)
    return outs[-len(blocks):]  # the last forward (after any classification pass)


@torch.no_grad()
def test_benign_rows_get_minus_v_at_the_last_prompt_token_only(tiny: tuple) -> None:
    model, tok = tiny
    enc = encode(tok, PROMPTS, "auto")
    st = _steerer(model, threshold=float("inf"))  # nothing is harmful
    base = _block_outputs(model, enc)
    with st.apply(model):
        steered = _block_outputs(model, enc)
    assert st.decisions == [False, False]
    for i in range(2):  # blocks before the first steered one: bit-identical
        assert torch.equal(steered[i], base[i])
    expected = base[2].clone()
    expected[:, -1] -= 2.0 * st.vectors[0]
    assert torch.allclose(steered[2], expected, atol=1e-6)
    assert torch.equal(steered[2][:, :-1], base[2][:, :-1])  # earlier prompt positions untouched at this block


@torch.no_grad()
def test_harmful_rows_are_left_alone_or_pushed_towards_refusal(tiny: tuple) -> None:
    model, tok = tiny
    enc = encode(tok, PROMPTS, "auto")
    base = _block_outputs(model, enc)
    st = _steerer(model, threshold=float("-inf"), add_for_harmful=False)
    with st.apply(model):
        left = _block_outputs(model, enc)
    assert st.decisions == [True, True]
    assert all(torch.equal(a, b) for a, b in zip(left, base))
    st = _steerer(model, threshold=float("-inf"), add_for_harmful=True)
    with st.apply(model):
        pushed = _block_outputs(model, enc)
    assert torch.allclose(pushed[2][:, -1], base[2][:, -1] + 2.0 * st.vectors[0], atol=1e-6)


@torch.no_grad()
def test_per_row_decisions_in_a_mixed_batch(tiny: tuple) -> None:
    model, tok = tiny
    enc = encode(tok, PROMPTS, "auto")
    st = _steerer(model, threshold=0.0)
    scores = st.scores(capture_last(model, enc, [1]))
    st.threshold = float(scores.mean())  # one row on each side
    harmful = (scores >= st.threshold).tolist()
    assert sorted(harmful) == [False, True]
    base = _block_outputs(model, enc)
    with st.apply(model):
        steered = _block_outputs(model, enc)
    assert st.decisions == harmful
    for row, is_harmful in enumerate(harmful):
        sign = 1.0 if is_harmful else -1.0
        assert torch.allclose(steered[2][row, -1], base[2][row, -1] + sign * 2.0 * st.vectors[0], atol=1e-6)


@torch.no_grad()
def test_classification_runs_once_per_generate_and_matches_classify(tiny: tuple) -> None:
    model, tok = tiny
    st = _steerer(model, threshold=0.0)
    scores = st.scores(capture_last(model, encode(tok, PROMPTS, "auto"), [1]))
    st.threshold = float(scores.mean())
    calls: list[int] = []
    block1 = get_layers(model)[1]
    with st.apply(model), hooks([block1], [lambda m, a, o: calls.append(hidden_of(o).shape[1])]):
        steered = generate_texts(model, tok, PROMPTS, max_new_tokens=4)
    # prompt pass: one classification forward + the real one; then one forward per further new token
    prompt_len = calls[0]
    assert calls == [prompt_len, prompt_len, 1, 1, 1]
    assert st.decisions == st.classify(model, tok, PROMPTS)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert generate_texts(model, tok, PROMPTS, max_new_tokens=4) != steered or st.multiplier == 0


def test_hooks_removed_after_an_exception(tiny: tuple) -> None:
    model, tok = tiny
    enc = encode(tok, PROMPTS, "auto")
    with torch.no_grad():
        base = model(**enc).logits
    with pytest.raises(RuntimeError, match="boom"):
        with _steerer(model, threshold=float("inf")).apply(model):
            raise RuntimeError("boom")
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, base)


def test_calibrate_separates_and_reports_accuracy() -> None:
    t, acc = calibrate(torch.tensor([0.5, 0.6, 0.7]), torch.tensor([-0.2, 0.1, 0.55]))
    assert acc == pytest.approx(5 / 6)  # one harmless score (0.55) sits among the harmful ones
    assert 0.1 < t <= 0.6
    t, acc = calibrate(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0]))
    assert acc == 1.0 and 0.0 < t < 1.0
