"""ROI heads: label and sample proposals, then run the box branch on pooled features
(Detectron2's ROIHeads / StandardROIHeads / Res5ROIHeads), and the optional per-instance branches
(mask, keypoints: :class:`~detzoo.heads.roi_branch.ROIBranch`) on the foreground proposals in
training and on the detections at inference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from detzoo.config import Recordable
from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers
from detzoo.heads.matcher import Matcher
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_branch import ROIBranch, foreground_masks
from detzoo.heads.roi_sampling import SampledProposals, label_proposals
from detzoo.heads.sampler import subsample_labels


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
            gt_boxes = target["boxes"]
            if self.proposal_append_gt:
                boxes = torch.cat([boxes, gt_boxes.to(boxes.dtype)])
            labelled = label_proposals(
                boxes, gt_boxes, target["labels"], self.proposal_matcher, self.num_classes
            )
            fg, bg = subsample_labels(
                labelled.gt_classes,
                self.batch_size_per_image,
                self.positive_fraction,
                self.num_classes,
            )
            samples.append(labelled.select(torch.cat([fg, bg])))
        return samples


class StandardROIHeads(ROIHeads):
    """Box branch on pooled multi-level features (FPN models): pooler → box head → predictor; then
    the per-instance branches named in :attr:`branch_names` that are present.

    Args:
        box_in_features: feature names for the box pooler, finest first.
        box_pooler, box_head, box_predictor: the box branch.
        mask_head: optional mask branch (Mask R-CNN).
        keypoint_head: optional keypoint branch (Keypoint R-CNN).
        **kwargs: :class:`ROIHeads` arguments.
    """

    #: attributes holding optional :class:`ROIBranch` es, run in this order; a subclass adding a
    #: branch (e.g. DensePose) extends the tuple.
    branch_names: tuple[str, ...] = ("mask_head", "keypoint_head")

    def __init__(
        self,
        box_in_features: Sequence[str],
        box_pooler: ROIPooler,
        box_head: ConvFCHead,
        box_predictor: FastRCNNOutputLayers,
        mask_head: ROIBranch | None = None,
        keypoint_head: ROIBranch | None = None,
        **kwargs,
    ):
        super().__init__(num_classes=box_predictor.num_classes, **kwargs)
        self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_head = mask_head
        self.keypoint_head = keypoint_head

    def branches(self) -> list[ROIBranch]:
        """The per-instance branches this model has, in :attr:`branch_names` order."""
        return [b for b in (getattr(self, n, None) for n in self.branch_names) if b is not None]

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        proposals: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[Mapping[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Training (``targets`` given): ``([], losses)``. Inference: ``(detections, {})`` with one
        ``{"boxes", "scores", "labels"}`` dict per image, in input pixels, plus each branch's
        fields."""
        if self.training:
            if targets is None:
                raise ValueError("ROI heads in training mode need targets")
            samples = self.label_and_sample_proposals(proposals, targets)
            losses = self.box_losses(features, samples, image_sizes, targets)
            for branch in self.branches():
                losses.update(branch.forward_train(features, samples, targets, self.num_classes))
            return [], losses
        detections = self.predict_boxes(features, proposals, image_sizes)
        for branch in self.branches():
            branch.forward_predict(features, detections)
        return detections, {}

    def box_features(
        self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Box-head features ``[R, D]`` for per-image boxes."""
        pooled = self.box_pooler([features[f] for f in self.box_in_features], boxes)
        return self.box_head(pooled)

    def box_losses(
        self,
        features: Mapping[str, torch.Tensor],
        samples: Sequence[SampledProposals],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[Mapping[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Box-branch loss terms on the sampled proposals. ``image_sizes`` ``(H, W)`` and
        ``targets`` serve heads that relabel their own boxes (cascade stages); unused here."""
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
    them, average-pool over space, predict. An optional mask head reads the same res5 features
    ``[R, C5, 7, 7]`` (Detectron2's ``_shared_roi_transform``): in training those of the
    foreground samples, computed once for both branches; at inference those of the detections.

    Args:
        box_in_features: ``["res4"]``.
        box_pooler: a single-level pooler at the res4 scale.
        res5: the res5 stage (``[R, C4, 14, 14]`` → ``[R, C5, 7, 7]``), named ``res5`` as in Detectron2.
        box_predictor: predictor on ``C5`` features.
        mask_head: optional mask branch on the res5 features, without a pooler (Mask R-CNN C4).
        **kwargs: :class:`ROIHeads` arguments.
    """

    branch_names = ("mask_head",)

    def __init__(
        self,
        box_in_features: Sequence[str],
        box_pooler: ROIPooler,
        res5: nn.Module,
        box_predictor: FastRCNNOutputLayers,
        mask_head: ROIBranch | None = None,
        **kwargs,
    ):
        ROIHeads.__init__(self, num_classes=box_predictor.num_classes, **kwargs)
        self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.res5 = res5
        self.box_predictor = box_predictor
        self.mask_head = mask_head

    def shared_roi_transform(
        self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """res5 features ``[R, C5, 7, 7]`` of per-image boxes (pooled from res4)."""
        return self.res5(self.box_pooler([features[f] for f in self.box_in_features], boxes))

    def box_features(
        self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        return self.shared_roi_transform(features, boxes).mean(dim=(2, 3))

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        proposals: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[Mapping[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """As :meth:`StandardROIHeads.forward`, the mask head sharing the box branch's res5."""
        if not self.training:
            detections = self.predict_boxes(features, proposals, image_sizes)
            if self.mask_head is not None:
                shared = self.shared_roi_transform(features, [d["boxes"] for d in detections])
                self.mask_head.predict_on(shared, detections)
            return detections, {}
        if targets is None:
            raise ValueError("ROI heads in training mode need targets")
        samples = self.label_and_sample_proposals(proposals, targets)
        shared = self.shared_roi_transform(features, [s.boxes for s in samples])
        losses = self.box_predictor.losses(
            self.box_predictor(shared.mean(dim=(2, 3))),
            torch.cat([s.boxes for s in samples]),
            torch.cat([s.gt_classes for s in samples]),
            torch.cat([s.gt_boxes for s in samples]),
        )
        if self.mask_head is not None:
            fg = foreground_masks(samples, self.num_classes)
            instances = [s.select(m) for s, m in zip(samples, fg)]
            losses.update(self.mask_head.train_on(shared[torch.cat(fg)], instances, targets))
        return [], losses
