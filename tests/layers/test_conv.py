"""Conv2d + FrozenBatchNorm2d: the folded no-grad path computes the unfolded function."""

import copy

import torch
from torch import nn

from detzoo.layers import Conv2d, FrozenBatchNorm2d


def _random_frozen_conv(bias: bool = False, seed: int = 0) -> Conv2d:
    torch.manual_seed(seed)
    norm = FrozenBatchNorm2d(5)
    for buf, (lo, hi) in zip(
        (norm.weight, norm.bias, norm.running_mean, norm.running_var),
        ((0.5, 2.0), (-1.0, 1.0), (-1.0, 1.0), (0.1, 3.0)),
    ):
        buf.uniform_(lo, hi)
    conv = Conv2d(3, 5, 3, padding=1, stride=2, bias=bias, norm=norm, activation=nn.ReLU())
    nn.init.normal_(conv.weight)
    if bias:
        nn.init.normal_(conv.bias)
    return conv


def _unfolded(conv: Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The layer by its definition: conv, then the norm's ``(y - mean) / sqrt(var + eps) * w + b``."""
    n = conv.norm
    y = nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    y = (y - n.running_mean.view(1, -1, 1, 1)) / (n.running_var.view(1, -1, 1, 1) + n.eps).sqrt()
    return torch.relu(y * n.weight.view(1, -1, 1, 1) + n.bias.view(1, -1, 1, 1))


def test_folded_inference_equals_conv_then_norm_with_and_without_bias():
    x = torch.randn(2, 3, 9, 11)
    for bias in (False, True):
        conv = _random_frozen_conv(bias)
        with torch.no_grad():
            torch.testing.assert_close(conv(x), _unfolded(conv, x), rtol=1e-5, atol=1e-5)
        with torch.inference_mode():
            torch.testing.assert_close(conv(x), _unfolded(conv, x), rtol=1e-5, atol=1e-5)
        assert conv._folded is not None  # the no-grad path took the fold


def test_fold_follows_weight_and_statistics_changes():
    conv = _random_frozen_conv()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        conv(x)
        conv.weight.mul_(-2.0)  # in place: a new version of the same tensor
        torch.testing.assert_close(conv(x), _unfolded(conv, x), rtol=1e-5, atol=1e-5)
        conv.norm.running_var.fill_(4.0)
        torch.testing.assert_close(conv(x), _unfolded(conv, x), rtol=1e-5, atol=1e-5)
        other = _random_frozen_conv(seed=1)
        conv.load_state_dict(other.state_dict())
        torch.testing.assert_close(conv(x), _unfolded(other, x), rtol=1e-5, atol=1e-5)
        conv.weight = nn.Parameter(torch.randn_like(conv.weight))  # a new tensor altogether
        torch.testing.assert_close(conv(x), _unfolded(conv, x), rtol=1e-5, atol=1e-5)
        conv.double().float()  # converted away and back: new storage
        conv.weight.data = conv.weight.data * 3.0
        torch.testing.assert_close(conv(x), _unfolded(conv, x), rtol=1e-5, atol=1e-5)


def test_gradients_unchanged_and_fold_used_only_without_weight_gradient():
    conv = _random_frozen_conv()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    conv(x).sum().backward()  # trainable weight under grad: conv then norm, no fold
    assert conv._folded is None
    expected_x_grad = x.grad.clone()
    ref = copy.deepcopy(conv)
    ref_x = x.detach().clone().requires_grad_(True)
    _unfolded(ref, ref_x).sum().backward()
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)

    conv.weight.requires_grad_(False)  # a frozen stage: the fold, input gradients still exact
    with torch.inference_mode():
        conv(x.detach())  # a cache made under inference_mode must still serve autograd later
    x.grad = None
    conv(x).sum().backward()
    torch.testing.assert_close(x.grad, expected_x_grad, rtol=1e-5, atol=1e-5)


def test_fold_is_not_in_the_state_dict_and_survives_deepcopy():
    conv = _random_frozen_conv()
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        conv(x)
        keys = set(conv.state_dict())
        assert not any("fold" in k for k in keys)
        clone = copy.deepcopy(conv)
        clone.weight.mul_(0.5)
        torch.testing.assert_close(clone(x), _unfolded(clone, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(conv(x), _unfolded(conv, x), rtol=1e-5, atol=1e-5)


def test_hooks_on_the_norm_still_run():
    conv = _random_frozen_conv()
    seen = []
    conv.norm.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        y = conv(x)
    assert seen == [torch.Size([1, 5, 4, 4])]
    assert conv._folded is None
    torch.testing.assert_close(y, _unfolded(conv, x), rtol=1e-5, atol=1e-5)
