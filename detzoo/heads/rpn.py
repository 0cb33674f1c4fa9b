"""Region Proposal Network (Detectron2's RPN + StandardRPNHead).

Proposals are XYXY boxes in input-image pixels (the padded batch frame, clipped to each image's
own size) with their objectness logits, at most ``post_nms_topk`` per image, by decreasing logit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from detzoo.config import Recordable
from detzoo.heads.anchors import AnchorGenerator
from detzoo.heads.box_coder import BoxCoder
from detzoo.heads.losses import box_regression_loss
from detzoo.heads.matcher import Matcher
from detzoo.heads.sampler import subsample_labels
from detzoo.layers import Conv2d
from detzoo.ops import batched_nms


class RPNHead(Recordable, nn.Module):
    """Shared 3×3 conv + ReLU, then 1×1 convs for A objectness logits and A×4 deltas per cell.

    Parameter names follow Detectron2 (``conv``, ``objectness_logits``, ``anchor_deltas``).
    """

    def __init__(self, in_channels: int, num_anchors: int, box_dim: int = 4):
        super().__init__()
        self.conv = Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.objectness_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(in_channels, num_anchors * box_dim, kernel_size=1)
        for layer in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0.0)

    def forward(
        self, features: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: logits ``[N, A, H, W]`` and deltas ``[N, A*4, H, W]``."""
        logits, deltas = [], []
        for x in features:
            t = F.relu_(self.conv(x))
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


