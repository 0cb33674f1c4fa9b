"""Mapping a model's detections from the padded-batch input frame to an output image size
(Detectron2's ``detector_postprocess``)."""

from __future__ import annotations

import torch


def rescale_detections(
    pred: dict[str, torch.Tensor], input_size: tuple[int, int], output_size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Scales ``boxes`` (and ``keypoints`` x/y) from ``input_size`` to ``output_size`` (both
    ``(height, width)`` in pixels), clips boxes to the output image and drops boxes that became
    empty, with every per-instance field. Other fields are returned unchanged."""
    scale_y = output_size[0] / input_size[0]
    scale_x = output_size[1] / input_size[1]
    boxes = pred["boxes"] * boxes_scale(scale_x, scale_y, pred["boxes"])
    h, w = output_size
    boxes = torch.stack(
        (
            boxes[:, 0].clamp(0, w),
            boxes[:, 1].clamp(0, h),
            boxes[:, 2].clamp(0, w),
            boxes[:, 3].clamp(0, h),
        ),
        dim=1,
    )
    keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    n = len(boxes)
    out = {}
    for key, value in pred.items():
        if key == "boxes":
            value = boxes
        elif key == "keypoints":
            value = value.clone()
            value[:, :, 0] *= scale_x
            value[:, :, 1] *= scale_y
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and len(value) == n:
            value = value[keep]
        out[key] = value
    return out


def boxes_scale(scale_x: float, scale_y: float, like: torch.Tensor) -> torch.Tensor:
    """``[sx, sy, sx, sy]`` in the dtype/device of ``like``."""
    return torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=like.dtype, device=like.device)
