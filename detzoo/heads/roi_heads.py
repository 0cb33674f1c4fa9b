"""ROI heads: label and sample proposals, then run the box branch on pooled features
(Detectron2's ROIHeads / StandardROIHeads / Res5ROIHeads). Mask and keypoint branches extend
:class:`StandardROIHeads`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import box_iou

from detzoo.config import Recordable
from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers
from detzoo.heads.matcher import Matcher
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.sampler import subsample_labels


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


class ROIHeads(Recordable, nn.Module):
    """Proposal labelling and sampling shared by every ROI-head flavour.

    Args:
        num_classes: K foreground classes.
        matcher: proposal-to-ground-truth matcher (IoU 0.5 → ``[0, 1]``, no low-quality matches).
        batch_size_per_image: proposals sampled per image for the losses.
        positive_fraction: the largest share of foreground among them.
        proposal_append_gt: add the ground-truth boxes to the proposals in training.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: Matcher | None = None,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        proposal_append_gt: bool = True,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.proposal_matcher = matcher or Matcher([0.5], [0, 1], allow_low_quality_matches=False)
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_append_gt = proposal_append_gt

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[SampledProposals]:
        """Matches each image's proposal boxes ``[P, 4]`` to its ``targets`` (``boxes``,
        ``labels``) and samples ``batch_size_per_image`` of them."""
        samples = []
        for boxes, target in zip(proposals, targets):
            gt_boxes, gt_labels = target["boxes"], target["labels"]
            if self.proposal_append_gt:
                boxes = torch.cat([boxes, gt_boxes.to(boxes.dtype)])
            matched_idxs, match_labels = self.proposal_matcher(box_iou(gt_boxes, boxes))
            if len(gt_boxes):
                gt_classes = gt_labels[matched_idxs].clone()
                gt_classes[match_labels == 0] = self.num_classes
                gt_classes[match_labels == -1] = -1
            else:
                gt_classes = torch.full_like(matched_idxs, self.num_classes)
            fg, bg = subsample_labels(
                gt_classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
            )
            idx = torch.cat([fg, bg])
            matched_gt = (
                gt_boxes[matched_idxs[idx]] if len(gt_boxes) else boxes.new_zeros((len(idx), 4))
            )
            samples.append(
                SampledProposals(boxes[idx], gt_classes[idx], matched_gt, matched_idxs[idx])
            )
        return samples


class StandardROIHeads(ROIHeads):
    """Box branch on pooled multi-level features (FPN models): pooler → box head → predictor.

    Args:
        box_in_features: feature names for the box pooler, finest first.
        box_pooler, box_head, box_predictor: the box branch.
        **kwargs: :class:`ROIHeads` arguments.
    """

    def __init__(
        self,
        box_in_features: Sequence[str],
        box_pooler: ROIPooler,
        box_head: ConvFCHead,
        box_predictor: FastRCNNOutputLayers,
        **kwargs,
    ):
        super().__init__(num_classes=box_predictor.num_classes, **kwargs)
        self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        proposals: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[Mapping[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Training (``targets`` given): ``([], losses)``. Inference: ``(detections, {})`` with one
        ``{"boxes", "scores", "labels"}`` dict per image, in input pixels."""
        if self.training:
            if targets is None:
                raise ValueError("ROI heads in training mode need targets")
            samples = self.label_and_sample_proposals(proposals, targets)
            return [], self.box_losses(features, samples)
        return self.predict_boxes(features, proposals, image_sizes), {}

    def box_features(
        self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Box-head features ``[R, D]`` for per-image boxes."""
        pooled = self.box_pooler([features[f] for f in self.box_in_features], boxes)
        return self.box_head(pooled)

    def box_losses(
        self, features: Mapping[str, torch.Tensor], samples: Sequence[SampledProposals]
    ) -> dict[str, torch.Tensor]:
        predictions = self.box_predictor(self.box_features(features, [s.boxes for s in samples]))
        return self.box_predictor.losses(
            predictions,
            torch.cat([s.boxes for s in samples]),
            torch.cat([s.gt_classes for s in samples]),
            torch.cat([s.gt_boxes for s in samples]),
        )

    def predict_boxes(
        self,
        features: Mapping[str, torch.Tensor],
        proposals: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        predictions = self.box_predictor(self.box_features(features, proposals))
        boxes = self.box_predictor.predict_boxes(predictions, proposals)
        scores = self.box_predictor.predict_probs(predictions, proposals)
        return self.box_predictor.inference(boxes, scores, image_sizes)


class Res5ROIHeads(StandardROIHeads):
    """C4 models' ROI heads: pool ``res4`` features (14×14), run the backbone's ``res5`` stage on
    them, average-pool over space, predict.

    Args:
        box_in_features: ``["res4"]``.
        box_pooler: a single-level pooler at the res4 scale.
        res5: the res5 stage (``[R, C4, 14, 14]`` → ``[R, C5, 7, 7]``), named ``res5`` as in Detectron2.
        box_predictor: predictor on ``C5`` features.
    """

    def __init__(
        self,
        box_in_features: Sequence[str],
        box_pooler: ROIPooler,
        res5: nn.Module,
        box_predictor: FastRCNNOutputLayers,
        **kwargs,
    ):
        ROIHeads.__init__(self, num_classes=box_predictor.num_classes, **kwargs)
        self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.res5 = res5
        self.box_predictor = box_predictor

    def box_features(
        self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        pooled = self.box_pooler([features[f] for f in self.box_in_features], boxes)
        return self.res5(pooled).mean(dim=(2, 3))
