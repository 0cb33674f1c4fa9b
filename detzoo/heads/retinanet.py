"""RetinaNet's dense head: class and box subnets shared across levels, focal loss, per-level
top-k decoding (Detectron2's RetinaNetHead / RetinaNet losses and inference)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import box_iou

from detzoo.config import Recordable
from detzoo.heads.box_coder import BoxCoder
from detzoo.heads.focal_loss import sigmoid_focal_loss_sum
from detzoo.heads.losses import box_regression_loss
from detzoo.heads.matcher import Matcher
from detzoo.layers import Conv2d, get_norm
from detzoo.ops import batched_nms


def _subnet(in_channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """``num_convs`` × (3×3 conv [+ norm] + ReLU), as ``cls_subnet``/``bbox_subnet``."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(Conv2d(in_channels, in_channels, 3, padding=1))
        if norm:
            layers.append(get_norm(norm, in_channels))
        layers.append(nn.ReLU(inplace=True))  # on a fresh conv/norm output: same values
    return nn.Sequential(*layers)


class RetinaNetHead(Recordable, nn.Module):
    """Class subnet → ``A*K`` logits and box subnet → ``A*4`` deltas per cell, on every level.

    Args:
        in_channels: channels of the pyramid features.
        num_anchors: A, anchors per cell.
        num_classes: K.
        num_convs: convs in each subnet (4).
        prior_prob: initial foreground probability of the class logits (0.01).
        norm: optional norm in the subnets (``""``, ``"GN"``, ...).
    """

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        num_convs: int = 4,
        prior_prob: float = 0.01,
        norm: str = "",
    ):
        super().__init__()
        self.num_classes = num_classes
        self.cls_subnet = _subnet(in_channels, num_convs, norm)
        self.bbox_subnet = _subnet(in_channels, num_convs, norm)
        self.cls_score = Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.bbox_pred = Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        for module in [*self.cls_subnet, *self.bbox_subnet, self.cls_score, self.bbox_pred]:
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(
        self, features: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: logits ``[N, A*K, H, W]`` and deltas ``[N, A*4, H, W]``."""
        logits = [self.cls_score(self.cls_subnet(x)) for x in features]
        deltas = [self.bbox_pred(self.bbox_subnet(x)) for x in features]
        return logits, deltas


def flatten_per_anchor(x: torch.Tensor, k: int) -> torch.Tensor:
    """``[N, A*k, H, W]`` → ``[N, H*W*A, k]`` (anchor order of :class:`AnchorGenerator`)."""
    n, _, h, w = x.shape
    return x.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k)


class RetinaNetOutputs(Recordable, nn.Module):
    """Focal-loss training and top-k/NMS inference over a dense head's flattened outputs.

    Args:
        num_classes: K.
        box_coder: weights ``(1, 1, 1, 1)``.
        matcher: IoU ``[0.4, 0.5]`` → ``[0, -1, 1]`` with low-quality matches.
        focal_alpha, focal_gamma: focal loss parameters (0.25, 2.0).
        box_reg_loss_type, smooth_l1_beta: regression loss (``"smooth_l1"``, beta 0.1).
        score_thresh, topk_candidates, nms_thresh, detections_per_image: test-time decoding.
    """

    def __init__(
        self,
        num_classes: int,
        box_coder: BoxCoder | None = None,
        matcher: Matcher | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.1,
        score_thresh: float = 0.05,
        topk_candidates: int = 1000,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.box_coder = box_coder or BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = matcher or Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.score_thresh = score_thresh
        self.topk_candidates = topk_candidates
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image
        # EMA of the number of foreground anchors (Detectron2: start 100, momentum 0.9). Training
        # state, so it is saved: a run resumed from a checkpoint normalises its losses as the
        # uninterrupted run would. Checkpoints without it (Detectron2's, which keep it outside the
        # state dict, and detzoo's from before it was saved) load, leaving the initial 100
        # (RetinaNet.OPTIONAL_STATE_KEYS).
        self.register_buffer("loss_normalizer", torch.tensor(100.0), persistent=True)

    @torch.no_grad()
    def label_anchors(
        self,
        anchors: torch.Tensor,
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class targets ``[N, R]`` (K = background, -1 = ignored) and matched boxes ``[N, R, 4]``."""
        labels, matched = [], []
        for boxes, classes in zip(gt_boxes, gt_labels):
            idx, match_labels = self.matcher(box_iou(boxes, anchors))
            if len(boxes):
                target = classes[idx].clone()
                target[match_labels == 0] = self.num_classes
                target[match_labels == -1] = -1
                matched.append(boxes[idx])
            else:
                target = torch.full_like(idx, self.num_classes)
                matched.append(torch.zeros_like(anchors))
            labels.append(target)
        return torch.stack(labels), torch.stack(matched)

    def losses(
        self,
        anchors: torch.Tensor,
        logits: torch.Tensor,
        deltas: torch.Tensor,
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Focal loss over non-ignored anchors and box loss over foreground anchors, both divided
        by the EMA of the foreground count. ``anchors`` ``[R, 4]``, ``logits`` ``[N, R, K]``,
        ``deltas`` ``[N, R, 4]``."""
        labels, matched = self.label_anchors(anchors, gt_boxes, gt_labels)
        pos = (labels >= 0) & (labels != self.num_classes)
        if self.training:
            num_pos = max(int(pos.sum()), 1)
            self.loss_normalizer.mul_(0.9).add_(0.1 * num_pos)
        normalizer = self.loss_normalizer
        loss_cls = sigmoid_focal_loss_sum(
            logits.reshape(-1, self.num_classes),
            labels.reshape(-1),
            alpha=self.focal_alpha,
            gamma=self.focal_gamma,
        )
        loss_box = box_regression_loss(
            self.box_coder,
            anchors.unsqueeze(0).expand_as(deltas)[pos],
            deltas[pos],
            matched[pos],
            self.box_reg_loss_type,
            self.smooth_l1_beta,
        )
        return {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box / normalizer}

    def inference(
        self,
        anchors: Sequence[torch.Tensor],
        logits: Sequence[torch.Tensor],
        deltas: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """One image's detections from per-level anchors ``[R_l, 4]``, logits ``[R_l, K]`` and
        deltas ``[R_l, 4]``: per level the ``topk_candidates`` best (anchor, class) scores above
        ``score_thresh``, then class-wise NMS over all levels, ``detections_per_image`` kept.
        Boxes are not clipped here (the model's post-processing clips them).

        The candidates are Detectron2's (the ``topk_candidates`` best sigmoid scores above the
        threshold) found without a sigmoid over every (anchor, class) pair: the sigmoid is
        monotone, so the best logits have the best scores, and the scores above the threshold
        are an upper set of the logits — the ``topk_candidates`` best logits hold all of them or
        only them. Only these candidates get a sigmoid and the threshold test. (Among *equal*
        scores — a sigmoid saturated at 1 — which ones fill the last places is as arbitrary here
        as in Detectron2's ``topk``.)"""
        boxes_all, scores_all, classes_all = [], [], []
        for anchors_l, logits_l, deltas_l in zip(anchors, logits, deltas):
            flat = logits_l.flatten()
            best, candidates = flat.topk(min(flat.numel(), self.topk_candidates))
            scores = best.float().sigmoid()  # float32 scores under autocast
            keep = scores > self.score_thresh
            scores, candidates = scores[keep], candidates[keep]
            anchor_idx = candidates // self.num_classes
            classes = candidates % self.num_classes
            boxes_all.append(self.box_coder.decode(deltas_l[anchor_idx], anchors_l[anchor_idx]))
            scores_all.append(scores)
            classes_all.append(classes)
        boxes = torch.cat(boxes_all)
        scores = torch.cat(scores_all)
        classes = torch.cat(classes_all)
        keep = batched_nms(boxes, scores, classes, self.nms_thresh)[: self.detections_per_image]
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": classes[keep]}
