"""NNPACK's plan for a 3x3 convolution, and its gradients where only some inputs need one."""

import pytest
import torch
from torch import nn

from detzoo.layers.winograd import (
    BATCHED_MIN_IMAGES,
    BATCHED_MIN_SIDE,
    PER_IMAGE_MIN_SIDE,
    WINOGRAD_MIN_CHANNELS,
    nnpack_ready,
    winograd_conv2d,
    winograd_plan,
)

C = WINOGRAD_MIN_CHANNELS


@pytest.mark.parametrize(
    "shape, plan",
    [
        ((1, C, PER_IMAGE_MIN_SIDE, 200), "per_image"),
        ((4, C, 200, PER_IMAGE_MIN_SIDE), "per_image"),
        ((BATCHED_MIN_IMAGES, C, 200, PER_IMAGE_MIN_SIDE), "per_image"),
        ((BATCHED_MIN_IMAGES, C, BATCHED_MIN_SIDE, BATCHED_MIN_SIDE), "batched"),
        ((BATCHED_MIN_IMAGES - 1, C, BATCHED_MIN_SIDE, BATCHED_MIN_SIDE), None),
        ((BATCHED_MIN_IMAGES, C, BATCHED_MIN_SIDE - 1, 40), None),
        ((2, C, PER_IMAGE_MIN_SIDE - 1, 200), None),
        ((2, C - 1, 200, 200), None),
        ((0, C, 200, 200), None),
    ],
)
def test_plan(shape, plan):
    assert winograd_plan(torch.empty(shape)) == plan


@pytest.mark.skipif(not nnpack_ready(), reason="this torch has no NNPACK")
@pytest.mark.parametrize("needs", ["weight", "input", "bias"])
def test_gradients_of_only_what_needs_one(needs):
    torch.manual_seed(0)
    x = torch.randn(2, C, PER_IMAGE_MIN_SIDE, PER_IMAGE_MIN_SIDE, requires_grad=needs == "input")
    weight = (0.05 * torch.randn(C, C, 3, 3)).requires_grad_(needs == "weight")
    bias = torch.randn(C, requires_grad=needs == "bias")
    got = winograd_conv2d(x, weight, bias, [1, 1], "per_image")
    grad_out = torch.randn_like(got)
    got.backward(grad_out)
    leaf = {"input": x, "weight": weight, "bias": bias}[needs]
    got_grad, leaf.grad = leaf.grad.clone(), None
    nn.functional.conv2d(x, weight, bias, padding=1).backward(grad_out)
    torch.testing.assert_close(got_grad, leaf.grad, rtol=1e-4, atol=1e-4 * leaf.grad.abs().max())
    assert [t.grad is None for t in (x, weight, bias)] == [t is not leaf for t in (x, weight, bias)]
