"""Non-maximum suppression of axis-aligned boxes, with torchvision's semantics.

Boxes are visited by decreasing score (ties: lower index first); each kept box suppresses every
later box whose IoU with it is greater than ``iou_threshold``, IoU being
``inter / (area_i + area_j - inter)`` on ``(x1, y1, x2, y2)`` pixel coordinates (no ``+1``).

With the compiled kernels these call ``torch.ops.detzoo.nms`` / ``batched_nms`` (a vectorised,
parallel CPU kernel that is many times faster than torchvision's, and a CUDA kernel). Without
them they fall back to ``torchvision.ops.nms`` and give the same result.
"""

from __future__ import annotations

import torch
import torchvision

from detzoo.ops._ext import HAS_EXT

__all__ = ["batched_nms", "nms"]

_BOX_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _shape(t: object) -> object:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _check_inputs(boxes: torch.Tensor, scores: torch.Tensor) -> None:
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"boxes must be a [N, 4] tensor of (x1, y1, x2, y2), got {_shape(boxes)}; "
            "convert other formats with torchvision.ops.box_convert"
        )
    if boxes.dtype not in _BOX_DTYPES:
        raise TypeError(f"boxes must be a floating-point tensor, got {boxes.dtype}; use .float()")
    if not isinstance(scores, torch.Tensor) or scores.shape != (boxes.shape[0],):
        raise ValueError(
            f"scores must be a [N] tensor with N = {boxes.shape[0]} boxes, got {_shape(scores)}"
        )
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"scores must be real numbers, got {scores.dtype}")
    if scores.device != boxes.device:
        raise ValueError(
            f"boxes are on {boxes.device} but scores on {scores.device}; move both to one device"
        )


def _check_idxs(boxes: torch.Tensor, idxs: torch.Tensor) -> None:
    if not isinstance(idxs, torch.Tensor) or idxs.shape != (boxes.shape[0],):
        raise ValueError(
            f"idxs must be a [N] tensor with N = {boxes.shape[0]} boxes, got {_shape(idxs)}"
        )
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        raise TypeError(f"idxs must be integer category ids, got {idxs.dtype}; use .long()")
    if idxs.device != boxes.device:
        raise ValueError(
            f"boxes are on {boxes.device} but idxs on {idxs.device}; move both to one device"
        )


# --- torchvision path --------------------------------------------------------------------------


def _nms_torchvision(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float):
    """``torchvision.ops.nms`` with the kernel's dtype rules: boxes compared in float32 (float64
    stays float64), scores of any real dtype ordered as they are."""
    if boxes.dtype in (torch.float16, torch.bfloat16):
        boxes = boxes.float()
    if scores.dtype == boxes.dtype:
        return torchvision.ops.nms(boxes, scores, iou_threshold)
    # torchvision wants scores of the boxes' dtype: visit the boxes in score order instead.
    order = torch.sort(scores, descending=True, stable=True).indices
    ramp = torch.arange(len(order), 0, -1, dtype=boxes.dtype, device=boxes.device)
    return order[torchvision.ops.nms(boxes[order], ramp, iou_threshold)]


def _batched_nms_torchvision(boxes, scores, idxs, iou_threshold: float) -> torch.Tensor:
    """One ``torchvision.ops.nms`` per category, merged by decreasing score, ties by index
    (``torchvision.ops.batched_nms`` leaves tie order open and, below 1000 boxes, shifts the
    boxes by category, which can round coordinates)."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs):
        members = torch.where(idxs == category)[0]
        keep[members[_nms_torchvision(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep)[0]
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


# --- public API --------------------------------------------------------------------------------


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (drop-in for ``torchvision.ops.nms``).

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)`` in pixels; float32 or float64 (float16 and
            bfloat16 are compared in float32).
        scores: ``[N]`` scores, any real dtype, on the device of ``boxes``.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scored box is greater
            than this, in ``[0, 1]`` (0 drops every box overlapping a kept one; 1 keeps all).

    Returns:
        int64 ``[K]`` indices into ``boxes`` of the kept boxes, by decreasing score (ties: lower
        index first).
    """
    _check_inputs(boxes, scores)
    if HAS_EXT:
        return torch.ops.detzoo.nms(boxes, scores, float(iou_threshold))
    return _nms_torchvision(boxes, scores, float(iou_threshold))


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Per-category :func:`nms` (drop-in for ``torchvision.ops.batched_nms``).

    Boxes of different categories never suppress each other; within a category the greedy pass
    is exactly :func:`nms`'s.

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)`` in pixels (dtypes as in :func:`nms`).
        scores: ``[N]`` scores, any real dtype.
        idxs: ``[N]`` integer category of each box (any values, e.g. class or image ids).
        iou_threshold: IoU above which a kept box suppresses a lower-scored one.

    Returns:
        int64 ``[K]`` indices into ``boxes`` of the kept boxes, by decreasing score (ties: lower
        index first).
    """
    _check_inputs(boxes, scores)
    _check_idxs(boxes, idxs)
    if HAS_EXT:
        return torch.ops.detzoo.batched_nms(boxes, scores, idxs, float(iou_threshold))
    return _batched_nms_torchvision(boxes, scores, idxs, float(iou_threshold))


if HAS_EXT:

    def _kept_indices(boxes: torch.Tensor) -> torch.Tensor:
        """The fake result: int64 indices, as many as the data decide."""
        torch._check(boxes.dim() == 2 and boxes.shape[1] == 4)
        return boxes.new_empty((torch.library.get_ctx().new_dynamic_size(),), dtype=torch.int64)

    @torch.library.register_fake("detzoo::nms")
    def _nms_fake(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float):
        torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0])
        return _kept_indices(boxes)

    @torch.library.register_fake("detzoo::batched_nms")
    def _batched_nms_fake(boxes, scores, idxs, iou_threshold: float):
        torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0])
        torch._check(idxs.dim() == 1 and idxs.shape[0] == boxes.shape[0])
        return _kept_indices(boxes)

    # Under autocast, boxes and scores are compared in float32 (IoU in half precision would
    # suppress other boxes than the float32 model does).
    for _op in ("detzoo::nms", "detzoo::batched_nms"):
        for _device in ("cpu", "cuda"):
            torch.library.register_autocast(_op, _device, torch.float32)
