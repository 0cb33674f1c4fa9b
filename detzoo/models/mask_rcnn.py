"""Mask R-CNN (Detectron2's GeneralizedRCNN with ``MASK_ON``): Faster R-CNN plus a mask branch on
the detections, FPN or C4."""

from __future__ import annotations

from torch import nn

from detzoo.config import build
from detzoo.heads.mask_head import MaskRCNNConvUpsampleHead
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.rpn import RPN
from detzoo.models.faster_rcnn import (
    FPN_ROI_LEVELS,
    FasterRCNN,
    default_roi_heads,
    is_fpn,
    require_branch,
)


def default_mask_head(
    backbone: nn.Module, num_classes: int, cls_agnostic_mask: bool = False
) -> MaskRCNNConvUpsampleHead:
    """Detectron2's mask head for this backbone.

    FPN (``Base-RCNN-FPN``): 14×14 ROIAlignV2 pooling (sampling ratio 0) on p2–p5, four 3×3 convs
    of 256 channels, deconvolution to 28×28 masks. C4 (``Base-RCNN-C4``): no pooler, it reads the
    ROI heads' res5 features (7×7, twice res4's channels, as every ResNet stage doubles them) and
    has the deconvolution only (14×14 masks).
    """
    shapes = backbone.output_shape()
    if is_fpn(backbone):
        levels = list(FPN_ROI_LEVELS)
        pooler = ROIPooler(14, [1.0 / shapes[f].stride for f in levels], sampling_ratio=0)
        return MaskRCNNConvUpsampleHead(
            levels,
            pooler,
            shapes[levels[0]].channels,
            num_classes,
            num_conv=4,
            cls_agnostic_mask=cls_agnostic_mask,
        )
    if "res4" not in shapes:
        raise ValueError(
            f"Mask R-CNN needs an FPN backbone (p2-p6) or a C4 ResNet (res4); "
            f"{type(backbone).__name__} has {sorted(shapes)}"
        )
    return MaskRCNNConvUpsampleHead(
        [],
        None,
        2 * shapes["res4"].channels,
        num_classes,
        num_conv=0,
        cls_agnostic_mask=cls_agnostic_mask,
    )


class MaskRCNN(FasterRCNN):
    """Mask R-CNN as a LightningModule; predictions add ``masks`` bool ``[N, H, W]`` at the output
    size (mask probabilities pasted into each box, threshold 0.5). Validation reports box and mask
    AP. Training targets need ``masks`` (or ``polygons``, see :mod:`detzoo.heads.mask_head`).

    Args:
        backbone: ``FPN(ResNet(depth=50), ...)`` (FPN model), ``ResNet(depth=50,
            out_features=["res4"])`` (C4 model), or any detzoo backbone with p2–p6 outputs.
        num_classes: number of foreground classes.
        rpn: replaces the Detectron2 default for this backbone (see
            :func:`~detzoo.models.faster_rcnn.default_rpn`).
        roi_heads: replaces the default: Detectron2's box branch for this backbone
            (:func:`~detzoo.models.faster_rcnn.default_roi_heads`) with :func:`default_mask_head`;
            a given one must have a ``mask_head``.
        cls_agnostic_mask: the default mask head predicts one mask for all classes (Detectron2's
            ``ROI_MASK_HEAD.CLS_AGNOSTIC_MASK``).
        score_thresh, nms_thresh, detections_per_image: test-time filtering of the box predictor.
        **kwargs: :class:`~detzoo.models.base.DetectionModel` arguments.
    """

    eval_iou_types = ("bbox", "segm")

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        rpn: RPN | None = None,
        roi_heads: nn.Module | None = None,
        cls_agnostic_mask: bool = False,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        **kwargs,
    ):
        backbone = build(backbone)
        if roi_heads is None:
            mask_head = default_mask_head(backbone, num_classes, cls_agnostic_mask)
            roi_heads = default_roi_heads(backbone, num_classes, mask_head=mask_head)
        roi_heads = build(roi_heads)
        mask_head = require_branch(roi_heads, "mask_head", "MaskRCNN")
        predicted = getattr(mask_head, "num_classes", num_classes)
        if not getattr(mask_head, "cls_agnostic_mask", False) and predicted != num_classes:
            raise ValueError(
                f"num_classes is {num_classes} but the mask head predicts {predicted} classes"
            )
        super().__init__(
            backbone,
            num_classes,
            rpn=rpn,
            roi_heads=roi_heads,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_image=detections_per_image,
            **kwargs,
        )
