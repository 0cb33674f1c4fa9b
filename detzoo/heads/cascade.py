"""Cascade R-CNN ROI heads (Cai & Vasconcelos 2018; Detectron2's ``CascadeROIHeads``).

A sequence of box stages, each with its own box head, class-agnostic predictor, box-coder weights
and training IoU threshold. Stage ``k + 1`` pools the boxes stage ``k`` regressed (detached and
clipped), so later stages see better-localised proposals and train at a stricter IoU. At test time
the class probabilities of all stages are averaged and the boxes of the last stage kept. The
per-instance branches (mask, keypoints) run as in :class:`StandardROIHeads`: in training on the
first stage's samples, at inference on the final detections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers
from detzoo.heads.matcher import Matcher
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_branch import ROIBranch
from detzoo.heads.roi_heads import StandardROIHeads
from detzoo.heads.roi_sampling import SampledProposals, label_proposals
from detzoo.heads.rpn import clip_boxes, nonempty

#: Detectron2's ``ROI_BOX_CASCADE_HEAD.IOUS``: the foreground IoU of each stage.
CASCADE_IOUS = (0.5, 0.6, 0.7)
#: Detectron2's ``ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS``: ``(wx, wy, ww, wh)`` of each stage; the
#: deltas between better-localised boxes are smaller, so later stages scale them up more.
CASCADE_BOX_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``scale`` on the way back.

    Cascade R-CNN averages the stages' losses but scales the heads' gradients back up; Detectron2
    does the equivalent: sums the losses and scales by ``1 / num_stages`` the gradient that flows
    from each stage into the shared pooled features (``_ScaleGradient``).
    """
    return _ScaleGradient.apply(x, scale)


