"""Mapping a model's detections from the padded-batch input frame to an output image size
(Detectron2's ``detector_postprocess``)."""

from __future__ import annotations

import torch

from detzoo.ops import paste_masks_in_image


def rescale_detections(
    pred: dict[str, torch.Tensor],
    input_size: tuple[int, int],
    output_size: tuple[int, int],
    mask_threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Scales ``boxes`` (and ``keypoints`` x/y) from ``input_size`` to ``output_size`` (both
    ``(height, width)`` in pixels), clips boxes to the output image and drops boxes that became
    empty, with every per-instance field. Per-box mask probabilities ``masks`` ``[N, 1, M, M]``
    (mask heads' output) are then pasted into the output image at the rescaled boxes: bool
    ``[N, H_out, W_out]``, ``probability >= mask_threshold``. Other fields are returned unchanged."""
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
    masks = out.get("masks")
    if isinstance(masks, torch.Tensor) and masks.dim() == 4:
        out["masks"] = paste_masks_in_image(masks[:, 0], out["boxes"], (h, w), mask_threshold)
    return out


def boxes_scale(scale_x: float, scale_y: float, like: torch.Tensor) -> torch.Tensor:
    """``[sx, sy, sx, sy]`` in the dtype/device of ``like``."""
    return torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=like.dtype, device=like.device)
