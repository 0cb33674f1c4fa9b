"""Semantic FPN (Detectron2's ``SemanticSegmentor`` with ``SemSegFPNHead``): per-pixel classes
from an FPN backbone, evaluated by mIoU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from detzoo.config import build
from detzoo.evaluation import SemSegEvaluator
from detzoo.heads.semantic_fpn import SemSegFPNHead, pad_semantic_targets
from detzoo.models.base import DetectionModel
from detzoo.models.faster_rcnn import FPN_ROI_LEVELS
from detzoo.models.postprocess import rescale_semantic
from detzoo.structures.image_list import ImageList


def default_sem_seg_head(
    backbone: nn.Module, num_classes: int, loss_weight: float = 1.0
) -> SemSegFPNHead:
    """Detectron2's semantic FPN head for this backbone: p2–p5 towers of 128 channels with GN,
    merged at stride 4."""
    shapes = backbone.output_shape()
    missing = [f for f in FPN_ROI_LEVELS if f not in shapes]
    if missing:
        raise ValueError(
            f"the semantic FPN head reads {list(FPN_ROI_LEVELS)}; {type(backbone).__name__} has "
            f"{sorted(shapes)}. Wrap the backbone in detzoo.backbones.FPN"
        )
    return SemSegFPNHead(
        FPN_ROI_LEVELS,
        shapes[FPN_ROI_LEVELS[0]].channels,
        [shapes[f].stride for f in FPN_ROI_LEVELS],
        num_classes,
        loss_weight=loss_weight,
    )


def semantic_logits(
    head: SemSegFPNHead, features: Mapping[str, torch.Tensor], images: ImageList
) -> list[torch.Tensor]:
    """Per image, the head's logits ``[C, h_i, w_i]`` cropped to the unpadded input size."""
    logits = head(features)
    return [x[:, :h, :w] for x, (h, w) in zip(logits, images.image_sizes)]


def semantic_losses(
    head: SemSegFPNHead,
    features: Mapping[str, torch.Tensor],
    images: ImageList,
    targets: Sequence[Mapping[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """The head's ``loss_sem_seg`` against the targets' ``sem_seg`` (padded like the images)."""
    gt = pad_semantic_targets(
        targets, images.image_sizes, tuple(images.tensor.shape[-2:]), head.ignore_value
    )
    return head.losses(head(features), gt.to(images.tensor.device))


class SemanticFPN(DetectionModel):
    """Semantic segmentation as a LightningModule. Predictions: ``sem_seg`` float ``[C, H, W]``
    per-class logits at the output size (argmax for labels). Validation reports mIoU, fwIoU,
    mACC and pACC (:class:`~detzoo.evaluation.SemSegEvaluator`). Training targets need
    ``sem_seg`` int64 ``[H, W]`` (255 = ignore), e.g. from :class:`detzoo.data.CocoPanoptic`
    (things merged into class 0).

    Args:
        backbone: an FPN backbone with p2–p5 (``FPN(ResNet(depth=50), ...)``).
        num_classes: semantic classes ``C``.
        sem_seg_head: replaces :func:`default_sem_seg_head`.
        loss_weight: the default head's loss weight.
        **kwargs: :class:`~detzoo.models.base.DetectionModel` arguments.
    """

    eval_iou_types: tuple[str, ...] = ()

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        sem_seg_head: SemSegFPNHead | None = None,
        loss_weight: float = 1.0,
        **kwargs,
    ):
        backbone = build(backbone)
        head = (
            build(sem_seg_head)
            if sem_seg_head is not None
            else default_sem_seg_head(backbone, num_classes, loss_weight)
        )
        if head.num_classes != num_classes:
            raise ValueError(
                f"num_classes is {num_classes} but the semantic head predicts {head.num_classes}"
            )
        super().__init__(**kwargs)
        self.backbone = backbone
        self.sem_seg_head = head
        self.num_classes = num_classes

    def compute_losses(
        self, images: ImageList, targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        return semantic_losses(self.sem_seg_head, self.backbone(images.tensor), images, targets)

    def detect(self, images: ImageList) -> list[dict[str, torch.Tensor]]:
        logits = semantic_logits(self.sem_seg_head, self.backbone(images.tensor), images)
        return [{"sem_seg": x} for x in logits]

    def postprocess(
        self, detection: dict, input_size: tuple[int, int], output_size: tuple[int, int]
    ) -> dict:
        return {"sem_seg": rescale_semantic(detection["sem_seg"], output_size)}

    def build_evaluators(self) -> list:
        """mIoU and friends over the model's classes, named by the dataset's
        ``sem_seg_class_names`` when it has them."""
        names = self._eval_dataset_attribute("sem_seg_class_names")
        if names is not None and len(names) != self.num_classes:
            names = None
        return [SemSegEvaluator(self.num_classes, class_names=names)]