def average_stage_scores(scores_per_stage: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Per-image mean of the stages' class probabilities.

    Args:
        scores_per_stage: for each stage, per-image probabilities ``[R_i, K+1]`` (same proposals
            in every stage).

    Returns:
        Per-image ``[R_i, K+1]``, summed in stage order then multiplied by ``1 / num_stages``
        (Detectron2's order of operations, so results match it bit for bit).
    """
    scale = 1.0 / len(scores_per_stage)
    return [sum(per_image) * scale for per_image in zip(*scores_per_stage)]


def next_stage_proposals(
    boxes: Sequence[torch.Tensor], image_sizes: Sequence[tuple[int, int]], drop_empty: bool
) -> list[torch.Tensor]:
    """The next stage's proposals from this stage's regressed boxes (Detectron2's
    ``_create_proposals_from_boxes``).

    Args:
        boxes: per-image regressed boxes ``[R_i, 4]``, XYXY input pixels.
        image_sizes: per-image ``(height, width)`` to clip to.
        drop_empty: drop boxes of zero width or height (training only: at inference every stage
            must score the same proposals, so that the scores can be averaged).

    Returns:
        Per-image ``[R'_i, 4]`` boxes, detached from the graph (proposals carry no gradient).
    """
    out = []
    for b, size in zip(boxes, image_sizes):
        b = clip_boxes(b.detach(), size)
        out.append(b[nonempty(b)] if drop_empty else b)
    return out


class CascadeROIHeads(StandardROIHeads):
    """Multi-stage box branch; the stage-``k`` modules are ``box_head[k]`` / ``box_predictor[k]``
    (Detectron2's names ``roi_heads.box_head.{k}.*``, ``roi_heads.box_predictor.{k}.*``).

    Args:
        box_in_features: feature names for the (shared) box pooler, finest first.
        box_pooler: pools ``[R, C, 7, 7]`` features for every stage.
        box_heads: one box head per stage.
        box_predictors: one class-agnostic predictor per stage (``cls_agnostic_bbox_reg=True``),
            each with its stage's box coder (:data:`CASCADE_BOX_WEIGHTS`); the last one's
            ``score_thresh`` / ``nms_thresh`` / ``detections_per_image`` filter the detections.
        proposal_matchers: one matcher per stage (:data:`CASCADE_IOUS`); the first labels the RPN
            proposals (sampled as in :class:`ROIHeads`), the others label the previous stage's
            boxes, all of them, unsampled, so they may not ignore any (labels 0/1 only).
        mask_head, keypoint_head: optional per-instance branches.
        **kwargs: :class:`ROIHeads` sampling arguments (not ``matcher``).

    Training losses are each stage's predictor losses suffixed ``_stage{k}``
    (``loss_cls_stage0``, ``loss_box_reg_stage0``, ...), plus the branches' losses.
    """

    def __init__(
        self,
        box_in_features: Sequence[str],
        box_pooler: ROIPooler,
        box_heads: Sequence[ConvFCHead],
        box_predictors: Sequence[FastRCNNOutputLayers],
        proposal_matchers: Sequence[Matcher],
        mask_head: ROIBranch | None = None,
        keypoint_head: ROIBranch | None = None,
        **kwargs,
    ):
        if "matcher" in kwargs:
            raise ValueError(
                "CascadeROIHeads takes proposal_matchers (one per stage) instead of matcher"
            )
        num_stages = len(box_heads)
        if num_stages == 0 or not (len(box_predictors) == len(proposal_matchers) == num_stages):
            raise ValueError(
                f"CascadeROIHeads needs one box head, predictor and matcher per stage; got "
                f"{len(box_heads)} heads, {len(box_predictors)} predictors and "
                f"{len(proposal_matchers)} matchers"
            )
        num_classes = box_predictors[0].num_classes
        for k, predictor in enumerate(box_predictors):
            if predictor.num_classes != num_classes:
                raise ValueError(
                    f"cascade stage {k} predicts {predictor.num_classes} classes, stage 0 "
                    f"{num_classes}: every stage must predict the same classes"
                )
            if predictor.bbox_pred.out_features != 4:
                raise ValueError(
                    f"cascade stage {k} regresses {predictor.bbox_pred.out_features // 4} boxes "
                    f"per proposal; cascade stages need class-agnostic regression "
                    f"(FastRCNNOutputLayers(..., cls_agnostic_bbox_reg=True)), as in Detectron2"
                )
        for k, matcher in enumerate(proposal_matchers[1:], start=1):
            if -1 in matcher.labels:
                raise ValueError(
                    f"cascade stage {k}'s matcher has an 'ignore' (-1) label; later stages train "
                    f"on every box of the previous stage, so their matchers label 0 or 1 only"
                )
        super().__init__(
            box_in_features,
            box_pooler,
            box_heads[0],
            box_predictors[0],
            mask_head=mask_head,
            keypoint_head=keypoint_head,
            matcher=proposal_matchers[0],
            **kwargs,
        )
        # replace the single box head/predictor registered by StandardROIHeads with the stages
        self.box_head = nn.ModuleList(box_heads)
        self.box_predictor = nn.ModuleList(box_predictors)
        self.proposal_matchers = list(proposal_matchers)

    @property
    def num_stages(self) -> int:
        return len(self.box_head)

    def box_features(
        self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor], stage: int = 0
    ) -> torch.Tensor:
        """Stage ``stage``'s box-head features ``[R, D]`` for per-image boxes ``[R_i, 4]``; the
        gradient into the pooled features is scaled by ``1 / num_stages``."""
        pooled = self.box_pooler([features[f] for f in self.box_in_features], boxes)
        pooled = scale_gradient(pooled, 1.0 / self.num_stages)
        return self.box_head[stage](pooled)

    def box_losses(
        self,
        features: Mapping[str, torch.Tensor],
        samples: Sequence[SampledProposals],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[Mapping[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Every stage's ``loss_cls`` / ``loss_box_reg``, suffixed ``_stage{k}``. Stage 0 trains
        on ``samples``; stage ``k > 0`` on all of stage ``k - 1``'s regressed boxes (empty ones
        dropped), labelled by its own matcher against ``targets``."""
        losses = {}
        stage_boxes: list[torch.Tensor] = []
        for k, predictor in enumerate(self.box_predictor):
            if k > 0:
                boxes = next_stage_proposals(stage_boxes, image_sizes, drop_empty=True)
                samples = [
                    label_proposals(
                        b, t["boxes"], t["labels"], self.proposal_matchers[k], self.num_classes
                    )
                    for b, t in zip(boxes, targets)
                ]
            proposals = [s.boxes for s in samples]
            predictions = predictor(self.box_features(features, proposals, k))
            stage_boxes = predictor.predict_boxes(predictions, proposals)
            stage_losses = predictor.losses(
                predictions,
                torch.cat(proposals),
                torch.cat([s.gt_classes for s in samples]),
                torch.cat([s.gt_boxes for s in samples]),
            )
            losses.update({f"{name}_stage{k}": v for name, v in stage_losses.items()})
        return losses

    def predict_boxes(
        self,
        features: Mapping[str, torch.Tensor],
        proposals: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Detections per image: the stages' class probabilities averaged, the last stage's
        boxes, then the last predictor's score threshold, per-class NMS and top-k."""
        scores_per_stage = []
        boxes: list[torch.Tensor] = []
        for k, predictor in enumerate(self.box_predictor):
            if k > 0:
                proposals = next_stage_proposals(boxes, image_sizes, drop_empty=False)
            predictions = predictor(self.box_features(features, proposals, k))
            boxes = predictor.predict_boxes(predictions, proposals)
            scores_per_stage.append(predictor.predict_probs(predictions, proposals))
        scores = average_stage_scores(scores_per_stage)
        return self.box_predictor[-1].inference(boxes, scores, image_sizes)
