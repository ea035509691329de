"""GapDropout: the same mask distribution as torch.nn.Dropout, from geometric gaps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcr.align.dropout import GapDropout, drop_positions, use_gap_dropout


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_drop_rate_is_p_everywhere(p: float) -> None:
    torch.manual_seed(0)
    n = 400_000
    pos = drop_positions(n, p)
    assert torch.all(pos[1:] > pos[:-1]) and int(pos.min()) >= 0 and int(pos.max()) < n  # sorted, unique
    sd = (n * p * (1 - p)) ** 0.5
    assert abs(len(pos) - n * p) < 5 * sd
    counts = torch.bincount(pos // (n // 10), minlength=10)[:10].double()  # each tenth: n/10 Bernoulli(p)
    assert torch.all((counts - n / 10 * p).abs() < 5 * (n / 10 * p * (1 - p)) ** 0.5)


def test_neighbours_are_independent() -> None:
    """In an i.i.d. mask P(i and i+1 dropped) = p^2; a gap sampler that got the geometric law wrong fails."""
    torch.manual_seed(1)
    n, p = 1_000_000, 0.2
    mask = torch.zeros(n, dtype=torch.bool)
    mask[drop_positions(n, p)] = True
    both = float((mask[1:] & mask[:-1]).double().mean())
    assert both == pytest.approx(p * p, abs=5 * (p * p / (n - 1)) ** 0.5)


def test_small_tensors_and_p_zero() -> None:
    assert len(drop_positions(0, 0.5)) == 0 and len(drop_positions(100, 0.0)) == 0
    torch.manual_seed(2)
    assert all(int(pos.max()) < 3 for pos in (drop_positions(3, 0.9) for _ in range(50)) if len(pos))


def test_seeded_draws_repeat() -> None:
    torch.manual_seed(3)
    a = drop_positions(10_000, 0.05)
    torch.manual_seed(3)
    assert torch.equal(a, drop_positions(10_000, 0.05))


def test_gap_dropout_scales_kept_zeroes_dropped_and_backprops_the_mask() -> None:
    torch.manual_seed(4)
    x = torch.ones(64, 32, requires_grad=True)
    drop = GapDropout(0.25)
    y = drop(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="p must be in"):
        GapDropout(1.0)


def test_use_gap_dropout_replaces_every_lora_dropout(tiny_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_dir)),
                           LoraConfig(r=4, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM"))
    n_lora = sum(1 for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict))
    assert use_gap_dropout(model) == n_lora > 0
    assert not any(type(m) is torch.nn.Dropout and m.p == 0.1 for m in model.modules())
    assert use_gap_dropout(model) == 0
