"""The proposals an ROI head trains on, with their matched ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from detzoo.heads.matcher import Matcher


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

    def select(self, index: torch.Tensor) -> SampledProposals:
        """The proposals at ``index`` (int64 indices or a bool mask ``[R]``)."""
        return SampledProposals(
            self.boxes[index], self.gt_classes[index], self.gt_boxes[index], self.gt_index[index]
        )


@torch.no_grad()
def label_proposals(
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    matcher: Matcher,
    num_classes: int,
) -> SampledProposals:
    """Labels every proposal of one image by its best-IoU ground truth (Detectron2's matching in
    ``ROIHeads.label_and_sample_proposals`` and ``CascadeROIHeads._match_and_label_boxes``).

    Args:
        boxes: ``[P, 4]`` XYXY proposals, input pixels.
        gt_boxes: ``[G, 4]`` XYXY ground truth; gt_labels: int64 ``[G]`` in ``[0, K)``.
        matcher: IoU matcher whose labels are 1 (foreground), 0 (background), -1 (ignored).
        num_classes: K, the background class index.

    Returns:
        All ``P`` proposals with ``gt_classes`` = the matched class, K for background, -1 where
        ignored; ``gt_boxes`` / ``gt_index`` of the matched ground truth (zeros / 0 without any).
    """
    matched_idxs, match_labels = matcher(box_iou(gt_boxes, boxes))
    if len(gt_boxes):
        gt_classes = gt_labels[matched_idxs].clone()
        gt_classes[match_labels == 0] = num_classes
        gt_classes[match_labels == -1] = -1
        matched_gt = gt_boxes[matched_idxs]
    else:
        gt_classes = torch.full_like(matched_idxs, num_classes)
        matched_gt = boxes.new_zeros((len(boxes), 4))
    return SampledProposals(boxes, gt_classes, matched_gt, matched_idxs)
