"""Circle Loss: the paper's eq. (5) against hand-computed values, the original form against pytorch-metric-learning."""

from __future__ import annotations

import math

import pytest
import torch

from dcr.refine.loss import circle_loss, circle_loss_from_sim, circle_loss_per_anchor

# Three unit vectors: x0, x1 in class 0 and x2 in class 1. Cosines: s01 = 0.6, s02 = 0.8, s12 = 0.96.
X3 = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
Y3 = torch.tensor([0, 0, 1])


def test_paper_variant_matches_hand_computed_case() -> None:
    # m = 0.25 -> D_p = 0.75, D_n = 0.25; gamma = 2.
    # anchor 0: a_p = 0.75-0.6 = 0.15, logit_p = -2*0.15*(0.6-0.75) = 0.045;
    #           a_n = 0.8-0.25 = 0.55, logit_n = 2*0.55*0.55 = 0.605  -> L0 = log(1 + e^0.65)
    # anchor 1: logit_p = 0.045; a_n = 0.96-0.25 = 0.71, logit_n = 2*0.71^2 = 1.0082 -> L1 = log(1 + e^1.0532)
    # anchor 2 has no positive: left out of the mean.
    l0, l1 = math.log1p(math.exp(0.65)), math.log1p(math.exp(1.0532))
    losses, valid = circle_loss_per_anchor(X3, Y3, m=0.25, gamma=2.0, variant="paper")
    assert valid.tolist() == [True, True, False]
    assert losses.tolist() == pytest.approx([l0, l1, 0.0], abs=1e-5)
    assert float(circle_loss(X3, Y3, m=0.25, gamma=2.0)) == pytest.approx((l0 + l1) / 2, abs=1e-5)


def test_paper_variant_weights_are_detached() -> None:
    sim = (X3 @ X3.T).requires_grad_(True)
    losses, valid = circle_loss_from_sim(sim, Y3, m=0.25, gamma=2.0, variant="paper")
    losses[valid].mean().backward()
    # dL/ds02 with a_n held constant: (1/2) * sigmoid(0.65) * gamma * a_n ; a non-detached a_n would double it.
    expected = 0.5 * (1 / (1 + math.exp(-0.65))) * 2.0 * 0.55
    assert float(sim.grad[0, 2]) == pytest.approx(expected, abs=1e-5)
    assert float(sim.grad[2].abs().sum()) == 0.0  # the invalid anchor contributes nothing


def test_satisfied_pairs_have_zero_weight_and_gradient() -> None:
    # positives identical (s = 1 > D_p), negatives orthogonal (s = 0 < D_n): every weight is 0.
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    loss = circle_loss(x, torch.tensor([0, 0, 1, 1]), m=0.25, gamma=16.0)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(3.0))  # log(1 + 1 * 2) per anchor
    assert float(x.grad.abs().max()) == 0.0


def test_no_valid_anchor_gives_attached_zero() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    loss = circle_loss(x, torch.tensor([0, 1, 2]))  # no positives at all
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all()


LABEL_SETS = [[0] * 5 + [1] * 7,
              [0] * 11 + [1], [0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 2, 0]]  # 2 classes, a lone anchor, 3 classes


@pytest.mark.parametrize("labels", LABEL_SETS)
def test_original_variant_matches_pytorch_metric_learning(labels: list[int]) -> None:
    from pytorch_metric_learning.losses import CircleLoss

    torch.manual_seed(0)
    emb = torch.randn(len(labels), 8, dtype=torch.float64)
    y = torch.tensor(labels)
    ours_x = emb.clone().float().requires_grad_(True)
    ref_x = emb.clone().float().requires_grad_(True)
    ours = circle_loss(ours_x, y, m=0.25, gamma=16.0, variant="original")
    ref = CircleLoss(m=0.25, gamma=16.0)(ref_x, y)
    ours.backward()
    ref.backward()
    assert float(ours) == pytest.approx(float(ref), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(ours_x.grad, ref_x.grad, rtol=1e-4, atol=1e-6)


def test_paper_and_original_differ() -> None:
    a = circle_loss(X3, Y3, variant="paper")
    b = circle_loss(X3, Y3, variant="original")
    assert float(a) != pytest.approx(float(b))


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="variant"):
        circle_loss(X3, Y3, variant="nope")
    with pytest.raises(ValueError, match=r"\[B, d\]"):
        circle_loss(X3, torch.tensor([0, 1]))
