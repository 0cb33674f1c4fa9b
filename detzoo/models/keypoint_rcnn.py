"""Keypoint R-CNN (Detectron2's GeneralizedRCNN with ``KEYPOINT_ON``): Faster R-CNN with FPN plus a
keypoint heatmap branch on the detections."""

from __future__ import annotations

from torch import nn

from detzoo.config import build
from detzoo.heads.keypoint_head import KRCNNConvDeconvUpsampleHead, sampled_keypoints_normalizer
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.rpn import RPN
from detzoo.models.faster_rcnn import (
    FPN_ROI_LEVELS,
    FasterRCNN,
    default_roi_heads,
    default_rpn,
    require_branch,
    require_fpn,
)


def default_keypoint_head(backbone: nn.Module, num_keypoints: int) -> KRCNNConvDeconvUpsampleHead:
    """Detectron2's keypoint head: 14×14 ROIAlignV2 pooling (sampling ratio 0) on p2–p5, eight
    3×3 convs of 512 channels, 56×56 heatmaps, loss normalised by visible keypoints."""
    shapes = backbone.output_shape()
    levels = list(FPN_ROI_LEVELS)
    pooler = ROIPooler(14, [1.0 / shapes[f].stride for f in levels], sampling_ratio=0)
    return KRCNNConvDeconvUpsampleHead(levels, pooler, shapes[levels[0]].channels, num_keypoints)


class KeypointRCNN(FasterRCNN):
    """Keypoint R-CNN as a LightningModule; predictions add ``keypoints`` float ``[N, K, 3]``
    (x, y, score) in output pixels. Validation reports box AP and keypoint AP (OKS, with the
    evaluated dataset's ``keypoint_oks_sigmas`` when it has them, else COCO's person sigmas).

    Args:
        backbone: an FPN with ``p2``–``p6`` (Detectron2 has no C4 keypoint model).
        num_keypoints: K keypoints per instance (COCO person: 17).
        num_classes: foreground classes (Detectron2's keypoint recipes: 1, ``person``).
        rpn: replaces the default: Detectron2's FPN RPN with 1500 post-NMS proposals per image in
            training (``Base-Keypoint-RCNN-FPN``).
        roi_heads: replaces the default: Detectron2's FPN box branch with smooth-L1 beta 0.5
            (``ROI_BOX_HEAD.SMOOTH_L1_BETA``) and :func:`default_keypoint_head`.
        normalize_loss_by_visible_keypoints: Detectron2's ``ROI_KEYPOINT_HEAD.
            NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS``. ``False`` sets the keypoint head's
            ``loss_normalizer`` to :func:`sampled_keypoints_normalizer` of the ROI heads'
            ``batch_size_per_image`` and ``positive_fraction``, as Detectron2's config does.
        score_thresh, nms_thresh, detections_per_image: test-time filtering of the box predictor.
        **kwargs: :class:`~detzoo.models.base.DetectionModel` arguments.
    """

    eval_iou_types = ("bbox", "keypoints")

    def __init__(
        self,
        backbone: nn.Module,
        num_keypoints: int = 17,
        num_classes: int = 1,
        rpn: RPN | None = None,
        roi_heads: nn.Module | None = None,
        normalize_loss_by_visible_keypoints: bool = True,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        **kwargs,
    ):
        backbone = build(backbone)
        require_fpn(backbone, "Keypoint R-CNN")
        rpn = build(rpn) if rpn is not None else default_rpn(backbone, post_nms_topk_train=1500)
        if roi_heads is None:
            roi_heads = default_roi_heads(
                backbone,
                num_classes,
                smooth_l1_beta=0.5,
                keypoint_head=default_keypoint_head(backbone, num_keypoints),
            )
        roi_heads = build(roi_heads)
        keypoint_head = require_branch(roi_heads, "keypoint_head", "KeypointRCNN")
        if keypoint_head.num_keypoints != num_keypoints:
            raise ValueError(
                f"num_keypoints is {num_keypoints} but the keypoint head predicts "
                f"{keypoint_head.num_keypoints}"
            )
        if not normalize_loss_by_visible_keypoints:
            keypoint_head.loss_normalizer = sampled_keypoints_normalizer(
                num_keypoints, roi_heads.batch_size_per_image, roi_heads.positive_fraction
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
        self.num_keypoints = num_keypoints
