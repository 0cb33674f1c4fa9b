"""ROIAlign with torchvision's / Detectron2's semantics.

Each roi ``(batch_index, x1, y1, x2, y2)`` (image coordinates, scaled by ``spatial_scale`` onto the
feature map) is divided into ``output_size`` bins; a bin is the average of a regular grid of
bilinear samples of the features (``sampling_ratio`` samples per bin side, or
``ceil(roi_size / output_size)`` when ``sampling_ratio <= 0``). Samples outside
``[-1, H] x [-1, W]`` read 0. ``aligned=True`` shifts the roi by -0.5 pixel so that pixel centres
are at half-integer coordinates (Detectron2's ROIAlignV2); ``aligned=False`` is the legacy form,
where rois smaller than one pixel are enlarged to one pixel.

With the compiled kernels this calls ``torch.ops.detzoo.roi_align`` (a parallel CPU kernel and a
CUDA kernel; both accumulate half / bfloat16 features in float32, which is what torchvision's
autocast does, so no autocast rule is needed); without them it falls back to
``torchvision.ops.roi_align``, with the same results.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from detzoo.ops._ext import HAS_EXT

__all__ = ["ROIAlign", "roi_align"]


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def pair(output_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(height, width)`` of an ``int`` or ``(h, w)`` output size, checked positive."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(
            f"output_size must be a positive int or (height, width), got {output_size}"
        )
    return size


def as_rois(boxes: torch.Tensor | list[torch.Tensor], box_dim: int) -> torch.Tensor:
    """``[K, 1 + box_dim]`` rois (batch_index, box...) from a tensor of rois or from a list of
    per-image ``[Ki, box_dim]`` boxes."""
    if isinstance(boxes, torch.Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != box_dim + 1:
            raise ValueError(
                f"boxes must be a [K, {box_dim + 1}] tensor of (batch_index, ...) rows or a list of "
                f"[Ki, {box_dim}] tensors (one per image), got {_shape(boxes)}"
            )
        return boxes
    if not isinstance(boxes, (list, tuple)) or not all(
        isinstance(b, torch.Tensor) and b.dim() == 2 and b.shape[1] == box_dim for b in boxes
    ):
        shapes = [_shape(b) for b in boxes] if isinstance(boxes, (list, tuple)) else _shape(boxes)
        raise ValueError(
            f"boxes must be a [K, {box_dim + 1}] tensor or a list of [Ki, {box_dim}] tensors (one "
            f"per image), got {shapes}"
        )
    if not boxes:
        raise ValueError("boxes is an empty list; pass one (possibly empty) tensor per image")
    cat = torch.cat(list(boxes))
    ids = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
    return torch.cat((ids, cat), 1)


def check_input(input: torch.Tensor, rois: torch.Tensor) -> None:
    """Checks the features ``[B, C, H, W]`` against ``rois`` (dtype and device)."""
    if not isinstance(input, torch.Tensor) or input.dim() != 4:
        raise ValueError(f"input must be a [B, C, H, W] feature tensor, got {_shape(input)}")
    if not input.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got {input.dtype}; use .float()")
    if not rois.is_floating_point():
        raise TypeError(f"boxes must be a floating-point tensor, got {rois.dtype}; use .float()")
    if rois.device != input.device:
        raise ValueError(
            f"input is on {input.device} but boxes on {rois.device}; move both to one device"
        )


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels accumulate in: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _roi_align_torchvision(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """The fallback: ``torchvision.ops.roi_align`` computed in float32 (float64 stays) and returned
    in the input's dtype, as the kernel does."""
    dtype = opmath_dtype(input.dtype)
    out = torchvision.ops.roi_align(
        input.to(dtype),
        rois.to(dtype),
        (pooled_height, pooled_width),
        spatial_scale,
        sampling_ratio,
        aligned,
    )
    return out.to(input.dtype)