def flatten_dense_predictions(
    logits: Sequence[torch.Tensor], deltas: Sequence[torch.Tensor], box_dim: int = 4
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``[N, A*c, H, W]`` per level → ``[N, H*W*A, c]`` (logits squeezed when c == 1), in anchor order."""
    flat_logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
    flat_deltas = [
        x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1])
        .permute(0, 3, 4, 1, 2)
        .flatten(1, -2)
        for x in deltas
    ]
    return flat_logits, flat_deltas


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clamps XYXY boxes ``[R, 4]`` to ``[0, width] × [0, height]``."""
    h, w = image_size
    x1 = boxes[:, 0].clamp(min=0, max=w)
    y1 = boxes[:, 1].clamp(min=0, max=h)
    x2 = boxes[:, 2].clamp(min=0, max=w)
    y2 = boxes[:, 3].clamp(min=0, max=h)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """bool ``[R]``: width and height both greater than ``threshold``."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def top_proposals(
    proposals: Sequence[torch.Tensor],
    logits: Sequence[torch.Tensor],
    image_sizes: Sequence[tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> list[dict[str, torch.Tensor]]:
    """Selects proposals as Detectron2's ``find_top_rpn_proposals``.

    Per level the ``pre_nms_topk`` highest logits; per image: drop non-finite boxes (an error in
    training), clip, drop boxes not larger than ``min_box_size``, NMS per level, keep
    ``post_nms_topk``.

    Args:
        proposals: per level ``[N, H*W*A, 4]`` decoded boxes.
        logits: per level ``[N, H*W*A]`` objectness logits.

    Returns:
        per image ``{"boxes": [R, 4], "objectness_logits": [R]}``.
    """
    num_images = len(image_sizes)
    device = proposals[0].device
    batch_idx = torch.arange(num_images, device=device)[:, None]
    top_boxes, top_scores, level_ids = [], [], []
    for level, (boxes_l, logits_l) in enumerate(zip(proposals, logits)):
        k = min(pre_nms_topk, logits_l.shape[1])
        scores, idx = logits_l.topk(k, dim=1)
        top_scores.append(scores)
        top_boxes.append(boxes_l[batch_idx, idx])
        level_ids.append(torch.full((k,), level, dtype=torch.int64, device=device))
    top_scores = torch.cat(top_scores, dim=1)
    top_boxes = torch.cat(top_boxes, dim=1)
    level_ids = torch.cat(level_ids)

    results = []
    for n, image_size in enumerate(image_sizes):
        boxes, scores, lvl = top_boxes[n], top_scores[n], level_ids
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        if not bool(valid.all()):
            if training:
                raise FloatingPointError(
                    "RPN predicted non-finite boxes or logits during training: the loss diverged "
                    "(lower the learning rate or check the data)"
                )
            boxes, scores, lvl = boxes[valid], scores[valid], lvl[valid]
        boxes = clip_boxes(boxes, image_size)
        keep = nonempty(boxes, min_box_size)
        if not bool(keep.all()):
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        keep = batched_nms(boxes.float(), scores.float(), lvl, nms_thresh)[:post_nms_topk]
        results.append({"boxes": boxes[keep], "objectness_logits": scores[keep]})
    return results


class RPN(Recordable, nn.Module):
    """Region proposal network over the levels ``in_features`` of a backbone's features.

    Args:
        in_features: feature names, finest first (``["p2", ..., "p6"]`` or ``["res4"]``).
        head: the per-level conv head.
        anchor_generator: anchors per level (strides of ``in_features``).
        box_coder: delta parametrisation (weights ``(1, 1, 1, 1)``).
        matcher: anchor labelling (IoU ``[0.3, 0.7]`` → ``[0, -1, 1]``, low-quality matches).
        batch_size_per_image, positive_fraction: anchor sampling for the losses.
        pre_nms_topk, post_nms_topk: ``(train, test)`` pairs.
        nms_thresh: NMS IoU threshold; min_box_size: proposals must be larger.
        box_reg_loss_type, smooth_l1_beta, loss_weights: as Detectron2's RPN.
    """

    def __init__(
        self,
        in_features: Sequence[str],
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        box_coder: BoxCoder | None = None,
        matcher: Matcher | None = None,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_topk: tuple[int, int] = (2000, 1000),
        post_nms_topk: tuple[int, int] = (1000, 1000),
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
        loss_weights: Mapping[str, float] | None = None,
    ):
        super().__init__()
        self.in_features = list(in_features)
        self.rpn_head = head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder or BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = matcher or Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_topk = tuple(pre_nms_topk)
        self.post_nms_topk = tuple(post_nms_topk)
        self.nms_thresh = nms_thresh
        self.min_box_size = min_box_size
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weights = {"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0, **(loss_weights or {})}

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
        gt_boxes: Sequence[torch.Tensor] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Proposals per image and (when ``gt_boxes`` are given in training) the RPN losses."""
        feats = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(feats)
        logits, deltas = flatten_dense_predictions(*self.rpn_head(feats))
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if gt_boxes is None:
                raise ValueError("RPN in training mode needs gt_boxes")
            losses = self.losses(anchors, logits, deltas, gt_boxes)
        with torch.no_grad():
            proposals = [
                self._decode(anchors_l, deltas_l) for anchors_l, deltas_l in zip(anchors, deltas)
            ]
            results = top_proposals(
                proposals,
                [x.detach() for x in logits],
                image_sizes,
                self.nms_thresh,
                self.pre_nms_topk[0 if self.training else 1],
                self.post_nms_topk[0 if self.training else 1],
                self.min_box_size,
                self.training,
            )
        return results, losses

    def _decode(self, anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """Deltas ``[N, R, 4]`` on anchors ``[R, 4]`` → boxes ``[N, R, 4]``."""
        n = deltas.shape[0]
        flat_anchors = anchors.unsqueeze(0).expand(n, -1, -1).reshape(-1, 4)
        return self.box_coder.decode(deltas.reshape(-1, 4), flat_anchors).view(n, -1, 4)

    @torch.no_grad()
    def label_anchors(
        self, anchors: torch.Tensor, gt_boxes: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled anchor labels ``[N, R]`` (1 fg, 0 bg, -1 ignored) and matched boxes ``[N, R, 4]``."""
        labels, matched = [], []
        for gt in gt_boxes:
            matched_idxs, match_labels = self.matcher(box_iou(gt, anchors))
            pos, neg = subsample_labels(
                match_labels, self.batch_size_per_image, self.positive_fraction, 0
            )
            sampled = torch.full_like(match_labels, -1)
            sampled[pos] = 1
            sampled[neg] = 0
            labels.append(sampled)
            matched.append(gt[matched_idxs] if len(gt) else torch.zeros_like(anchors))
        return torch.stack(labels), torch.stack(matched)

    def losses(
        self,
        anchors: Sequence[torch.Tensor],
        logits: Sequence[torch.Tensor],
        deltas: Sequence[torch.Tensor],
        gt_boxes: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``loss_rpn_cls`` (BCE on sampled anchors) and ``loss_rpn_loc`` (on positives), both
        normalised by ``batch_size_per_image * num_images``."""
        all_anchors = torch.cat(anchors)
        labels, matched = self.label_anchors(all_anchors, gt_boxes)
        logits = torch.cat(logits, dim=1)
        deltas = torch.cat(deltas, dim=1)
        pos = labels == 1
        valid = labels >= 0
        loc = box_regression_loss(
            self.box_coder,
            all_anchors.unsqueeze(0).expand_as(deltas)[pos],
            deltas[pos],
            matched[pos],
            self.box_reg_loss_type,
            self.smooth_l1_beta,
        )
        cls = F.binary_cross_entropy_with_logits(
            logits[valid], labels[valid].to(logits.dtype), reduction="sum"
        )
        normalizer = self.batch_size_per_image * len(gt_boxes)
        return {
            "loss_rpn_cls": cls / normalizer * self.loss_weights["loss_rpn_cls"],
            "loss_rpn_loc": loc / normalizer * self.loss_weights["loss_rpn_loc"],
        }
