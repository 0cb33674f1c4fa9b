"""Fast R-CNN box predictor: classification + box regression on pooled ROI features, its losses
and its test-time post-processing (Detectron2's FastRCNNOutputLayers / fast_rcnn_inference)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detzoo.config import Recordable
from detzoo.heads.box_coder import BoxCoder
from detzoo.heads.losses import box_regression_loss
from detzoo.heads.rpn import clip_boxes
from detzoo.ops import batched_nms


class FastRCNNOutputLayers(Recordable, nn.Module):
    """``cls_score`` (K+1 logits, background last) and ``bbox_pred`` (4 deltas per class, or 4 when
    class-agnostic) on a box feature vector.

    Args:
        in_features: size of the (flattened) box feature.
        num_classes: K foreground classes.
        box_coder: delta parametrisation (Detectron2: weights ``(10, 10, 5, 5)``).
        cls_agnostic_bbox_reg: one box per proposal instead of one per class.
        score_thresh, nms_thresh, detections_per_image: test-time filtering.
        box_reg_loss_type: ``"smooth_l1"`` or ``"giou"``; smooth_l1_beta: its beta.
        loss_weights: multipliers for ``loss_cls`` / ``loss_box_reg``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        box_coder: BoxCoder | None = None,
        cls_agnostic_bbox_reg: bool = False,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
        loss_weights: Mapping[str, float] | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 * (1 if cls_agnostic_bbox_reg else num_classes))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0.0)
        nn.init.constant_(self.bbox_pred.bias, 0.0)
        self.box_coder = box_coder or BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weights = {"loss_cls": 1.0, "loss_box_reg": 1.0, **(loss_weights or {})}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box features ``[R, ...]`` → class logits ``[R, K+1]`` and deltas ``[R, 4K]`` (or ``[R, 4]``)."""
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)

    def losses(
        self,
        predictions: tuple[torch.Tensor, torch.Tensor],
        proposal_boxes: torch.Tensor,
        gt_classes: torch.Tensor,
        gt_boxes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Softmax cross-entropy over sampled proposals, box regression on foreground ones
        normalised by the number of sampled proposals.

        Args:
            predictions: this module's output for the sampled proposals of the whole batch.
            proposal_boxes: ``[R, 4]``; gt_classes: int64 ``[R]`` in ``[0, K]`` (K = background);
            gt_boxes: ``[R, 4]`` matched ground truth (ignored for background).
        """
        logits, deltas = predictions
        if gt_classes.numel() == 0:
            loss_cls = logits.sum() * 0.0
        else:
            loss_cls = F.cross_entropy(logits, gt_classes, reduction="mean")
        fg = torch.nonzero((gt_classes >= 0) & (gt_classes < self.num_classes), as_tuple=True)[0]
        if deltas.shape[1] == 4:
            fg_deltas = deltas[fg]
        else:
            fg_deltas = deltas.view(-1, self.num_classes, 4)[fg, gt_classes[fg]]
        loss_box = box_regression_loss(
            self.box_coder,
            proposal_boxes[fg],
            fg_deltas,
            gt_boxes[fg],
            self.box_reg_loss_type,
            self.smooth_l1_beta,
        ) / max(gt_classes.numel(), 1.0)
        return {
            "loss_cls": loss_cls * self.loss_weights["loss_cls"],
            "loss_box_reg": loss_box * self.loss_weights["loss_box_reg"],
        }

    def predict_boxes(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposal_boxes: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Decoded boxes per image, ``[R_i, 4K]`` (or ``[R_i, 4]`` when class-agnostic)."""
        _, deltas = predictions
        if not len(proposal_boxes):
            return []
        boxes = self.box_coder.decode(deltas, torch.cat(list(proposal_boxes)))
        return list(boxes.split([len(p) for p in proposal_boxes]))

    def predict_probs(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposal_boxes: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Softmax class probabilities per image, ``[R_i, K+1]``, at least float32 (also from
        bfloat16/half logits under autocast, as Detectron2 gets them on CUDA)."""
        logits, _ = predictions
        probs = F.softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))
        return list(probs.split([len(p) for p in proposal_boxes]))

    def inference(
        self,
        boxes: Sequence[torch.Tensor],
        scores: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Final detections per image from per-class boxes and probabilities (see
        :func:`detections_from_scores`)."""
        return [
            detections_from_scores(
                b, s, size, self.score_thresh, self.nms_thresh, self.detections_per_image
            )
            for b, s, size in zip(boxes, scores, image_sizes)
        ]


def detections_from_scores(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_size: tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk: int,
) -> dict[str, torch.Tensor]:
    """One image's detections, Detectron2's ``fast_rcnn_inference_single_image``.

    Args:
        boxes: ``[R, 4K]`` per-class boxes (or ``[R, 4]`` class-agnostic), input pixels.
        scores: ``[R, K+1]`` probabilities, background last.
        image_size: ``(height, width)`` to clip to.

    Returns:
        ``{"boxes": [D, 4], "scores": [D], "labels": int64 [D]}`` with every (proposal, class) pair
        whose score exceeds ``score_thresh``, after per-class NMS, the ``topk`` best
        (``topk < 0``: all), by decreasing score. ``labels`` index the K classes.
    """
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    if not bool(valid.all()):
        boxes, scores = boxes[valid], scores[valid]
    scores = scores[:, :-1]
    num_reg = boxes.shape[1] // 4
    boxes = clip_boxes(boxes.reshape(-1, 4), image_size).view(-1, num_reg, 4)
    keep_mask = scores > score_thresh
    inds = keep_mask.nonzero()
    boxes = boxes[inds[:, 0], 0] if num_reg == 1 else boxes[keep_mask]
    scores = scores[keep_mask]
    keep = batched_nms(boxes, scores, inds[:, 1], nms_thresh)
    if topk >= 0:
        keep = keep[:topk]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": inds[keep, 1]}
