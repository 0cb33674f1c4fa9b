"""Wide 3×3 stride-1 float32 convolutions on CPU through torch's NNPACK backend (Winograd: fewer
multiplications for the same convolution), forward and backward, where it beats oneDNN's direct
convolution (benchmarks/RESULTS.md, "Winograd 3×3 convolutions").

torch's NNPACK binding runs NNPACK's single-image algorithm for a batch of one and its batched
algorithm otherwise, and the two win in different places (2 threads, 256 channels):

- one image at a time wins on maps from ~48 pixels a side (2×64×86: 36 ms against oneDNN's 80;
  batched NNPACK there: 175), and loses below (2×32×43: 23 against 17);
- the whole batch at once wins only for many small maps — ROI batches (100×14×14: 65 against 121;
  8×14×14: 14 against 9).

Training uses the same convolutions: the input gradient of a stride-1 convolution is the
convolution of the output gradient with the flipped, transposed weight, so it runs through NNPACK
too; the weight and bias gradients come from torch's own backward (oneDNN).
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable

WINOGRAD_MIN_CHANNELS = 128  # below this many input channels oneDNN wins (64: 0.65-1.03x)
PER_IMAGE_MIN_SIDE = 48  # one image at a time from this map side on
BATCHED_MIN_IMAGES = 32  # the whole batch at once from this many images (ROIs) ...
BATCHED_MIN_SIDE = 14  # ... of at least this side


@functools.cache
def nnpack_ready() -> bool:
    """Whether torch has NNPACK; the first query also initialises it (needed before any call)."""
    return torch.backends.nnpack.is_available()


def winograd_plan(x: torch.Tensor) -> str | None:
    """How NNPACK should run a 3×3 convolution of ``x`` ``[N, C, H, W]``: ``"per_image"``,
    ``"batched"``, or ``None`` where oneDNN's direct convolution is faster."""
    n, channels, height, width = x.shape
    side = min(height, width)
    if channels < WINOGRAD_MIN_CHANNELS or n == 0:
        return None
    if side >= PER_IMAGE_MIN_SIDE:
        return "per_image"
    if n >= BATCHED_MIN_IMAGES and side >= BATCHED_MIN_SIDE:
        return "batched"
    return None


def _nnpack(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: list[int], plan: str
) -> torch.Tensor:
    if plan == "batched" or x.shape[0] == 1:
        return torch._nnpack_spatial_convolution(x, weight, bias, padding)
    return torch.cat(
        [torch._nnpack_spatial_convolution(xi, weight, bias, padding) for xi in x.split(1)]
    )


class _WinogradConv2d(torch.autograd.Function):
    """3×3 stride-1 convolution with NNPACK forward and input gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding, plan):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return _nnpack(x, weight, bias, padding, plan)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:
            plan = winograd_plan(grad_out)
            if plan is not None:
                # conv_transpose(g, w) = conv(g, w flipped in space, in/out channels swapped),
                # padded so that the result has the input's size
                flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
                grad_x = _nnpack(grad_out, flipped, None, [2 - p for p in ctx.padding], plan)
            else:
                grad_x = _direct_backward(ctx, grad_out, x, weight, (True, False, False))[0]
        if need_w or (need_b and ctx.has_bias):
            _, grad_w, grad_b = _direct_backward(
                ctx, grad_out, x, weight, (False, need_w, need_b and ctx.has_bias)
            )
        return grad_x, grad_w, grad_b, None, None


def _direct_backward(ctx, grad_out, x, weight, mask):
    bias_sizes = [weight.shape[0]] if ctx.has_bias else None
    return torch.ops.aten.convolution_backward(
        grad_out, x, weight, bias_sizes, [1, 1], ctx.padding, [1, 1], False, [0, 0], 1, list(mask)
    )


def winograd_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: list[int], plan: str
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` for a 3×3 stride-1 float32 convolution on
    CPU, through NNPACK as ``plan`` (from :func:`winograd_plan`) says; differentiable.

    Args:
        x: ``[N, C, H, W]``, contiguous.
        weight: ``[O, C, 3, 3]``; bias: ``[O]`` or None.
        padding: ``[pad_h, pad_w]``, each 0-2.

    Returns:
        ``[N, O, H + 2 pad_h - 2, W + 2 pad_w - 2]``; rounding differs from the direct convolution
        at ~1e-5 of the output's magnitude.
    """
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias)
    ):
        return _WinogradConv2d.apply(x, weight, bias, padding, plan)
    return _nnpack(x, weight, bias, padding, plan)
