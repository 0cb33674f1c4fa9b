"""Cascade R-CNN and Cascade Mask R-CNN (Detectron2's GeneralizedRCNN with CascadeROIHeads), FPN."""

from __future__ import annotations

from torch import nn

from detzoo.config import build
from detzoo.heads.box_coder import BoxCoder
from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.cascade import CASCADE_BOX_WEIGHTS, CASCADE_IOUS, CascadeROIHeads
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers
from detzoo.heads.matcher import Matcher
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_branch import ROIBranch
from detzoo.heads.rpn import RPN
from detzoo.models.faster_rcnn import FPN_ROI_LEVELS, default_rpn, require_fpn
from detzoo.models.mask_rcnn import default_mask_head
from detzoo.models.rcnn import GeneralizedRCNN


def default_cascade_roi_heads(
    backbone: nn.Module,
    num_classes: int,
    mask_head: ROIBranch | None = None,
    fc_dim: int = 1024,
) -> CascadeROIHeads:
    """Detectron2's cascade ROI heads for an FPN backbone (``Misc/cascade_mask_rcnn_R_50_FPN``):
    7×7 ROIAlignV2 pooling on p2–p5 shared by three stages, each with two ``fc_dim``-d FCs
    (Detectron2's ``ROI_BOX_HEAD.FC_DIM``, 1024) and a class-agnostic predictor; stage IoUs
    :data:`CASCADE_IOUS`, box-coder weights :data:`CASCADE_BOX_WEIGHTS`; ``mask_head`` runs on
    the final detections."""
    require_fpn(backbone, "Cascade R-CNN")
    shapes = backbone.output_shape()
    levels = list(FPN_ROI_LEVELS)
    pooler = ROIPooler(7, [1.0 / shapes[f].stride for f in levels], sampling_ratio=0)
    heads, predictors, matchers = [], [], []
    for iou, weights in zip(CASCADE_IOUS, CASCADE_BOX_WEIGHTS):
        head = ConvFCHead(
            (shapes[levels[0]].channels, 7, 7), conv_dims=(), fc_dims=(fc_dim, fc_dim)
        )
        heads.append(head)
        predictors.append(
            FastRCNNOutputLayers(
                head.output_size,
                num_classes,
                box_coder=BoxCoder(weights),
                cls_agnostic_bbox_reg=True,
            )
        )
        matchers.append(Matcher([iou], [0, 1], allow_low_quality_matches=False))
    return CascadeROIHeads(levels, pooler, heads, predictors, matchers, mask_head=mask_head)


class CascadeRCNN(GeneralizedRCNN):
    """Cascade R-CNN as a LightningModule; with ``mask_on``, Cascade Mask R-CNN.

    Args:
        backbone: an FPN backbone with p2–p6 outputs, e.g. ``FPN(ResNet(depth=50), ...)``.
        num_classes: number of foreground classes.
        mask_on: add Detectron2's default mask head (4 convs, deconv, 28×28 class-specific masks)
            to the default ROI heads; evaluation then adds mask AP.
        rpn, roi_heads: replace the Detectron2 defaults: the FPN RPN
            (:func:`~detzoo.models.faster_rcnn.default_rpn`) keeping 2000 proposals per image in
            training, as Detectron2's cascade configs do, and :func:`default_cascade_roi_heads`; a
            given ``roi_heads`` brings its own mask head (or none).
        score_thresh, nms_thresh, detections_per_image: test-time filtering of the detections.
        **kwargs: :class:`~detzoo.models.base.DetectionModel` arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        mask_on: bool = False,
        rpn: RPN | None = None,
        roi_heads: CascadeROIHeads | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        **kwargs,
    ):
        backbone = build(backbone)
        if roi_heads is not None:
            roi_heads = build(roi_heads)
            if mask_on and roi_heads.mask_head is None:
                raise ValueError(
                    "mask_on=True but the given roi_heads has no mask_head; give it one, or leave "
                    "roi_heads out to get the default cascade heads with a mask head"
                )
        else:
            mask_head = default_mask_head(backbone, num_classes) if mask_on else None
            roi_heads = default_cascade_roi_heads(backbone, num_classes, mask_head)
        rpn = build(rpn) if rpn is not None else default_rpn(backbone, post_nms_topk_train=2000)
        super().__init__(backbone, rpn, roi_heads, **kwargs)
        self.num_classes = num_classes
        if roi_heads.mask_head is not None:
            self.eval_iou_types = ("bbox", "segm")
        self.set_test_thresholds(
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_image=detections_per_image,
        )

    def test_time_modules(self) -> list[nn.Module]:
        return list(self.roi_heads.box_predictor)