def roi_align(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """ROIAlign pooling (drop-in for ``torchvision.ops.roi_align``).

    Args:
        input: ``[B, C, H, W]`` features, float32 / float64 / float16 / bfloat16 (half precision is
            accumulated in float32).
        boxes: ``[K, 5]`` rois ``(batch_index, x1, y1, x2, y2)`` in image pixels, or a list of
            ``B`` tensors ``[Ki, 4]`` of ``(x1, y1, x2, y2)``, one per image; any floating dtype,
            on the device of ``input``.
        output_size: bins per roi, ``int`` or ``(height, width)``.
        spatial_scale: feature-map pixels per image pixel (e.g. 1/4 for a stride-4 feature map).
        sampling_ratio: bilinear samples per bin side; ``<= 0`` uses
            ``ceil(roi_size / output_size)`` samples (adaptive).
        aligned: ``True`` shifts rois by -0.5 feature pixel (Detectron2's ROIAlignV2, the right
            choice for new models); ``False`` is the legacy behaviour (torchvision's default).

    Returns:
        ``[K, C, output_height, output_width]`` pooled features in ``input``'s dtype.
    """
    rois = as_rois(boxes, 4)
    check_input(input, rois)
    height, width = pair(output_size)
    args = (float(spatial_scale), height, width, int(sampling_ratio), bool(aligned))
    if HAS_EXT:
        return torch.ops.detzoo.roi_align(input, rois, *args)
    return _roi_align_torchvision(input, rois, *args)


class ROIAlign(nn.Module):
    """ROIAlign as a module, with Detectron2's argument order and default (``aligned=True``).

    Note: ``torchvision.ops.RoIAlign`` takes ``(output_size, spatial_scale, sampling_ratio,
    aligned=False)``; Detectron2's ``ROIAlign`` defaults to ``aligned=True`` (ROIAlignV2), and so
    does this one. Pass ``aligned=False`` to reproduce models trained with legacy ROIAlign.

    Args:
        output_size: bins per roi, ``int`` or ``(height, width)``.
        spatial_scale: feature-map pixels per image pixel.
        sampling_ratio: bilinear samples per bin side; ``<= 0``: adaptive.
        aligned: half-pixel offset (see :func:`roi_align`).

    ``forward(input, rois)`` takes ``[B, C, H, W]`` features and ``[K, 5]`` rois (or a list of
    per-image ``[Ki, 4]`` boxes) and returns ``[K, C, output_height, output_width]``.
    """

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        self.output_size = pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, input: torch.Tensor, rois: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )


def register_roi_op(name: str, box_dim: int) -> None:
    """Fake kernels and autograd for ``detzoo::<name>`` and ``detzoo::_<name>_backward``.

    Shared by ROIAlign and ROIAlignRotated, whose schemas are
    ``(input, rois, spatial_scale, pooled_height, pooled_width, *options)`` and
    ``(grad, rois, spatial_scale, pooled_height, pooled_width, batch, channels, height, width,
    *options)``; rois are ``[K, 1 + box_dim]``.
    """
    backward_op = getattr(torch.ops.detzoo, f"_{name}_backward")

    @torch.library.register_fake(f"detzoo::{name}")
    def _fake(input, rois, spatial_scale, pooled_height, pooled_width, *options):
        torch._check(input.dim() == 4, lambda: f"{name}: input must be [B, C, H, W]")
        torch._check(
            rois.dim() == 2 and rois.shape[1] == box_dim + 1,
            lambda: f"{name}: rois must be [K, {box_dim + 1}]",
        )
        return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))

    @torch.library.register_fake(f"detzoo::_{name}_backward")
    def _backward_fake(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width, *options):  # fmt: skip
        return grad.new_empty((batch_size, channels, height, width))

    def _setup_context(ctx, inputs, output) -> None:
        input, rois, *ctx.params = inputs
        ctx.input_shape = input.shape
        ctx.save_for_backward(rois)

    def _backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        spatial_scale, pooled_height, pooled_width, *options = ctx.params
        grad_input = backward_op(
            grad, rois, spatial_scale, pooled_height, pooled_width, *ctx.input_shape, *options
        )
        return (grad_input, None, *([None] * len(ctx.params)))

    torch.library.register_autograd(f"detzoo::{name}", _backward, setup_context=_setup_context)


if HAS_EXT:
    register_roi_op("roi_align", box_dim=4)
