"""roi_align / roi_align_rotated cases against torchvision.ops.roi_align (aligned=True) at Mask
R-CNN's box-head size: FPN level P2 of two 800x1216 images, 1024 proposals, 7x7 bins."""

from __future__ import annotations

import torch
import torchvision
from cases_nms import random_boxes
from timing import Case

from detzoo.ops.roi_pooling import roi_align
from detzoo.ops.rotated_roi_pooling import roi_align_rotated

_SCALE, _SIZE = 0.25, 7


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """float32 features [2, 256, 200, 304] and [1024, 5] rois split over the 2 images."""
    feats = torch.randn(2, 256, 200, 304, generator=torch.Generator().manual_seed(0))
    boxes = random_boxes(1024, seed=0)
    ids = (torch.arange(1024) % 2).float()[:, None]
    return feats, torch.cat((ids, boxes), 1)


def _fwd_bwd(pool, feats: torch.Tensor, rois: torch.Tensor):
    def run():
        x = feats.detach().requires_grad_()
        pool(x, rois).sum().backward()
        return x.grad

    return run


def cases() -> list[Case]:
    feats, rois = _inputs()
    ours = lambda x, r: roi_align(x, r, _SIZE, _SCALE, 0, True)
    ref = lambda x, r: torchvision.ops.roi_align(x, r, _SIZE, _SCALE, 0, True)
    if not torch.allclose(ours(feats, rois), ref(feats, rois), atol=1e-5):
        raise AssertionError("roi_align differs from torchvision.ops.roi_align")
    centres, sizes = (rois[:, 1:3] + rois[:, 3:5]) / 2, rois[:, 3:5] - rois[:, 1:3]
    rotated = torch.cat((rois[:, :1], centres, sizes, torch.zeros(len(rois), 1)), 1)
    rot = lambda x, r: roi_align_rotated(x, rotated, _SIZE, _SCALE, 0)
    name = "1024 rois 7x7 on 2x256x200x304"
    return [
        Case(f"roi_align fwd, {name}", lambda: ours(feats, rois), lambda: ref(feats, rois), 1.7),
        Case(
            f"roi_align fwd+bwd, {name}",
            _fwd_bwd(ours, feats, rois),
            _fwd_bwd(ref, feats, rois),
            1.7,
        ),
        Case(
            f"roi_align_rotated fwd (angle 0), {name}",
            lambda: rot(feats, rois),
            lambda: ref(feats, rois),
            1.0,
            "torchvision roi_align",
        ),
    ]
