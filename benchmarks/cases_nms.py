"""nms / batched_nms cases against torchvision on detector-proposal-like boxes.

``random_boxes`` is shared with the other benchmark families (ROI ops take proposals too).
"""

from __future__ import annotations

import torch
import torchvision
from timing import Case

from detzoo.ops.nms import batched_nms, nms


def random_boxes(n: int, seed: int, image_size: tuple[int, int] = (800, 1216)) -> torch.Tensor:
    """``[n, 4]`` float32 XYXY boxes like detector proposals: centres uniform in an image of
    ``image_size = (height, width)`` pixels, widths and heights uniform in 16-256 px."""
    g = torch.Generator().manual_seed(seed)
    height, width = image_size
    centres = torch.rand(n, 2, generator=g) * torch.tensor([float(width), float(height)])
    sizes = 16 + torch.rand(n, 2, generator=g) * 240
    return torch.cat((centres - sizes / 2, centres + sizes / 2), 1)


def _scores(n: int, seed: int) -> torch.Tensor:
    """Distinct scores in [0, 1) in random order (no ties, whose order torchvision leaves open)."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randperm(n, generator=g).float() / n


def _nms_case(n: int, iou: float, target: float) -> Case:
    boxes, scores = random_boxes(n, seed=n), _scores(n, seed=n)
    if not torch.equal(nms(boxes, scores, iou), torchvision.ops.nms(boxes, scores, iou)):
        raise AssertionError(f"nms keeps other boxes than torchvision ({n} boxes, IoU {iou})")
    return Case(
        f"nms {n // 1000}k boxes, IoU {iou}",
        lambda: nms(boxes, scores, iou),
        lambda: torchvision.ops.nms(boxes, scores, iou),
        target=target,
    )


def _batched_case(n: int, classes: int, target: float) -> Case:
    boxes, scores = random_boxes(n, seed=n + 7), _scores(n, seed=n + 7)
    idxs = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(n))
    ours = batched_nms(boxes, scores, idxs, 0.5)
    if not torch.equal(ours, torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)):
        raise AssertionError(f"batched_nms keeps other boxes than torchvision ({n} boxes)")
    return Case(
        f"batched_nms {n // 1000}k boxes, {classes} classes, IoU 0.5",
        lambda: batched_nms(boxes, scores, idxs, 0.5),
        lambda: torchvision.ops.batched_nms(boxes, scores, idxs, 0.5),
        target=target,
    )


def cases() -> list[Case]:
    targets = {1000: 1.5, 5000: 2.0, 20000: 2.0}
    return [
        *(_nms_case(n, iou, targets[n]) for n in targets for iou in (0.7, 0.5)),
        _batched_case(5000, 80, target=1.5),
        _batched_case(20000, 80, target=1.5),
    ]
