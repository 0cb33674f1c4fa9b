"""Axis-aligned box helpers on ``[N, 4]`` float arrays (numpy or torch), Detectron2 conventions.

Coordinates are absolute pixels in the continuous frame where the image spans ``[0, W] x [0, H]``
(pixel ``i`` covers ``[i, i + 1)``), so a box's width is ``x1 - x0`` with no ``+ 1``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _copy(boxes: Array) -> Array:
    return boxes.clone() if isinstance(boxes, torch.Tensor) else boxes.copy()


def _check(boxes: Array) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {tuple(boxes.shape)}")


def xywh_to_xyxy(boxes: Array) -> Array:
    """``[N, 4]`` ``(x, y, w, h)`` (COCO's ``bbox``) -> ``[N, 4]`` ``(x0, y0, x1, y1)``; same dtype."""
    _check(boxes)
    out = _copy(boxes)
    out[:, 2:] += out[:, :2]
    return out


def xyxy_to_xywh(boxes: Array) -> Array:
    """``[N, 4]`` ``(x0, y0, x1, y1)`` -> ``[N, 4]`` ``(x, y, w, h)``; same dtype."""
    _check(boxes)
    out = _copy(boxes)
    out[:, 2:] -= out[:, :2]
    return out


def clip_boxes(boxes: Array, height: float, width: float) -> Array:
    """XYXY ``[N, 4]`` boxes clipped to the image ``[0, width] x [0, height]`` (pixels); a copy."""
    _check(boxes)
    out = _copy(boxes)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out


def box_area(boxes: Array) -> Array:
    """``[N]`` areas (pixels^2) of XYXY ``[N, 4]`` boxes; inverted boxes count as 0."""
    _check(boxes)
    widths = (boxes[:, 2] - boxes[:, 0]).clip(0)
    heights = (boxes[:, 3] - boxes[:, 1]).clip(0)
    return widths * heights


def nonempty(boxes: Array, threshold: float = 0.0) -> Array:
    """``[N]`` bool: which XYXY boxes have width and height both ``> threshold`` pixels
    (Detectron2's ``Boxes.nonempty``)."""
    _check(boxes)
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def matched_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU ``[N]`` of row-aligned XYXY boxes ``[N, 4]`` (Detectron2's ``matched_pairwise_iou``)."""
    lt = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    rb = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    return inter / (box_area(boxes1) + box_area(boxes2) - inter)
