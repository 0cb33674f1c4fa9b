"""Rotated-box cases: nms_rotated and box_iou_rotated against their axis-aligned counterparts on
the same boxes at angle 0 (centres uniform in a 1216 x 800 image, sizes 16-256 px, fixed seed)."""

from __future__ import annotations

import torch
import torchvision
from timing import Case

from detzoo.ops.rotated_boxes import nms_rotated, pairwise_iou_rotated


def _boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rotated boxes [n, 5] at angle 0, the same boxes as XYXY [n, 4], and scores [n]."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g) * torch.tensor([1216.0, 800.0])
    sizes = 16 + torch.rand(n, 2, generator=g) * 240
    rotated = torch.cat((centres, sizes, torch.zeros(n, 1)), 1)
    xyxy = torch.cat((centres - sizes / 2, centres + sizes / 2), 1)
    return rotated, xyxy, torch.rand(n, generator=g)


def _axis_aligned_nms() -> tuple[object, str]:
    """detzoo's own nms when its kernel is registered, torchvision's otherwise."""
    try:
        torch.ops.detzoo.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    except (AttributeError, NotImplementedError, RuntimeError):
        return torchvision.ops.nms, "torchvision nms"
    return torch.ops.detzoo.nms, "detzoo nms"


def cases() -> list[Case]:
    rotated, xyxy, scores = _boxes(5000)
    nms, nms_name = _axis_aligned_nms()
    if not torch.equal(nms_rotated(rotated, scores, 0.7), nms(xyxy, scores, 0.7)):
        raise AssertionError("nms_rotated at angle 0 keeps another set than axis-aligned nms")
    rot1k, xyxy1k, _ = _boxes(1000, seed=1)
    return [
        Case(
            "nms_rotated 5k boxes @ 0 deg, IoU 0.7",
            lambda: nms_rotated(rotated, scores, 0.7),
            lambda: nms(xyxy, scores, 0.7),
            target=1 / 3,
            reference_name=nms_name,
        ),
        Case(
            "box_iou_rotated 1k x 1k @ 0 deg",
            lambda: pairwise_iou_rotated(rot1k, rot1k),
            lambda: torchvision.ops.box_iou(xyxy1k, xyxy1k),
            target=0.3,
            reference_name="torchvision box_iou",
        ),
    ]
