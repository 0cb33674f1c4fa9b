"""Mapping a model's detections from the padded-batch input frame to an output image size
(Detectron2's ``detector_postprocess``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detzoo.ops import paste_masks_in_image


def rescale_detections(
    pred: dict[str, torch.Tensor],
    input_size: tuple[int, int],
    output_size: tuple[int, int],
    mask_threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Scales ``boxes`` (and ``keypoints`` x/y) from ``input_size`` to ``output_size`` (both
    ``(height, width)`` in pixels), clips boxes to the output image and drops boxes that became
    empty, with every per-instance field (also those in a dict of per-instance tensors, such as
    ``densepose``). Per-box mask probabilities ``masks`` ``[N, 1, M, M]``
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
        if isinstance(value, dict):  # per-instance tensors grouped under one key (densepose)
            value = {k: _keep_rows(v, keep, n) for k, v in value.items()}
        out[key] = _keep_rows(value, keep, n)
    masks = out.get("masks")
    if isinstance(masks, torch.Tensor) and masks.dim() == 4:
        out["masks"] = paste_masks_in_image(masks[:, 0], out["boxes"], (h, w), mask_threshold)
    return out


def _keep_rows(value: object, keep: torch.Tensor, n: int) -> object:
    """``value[keep]`` for a tensor with one row per instance (``n``); anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and len(value) == n:
        return value[keep]
    return value


def boxes_scale(scale_x: float, scale_y: float, like: torch.Tensor) -> torch.Tensor:
    """``[sx, sy, sx, sy]`` in the dtype/device of ``like``."""
    return torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=like.dtype, device=like.device)


def rescale_semantic(logits: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """Per-class logits ``[C, h, w]`` of one image (cropped to its unpadded input size) resized
    to ``output_size`` ``(H, W)`` (bilinear, ``align_corners=False``; Detectron2's
    ``sem_seg_postprocess``): ``[C, H, W]``."""
    if tuple(logits.shape[-2:]) == tuple(output_size):
        return logits
    return F.interpolate(logits[None], size=output_size, mode="bilinear", align_corners=False)[0]
