"""Per-instance ROI branches: the mask, keypoint and DensePose heads that run on foreground
proposals in training and on the final detections at inference (the plumbing Detectron2's
StandardROIHeads repeats for each of ``_forward_mask`` / ``_forward_keypoint``).

A branch owns its pooler and its layers, so its weights sit under one name in the ROI heads
(``roi_heads.mask_head.*``, ``roi_heads.keypoint_head.*``, as in Detectron2; poolers have no
weights). A subclass implements :meth:`ROIBranch.layers`, :meth:`ROIBranch.losses` and
:meth:`ROIBranch.predict`; selecting instances, pooling and empty-batch handling live here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from detzoo.config import Recordable
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_sampling import SampledProposals


def foreground_masks(samples: Sequence[SampledProposals], num_classes: int) -> list[torch.Tensor]:
    """Per image, bool ``[R_i]``: which sampled proposals are foreground (``gt_classes`` in
    ``[0, K)``)."""
    return [(s.gt_classes >= 0) & (s.gt_classes < num_classes) for s in samples]


def select_foreground(
    samples: Sequence[SampledProposals], num_classes: int
) -> list[SampledProposals]:
    """Each image's sampled proposals restricted to foreground, as Detectron2's
    ``select_foreground_proposals``."""
    return [s.select(fg) for s, fg in zip(samples, foreground_masks(samples, num_classes))]


class ROIBranch(Recordable, nn.Module):
    """Base of the per-instance heads.

    Args:
        in_features: feature names the pooler reads, finest first (``["p2", "p3", "p4", "p5"]``).
        pooler: pools ``[R, C, S, S]`` features for boxes in input pixels; ``None`` for a branch
            whose ROI heads hand it per-ROI features they computed themselves (C4 models' mask
            head reads the res5 features of the box branch: :meth:`train_on`, :meth:`predict_on`).
    """

    def __init__(self, in_features: Sequence[str], pooler: ROIPooler | None):
        super().__init__()
        self.in_features = list(in_features)
        self.pooler = pooler

    # ---- what a branch defines ---------------------------------------------------------------
    def layers(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[R, C, S, S]`` → the branch's raw outputs ``[R, ...]``."""
        raise NotImplementedError

    def losses(
        self,
        outputs: torch.Tensor,
        instances: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Loss terms from ``outputs`` (``[R, ...]``, ``R`` = all images' ``instances`` in order)
        and the images' ``targets``. ``R`` may be 0: the loss must then be ``0 * outputs.sum()``
        so that every parameter still receives a (zero) gradient under DDP."""
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor, detections: Sequence[dict[str, torch.Tensor]]) -> None:
        """Adds the branch's fields to each image's detections (in place), from ``outputs``
        (``[D, ...]``, ``D`` = all images' detections in order)."""
        raise NotImplementedError

    # ---- shared plumbing ---------------------------------------------------------------------
    def select_instances(
        self,
        samples: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
        num_classes: int,
    ) -> list[SampledProposals]:
        """The training instances of each image: the foreground proposals (override to filter
        further, e.g. keypoint heads keep proposals with a visible keypoint inside)."""
        return select_foreground(samples, num_classes)

    def pool(
        self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Pooled features ``[R, C, S, S]`` for per-image boxes ``[R_i, 4]``."""
        if self.pooler is None:
            raise RuntimeError(
                f"{type(self).__name__} has no pooler: its ROI heads must pass it per-ROI features "
                f"(train_on / predict_on), as C4 ROI heads do"
            )
        return self.pooler([features[f] for f in self.in_features], boxes)

    def forward_train(
        self,
        features: Mapping[str, torch.Tensor],
        samples: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
        num_classes: int,
    ) -> dict[str, torch.Tensor]:
        """Loss terms on the training instances chosen from the ROI heads' ``samples``."""
        instances = self.select_instances(samples, targets, num_classes)
        return self.train_on(self.pool(features, [s.boxes for s in instances]), instances, targets)

    def forward_predict(
        self, features: Mapping[str, torch.Tensor], detections: Sequence[dict[str, torch.Tensor]]
    ) -> None:
        """Runs on the final detections' boxes and adds the branch's fields to them."""
        self.predict_on(self.pool(features, [d["boxes"] for d in detections]), detections)

    def train_on(
        self,
        pooled: torch.Tensor,
        instances: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Loss terms from per-ROI features ``[R, C, S, S]`` of ``instances`` (all images', in
        order)."""
        return self.losses(self.layers(pooled), instances, targets)

    def predict_on(
        self, pooled: torch.Tensor, detections: Sequence[dict[str, torch.Tensor]]
    ) -> None:
        """Adds the branch's fields to ``detections`` from their per-ROI features ``[D, C, S, S]``."""
        self.predict(self.layers(pooled), detections)
