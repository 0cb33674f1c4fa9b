"""Losses shared by the detection heads, with Detectron2's definitions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from detzoo.heads.box_coder import BoxCoder


def smooth_l1_loss(input: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Summed smooth-L1 (Huber / beta) loss; ``beta < 1e-5`` is plain L1, as in Detectron2.

    (torch's ``F.smooth_l1_loss`` divides by ``beta`` and is undefined at 0, hence this wrapper.)
    """
    if beta < 1e-5:
        return (input - target).abs().sum()
    return F.smooth_l1_loss(input, target, beta=beta, reduction="sum")


def box_regression_loss(
    coder: BoxCoder,
    src_boxes: torch.Tensor,
    pred_deltas: torch.Tensor,
    gt_boxes: torch.Tensor,
    loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
) -> torch.Tensor:
    """Summed regression loss over foreground predictions.

    Args:
        coder: the box parametrisation.
        src_boxes: anchors or proposals ``[R, 4]`` XYXY.
        pred_deltas: predicted deltas ``[R, 4]`` for the matched class.
        gt_boxes: matched ground-truth boxes ``[R, 4]`` XYXY.
        loss_type: ``"smooth_l1"`` on deltas, or ``"giou"`` on decoded boxes.
    """
    if loss_type == "smooth_l1":
        return smooth_l1_loss(pred_deltas, coder.encode(src_boxes, gt_boxes), smooth_l1_beta)
    if loss_type == "giou":
        pred_boxes = coder.decode(pred_deltas, src_boxes)
        return generalized_box_iou_loss(pred_boxes, gt_boxes, reduction="sum")
    raise ValueError(f"unknown box regression loss {loss_type!r}; choose 'smooth_l1' or 'giou'")
