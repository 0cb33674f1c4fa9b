"""Two-stage detectors: backbone → RPN proposals → ROI heads (Detectron2's GeneralizedRCNN)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from detzoo.config import build
from detzoo.heads.rpn import RPN
from detzoo.models.base import DetectionModel
from detzoo.structures.image_list import ImageList


class GeneralizedRCNN(DetectionModel):
    """Backbone, proposal generator and ROI heads; what Faster/Mask/Keypoint/Cascade R-CNN share.

    Args:
        backbone: a detzoo backbone (``forward`` → feature dict, ``output_shape()``).
        proposal_generator: the RPN.
        roi_heads: ROI heads with ``forward(features, proposals, image_sizes, targets)``.
        **kwargs: :class:`DetectionModel` arguments (normalisation, input format, solver).
    """

    def __init__(
        self,
        backbone: nn.Module,
        proposal_generator: RPN,
        roi_heads: nn.Module,
        **kwargs,
    ):
        backbone = build(backbone)
        super().__init__(**kwargs)
        self.backbone = backbone
        self.proposal_generator = build(proposal_generator)
        self.roi_heads = build(roi_heads)

    def compute_losses(
        self, images: ImageList, targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        proposal_losses, head_losses = self.instance_losses(
            self.backbone(images.tensor), images, targets
        )
        return {**proposal_losses, **head_losses}

    def detect(self, images: ImageList) -> list[dict[str, torch.Tensor]]:
        return self.detect_instances(self.backbone(images.tensor), images)

    def instance_losses(
        self,
        features: Mapping[str, torch.Tensor],
        images: ImageList,
        targets: Sequence[Mapping[str, torch.Tensor]],
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The RPN's and the ROI heads' loss terms on the backbone's ``features``."""
        proposals, proposal_losses = self.proposal_generator(
            features, images.image_sizes, [t["boxes"] for t in targets]
        )
        _, head_losses = self.roi_heads(
            features, [p["boxes"] for p in proposals], images.image_sizes, targets
        )
        return proposal_losses, head_losses

    def detect_instances(
        self, features: Mapping[str, torch.Tensor], images: ImageList
    ) -> list[dict[str, torch.Tensor]]:
        """Detections per image from the backbone's ``features``, in input pixels."""
        proposals, _ = self.proposal_generator(features, images.image_sizes)
        detections, _ = self.roi_heads(
            features, [p["boxes"] for p in proposals], images.image_sizes
        )
        return detections

    def proposals(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """RPN proposals (``boxes``, ``objectness_logits``) for RGB images, in input pixels."""
        batch = self.preprocess(images)
        proposals, _ = self.proposal_generator(self.backbone(batch.tensor), batch.image_sizes)
        return proposals
