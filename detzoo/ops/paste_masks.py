"""Pasting mask predictions into the image: Detectron2's ``paste_masks_in_image``.

Each ``[Hm, Wm]`` mask of probabilities is resampled into its box exactly as Detectron2's
``_do_paste_mask`` does with ``F.grid_sample(align_corners=False)`` (bilinear, zero padding): the
output pixel ``(x, y)`` reads the mask at ``((x + 0.5 - x0) / (x1 - x0) * Wm - 0.5, (y + 0.5 - y0) /
(y1 - y0) * Hm - 0.5)`` (mask pixel centres at integer coordinates). As in Detectron2's CPU path,
only the box's integer extent ``[max(floor(x0) - 1, 0), min(ceil(x1) + 1, W))`` (same for y) is
pasted; the rest of the image is 0 (on every device, so results do not depend on it).

With the compiled kernels this calls ``torch.ops.detzoo.paste_masks`` (a parallel CPU kernel and
a CUDA kernel, both reading half / bfloat16 masks in float32, so autocast needs no rule);
without them a plain-PyTorch version of Detectron2's CPU algorithm runs, with the same results.
The CPU kernel returns large outputs in zero-filled memory that it maps itself (not through
PyTorch's allocator), so only the pasted regions are ever written (see ops/cpu/paste_masks.cpp).

Differences from Detectron2, all on inputs Detectron2 rejects or mishandles: masks need not be
square; an empty batch returns ``bool`` (not ``uint8``) when ``threshold >= 0``; a box with a NaN
coordinate, or lying entirely outside the image, pastes nothing (Detectron2 raises).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from detzoo.ops._ext import HAS_EXT

__all__ = ["paste_masks_in_image"]


def _size(value: object) -> int | torch.SymInt:
    """A non-negative image side; symbolic sizes (torch.compile) pass through unspecialised."""
    if isinstance(value, torch.SymInt):
        return value
    try:
        size = operator.index(value)
    except TypeError:
        raise TypeError(f"image_shape must hold two ints (height, width), got {value!r}") from None
    if size < 0:
        raise ValueError(f"image_shape sides must be >= 0, got {size}")
    return size


def _check(masks: torch.Tensor, boxes: torch.Tensor) -> None:
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must be an [N, Hm, Wm] tensor, got {shape}")
    if not isinstance(boxes, torch.Tensor) or boxes.shape != (masks.shape[0], 4):
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be an [N, 4] tensor with N = {masks.shape[0]}, got {shape}")
    if not boxes.is_floating_point():
        raise TypeError(f"boxes must be a floating-point tensor, got {boxes.dtype}; use .float()")
    if masks.device != boxes.device:
        raise ValueError(f"masks are on {masks.device} but boxes on {boxes.device}")
    if masks.shape[0] > 0 and (masks.shape[1] == 0 or masks.shape[2] == 0):
        raise ValueError(f"masks must not be empty, got {tuple(masks.shape)}")


def compute_dtype(masks: torch.Tensor, boxes: torch.Tensor) -> torch.dtype:
    """float64 if masks or boxes are float64, else float32 (half / bfloat16 masks included)."""
    return torch.float64 if torch.float64 in (masks.dtype, boxes.dtype) else torch.float32


def _extents(boxes: torch.Tensor, height: int, width: int) -> list[list[int]]:
    """Per box ``[x_begin, x_end, y_begin, y_end]`` of Detectron2's skip-empty region (empty for
    boxes with a NaN coordinate)."""
    limits = boxes.new_tensor([width, height, width, height])
    begin = (boxes[:, :2].floor() - 1).clamp(min=0).minimum(limits[:2])
    end = (boxes[:, 2:].ceil() + 1).clamp(min=0).minimum(limits[2:])
    region = torch.stack((begin[:, 0], end[:, 0], begin[:, 1], end[:, 1]), 1)
    region[boxes.isnan().any(1)] = 0
    return region.long().tolist()


def _paste_masks_torch(
    masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, threshold: float
) -> torch.Tensor:
    """The fallback: Detectron2's CPU algorithm, one ``F.grid_sample`` per mask over its extent."""
    dtype = compute_dtype(masks, boxes)
    masks, boxes = masks.to(dtype), boxes.to(dtype)
    out_dtype = torch.bool if threshold >= 0 else torch.uint8
    out = torch.zeros(len(masks), height, width, dtype=out_dtype, device=masks.device)
    for k, (x_begin, x_end, y_begin, y_end) in enumerate(_extents(boxes, height, width)):
        if x_end <= x_begin or y_end <= y_begin:
            continue
        x0, y0, x1, y1 = boxes[k]
        xs = torch.arange(x_begin, x_end, dtype=dtype, device=masks.device) + 0.5
        ys = torch.arange(y_begin, y_end, dtype=dtype, device=masks.device) + 0.5
        gx = (xs - x0) / (x1 - x0) * 2 - 1
        gy = (ys - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), 2)
        value = F.grid_sample(masks[k, None, None], grid[None], align_corners=False)[0, 0]
        pasted = value >= threshold if threshold >= 0 else (value * 255).to(torch.uint8)
        out[k, y_begin:y_end, x_begin:x_end] = pasted
    return out


def paste_masks_in_image(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    image_shape: tuple[int, int],
    threshold: float = 0.5,
) -> torch.Tensor:
    """Pastes per-box mask probabilities into full-image masks (Detectron2's function).

    Args:
        masks: ``[N, Hm, Wm]`` mask probabilities (usually ``28 x 28``), float16 / bfloat16 /
            float32 / float64; integer or bool masks are read as float32.
        boxes: ``[N, 4]`` float boxes ``(x0, y0, x1, y1)`` in image pixels, on ``masks``' device.
        image_shape: ``(height, width)`` of the image, in pixels.
        threshold: ``>= 0``: return ``bool`` masks ``value >= threshold``; ``< 0``: return
            ``uint8`` masks ``value * 255`` (truncated), for visualisation.

    Returns:
        ``[N, height, width]`` ``bool`` (or ``uint8``) masks. Values are computed in float32
        (float64 when masks or boxes are float64).
    """
    _check(masks, boxes)
    if not masks.is_floating_point():
        masks = masks.float()
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2:
        raise ValueError(f"image_shape must be (height, width), got {image_shape!r}")
    height, width = (_size(s) for s in image_shape)
    if HAS_EXT:
        return torch.ops.detzoo.paste_masks(masks, boxes, height, width, float(threshold))
    return _paste_masks_torch(masks, boxes, height, width, float(threshold))


if HAS_EXT:

    @torch.library.register_fake("detzoo::paste_masks")
    def _paste_masks_fake(masks, boxes, height, width, threshold):
        torch._check(masks.dim() == 3, lambda: "paste_masks: masks must be [N, Hm, Wm]")
        torch._check(
            boxes.dim() == 2 and boxes.shape[1] == 4 and boxes.shape[0] == masks.shape[0],
            lambda: "paste_masks: boxes must be [N, 4]",
        )
        dtype = torch.bool if threshold >= 0 else torch.uint8
        return masks.new_empty((masks.shape[0], height, width), dtype=dtype)
