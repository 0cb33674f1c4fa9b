"""The block-wise sigmoid focal loss against torchvision's (Detectron2's) formula and by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from detzoo.heads import focal_loss
from detzoo.heads.focal_loss import sigmoid_focal_loss_sum


def _reference(logits, labels, alpha, gamma):
    valid = labels >= 0
    target = F.one_hot(labels[valid], logits.shape[1] + 1)[:, :-1].to(logits.dtype)
    return sigmoid_focal_loss(logits[valid], target, alpha, gamma, reduction="sum")


def test_by_hand():
    # x = 0: p = 1/2. Positive: α (1 - p)^γ log 2; negative: (1 - α) p^γ log 2
    x = torch.zeros(2, 2, requires_grad=True)
    loss = sigmoid_focal_loss_sum(x, torch.tensor([0, -1]), alpha=0.25, gamma=2.0)
    expected = (0.25 + 0.75) * 0.25 * math.log(2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # negative pair: (1-α) p^γ (γ (1-p) log 2 + p); positive: -α (1-p)^γ (γ p log 2 + 1 - p)
    neg = 0.75 * 0.25 * (2 * 0.5 * math.log(2) + 0.5)
    pos = -0.25 * 0.25 * (2 * 0.5 * math.log(2) + 0.5)
    torch.testing.assert_close(x.grad, torch.tensor([[pos, neg], [0.0, 0.0]]))


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.5), (0.25, 0.0)])
def test_equals_torchvision_value_and_gradient_across_blocks(monkeypatch, alpha, gamma):
    monkeypatch.setattr(focal_loss, "BLOCK_ELEMENTS", 64 * 7)  # 64 rows: a ragged last block
    torch.manual_seed(0)
    num_classes = 7
    logits = (4 * torch.randn(1000, num_classes)).requires_grad_()
    labels = torch.randint(-1, num_classes + 1, (1000,))  # ignored, classes and background
    loss = sigmoid_focal_loss_sum(logits, labels, alpha, gamma)
    loss.backward(torch.tensor(3.0))
    got_grad, logits.grad = logits.grad.clone(), None
    expected = _reference(logits, labels, alpha, gamma)
    expected.backward(torch.tensor(3.0))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_grad, logits.grad, rtol=1e-5, atol=1e-6)
    assert (got_grad[labels < 0] == 0).all()


def test_half_precision_logits_sum_in_float32():
    torch.manual_seed(0)
    logits = torch.randn(300, 5).bfloat16().requires_grad_()
    labels = torch.randint(0, 6, (300,))
    loss = sigmoid_focal_loss_sum(logits, labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16
    expected = _reference(logits.detach().float(), labels, 0.25, 2.0)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)


def test_no_anchors_and_all_ignored_give_zero():
    for logits, labels in (
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)),
        (torch.randn(4, 3), torch.full((4,), -1)),
    ):
        logits.requires_grad_()
        loss = sigmoid_focal_loss_sum(logits, labels)
        loss.backward()
        assert loss.item() == 0.0 and (logits.grad == 0).all()


def test_shape_errors_say_what_is_expected():
    with pytest.raises(ValueError, match=r"logits \[M, K\] and labels \[M\]"):
        sigmoid_focal_loss_sum(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        sigmoid_focal_loss_sum(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), gamma=-1.0)
