"""The proposals an ROI head trains on, with their matched ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SampledProposals:
    """One image's proposals chosen for the ROI-head losses.

    ``boxes`` ``[R, 4]``; ``gt_classes`` int64 ``[R]`` in ``[0, K]`` (K = background);
    ``gt_boxes`` ``[R, 4]`` the matched ground truth (zeros where there is none); ``gt_index``
    int64 ``[R]`` the index of the matched ground-truth instance (for mask/keypoint targets).
    """

    boxes: torch.Tensor
    gt_classes: torch.Tensor
    gt_boxes: torch.Tensor
    gt_index: torch.Tensor
