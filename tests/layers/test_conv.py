"""Conv2d + FrozenBatchNorm2d: the folded no-grad path computes the unfolded function."""

import copy

import pytest
import torch
from torch import nn

from detzoo.layers import Conv2d, FrozenBatchNorm2d
from detzoo.layers.winograd import (
    BATCHED_MIN_IMAGES,
    BATCHED_MIN_SIDE,
    PER_IMAGE_MIN_SIDE,
    WINOGRAD_MIN_CHANNELS,
)


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


# --- NNPACK (Winograd) path for wide 3x3 convolutions ----------------------------------------

needs_nnpack = pytest.mark.skipif(
    not torch.backends.nnpack.is_available(), reason="this torch has no NNPACK"
)


@pytest.fixture
def nnpack_calls(monkeypatch):
    """The input shapes of the convolutions that went through NNPACK."""
    calls = []
    real = torch._nnpack_spatial_convolution

    def counting(*args, **kwargs):
        calls.append(tuple(args[0].shape))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counting)
    return calls


# (images, height, width) of a map NNPACK takes one image at a time, and of a ROI batch it takes
# whole
LARGE_MAPS = (2, PER_IMAGE_MIN_SIDE, PER_IMAGE_MIN_SIDE + 3)
ROI_BATCH = (BATCHED_MIN_IMAGES, BATCHED_MIN_SIDE, BATCHED_MIN_SIDE + 1)


@needs_nnpack
@pytest.mark.parametrize("shape", [LARGE_MAPS, ROI_BATCH], ids=["per_image", "batched"])
def test_wide_3x3_conv_without_autograd_uses_winograd_and_equals_direct(nnpack_calls, shape):
    torch.manual_seed(0)
    n, h, w = shape
    for bias in (True, False):
        conv = Conv2d(WINOGRAD_MIN_CHANNELS, 16, 3, padding=1, bias=bias)
        x = torch.randn(n, WINOGRAD_MIN_CHANNELS, h, w)
        with torch.no_grad():
            got = conv(x)
            expected = nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        torch.testing.assert_close(
            got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item()
        )
    per_call = (1, WINOGRAD_MIN_CHANNELS, h, w) if shape == LARGE_MAPS else x.shape
    assert nnpack_calls == [per_call] * (2 * n if shape == LARGE_MAPS else 2)


@needs_nnpack
def test_winograd_also_serves_the_folded_frozen_bn_conv(nnpack_calls):
    torch.manual_seed(0)
    norm = FrozenBatchNorm2d(8)
    norm.running_var.uniform_(0.5, 2.0)
    norm.running_mean.uniform_(-1.0, 1.0)
    conv = Conv2d(WINOGRAD_MIN_CHANNELS, 8, 3, padding=1, bias=False, norm=norm)
    x = torch.randn(1, WINOGRAD_MIN_CHANNELS, PER_IMAGE_MIN_SIDE, PER_IMAGE_MIN_SIDE)
    with torch.inference_mode():
        got = conv(x)
    expected = norm(nn.functional.conv2d(x, conv.weight, padding=1)).detach()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert len(nnpack_calls) == 1


@needs_nnpack
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("out_channels", [WINOGRAD_MIN_CHANNELS, 8])
def test_winograd_training_gradients_equal_direct(nnpack_calls, padding, out_channels):
    """In training the forward and the input gradient (where the output gradient is itself wide
    enough) run through NNPACK; every gradient equals the direct convolution's."""
    torch.manual_seed(0)
    n, h, w = LARGE_MAPS
    conv = Conv2d(WINOGRAD_MIN_CHANNELS, out_channels, 3, padding=padding)
    x = torch.randn(n, WINOGRAD_MIN_CHANNELS, h, w, requires_grad=True)
    got = conv(x)
    grad_out = torch.randn_like(got)
    got.backward(grad_out)
    got_grads = [t.grad.clone() for t in (x, conv.weight, conv.bias)]
    for t in (x, conv.weight, conv.bias):
        t.grad = None
    expected = nn.functional.conv2d(x, conv.weight, conv.bias, padding=padding)
    expected.backward(grad_out)
    for a, b in zip([got, *got_grads], [expected, x.grad, conv.weight.grad, conv.bias.grad]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    # the forward per image; the input gradient per image only from a wide output gradient
    # (whose maps are smaller than the input's by 2 - 2 * padding)
    backward_side = min(h, w) + 2 * padding - 2
    wide_backward = out_channels >= WINOGRAD_MIN_CHANNELS and backward_side >= PER_IMAGE_MIN_SIDE
    assert len(nnpack_calls) == n * (2 if wide_backward else 1)


@needs_nnpack
@pytest.mark.parametrize(
    "case",
    [
        "narrow",
        "small_map",
        "mid_map_few_images",
        "stride2",
        "1x1",
        "dilated",
        "autocast",
        "float64",
        "channels_last",
        "empty",
    ],
)
def test_winograd_only_where_it_applies(nnpack_calls, case):
    channels = 32 if case == "narrow" else WINOGRAD_MIN_CHANNELS
    kwargs = {"stride": 2} if case == "stride2" else {"dilation": 2} if case == "dilated" else {}
    kernel = 1 if case == "1x1" else 3
    conv = Conv2d(
        channels, 8, kernel, padding=(kernel // 2) * (2 if case == "dilated" else 1), **kwargs
    )
    side = {"small_map": 7, "mid_map_few_images": PER_IMAGE_MIN_SIDE - 1}.get(
        case, PER_IMAGE_MIN_SIDE
    )
    x = torch.randn(0 if case == "empty" else 2, channels, side, side)
    if case == "float64":
        conv, x = conv.double(), x.double()
    if case == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    if case == "autocast":
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert conv(x).dtype == torch.bfloat16  # autocast's choice, not a float32 Winograd
    else:
        with torch.no_grad():
            assert conv(x).shape[:2] == (x.shape[0], 8)
    assert nnpack_calls == []
