"""Faster R-CNN (Detectron2's GeneralizedRCNN with box-only ROI heads), FPN or C4."""

from __future__ import annotations

from torch import nn

from detzoo.config import build
from detzoo.heads.anchors import AnchorGenerator
from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_branch import ROIBranch
from detzoo.heads.roi_heads import Res5ROIHeads, StandardROIHeads
from detzoo.heads.rpn import RPN, RPNHead
from detzoo.models.rcnn import GeneralizedRCNN

FPN_RPN_LEVELS = ("p2", "p3", "p4", "p5", "p6")
FPN_ROI_LEVELS = ("p2", "p3", "p4", "p5")


def is_fpn(backbone: nn.Module) -> bool:
    """Whether ``backbone`` outputs an FPN pyramid ``p2``–``p6`` (else a single C4 map ``res4``)."""
    return all(level in backbone.output_shape() for level in FPN_RPN_LEVELS)


def require_fpn(backbone: nn.Module, model: str) -> None:
    """Raises a ValueError naming ``model`` unless ``backbone`` outputs ``p2``–``p6``."""
    if not is_fpn(backbone):
        raise ValueError(
            f"{model} needs an FPN backbone with p2-p6 outputs (as in Detectron2); "
            f"{type(backbone).__name__} has {sorted(backbone.output_shape())}: wrap it in "
            f"detzoo.backbones.FPN"
        )


def require_branch(roi_heads: nn.Module, branch: str, model: str) -> nn.Module:
    """``roi_heads.<branch>`` (e.g. ``mask_head``); a ValueError naming ``model`` if it is
    missing."""
    head = getattr(roi_heads, branch, None)
    if head is None:
        raise ValueError(
            f"{model}'s roi_heads need a {branch}; leave roi_heads out for Detectron2's"
        )
    return head


def default_rpn(backbone: nn.Module, post_nms_topk_train: int | None = None) -> RPN:
    """Detectron2's RPN for this backbone: FPN (one anchor size per level p2–p6, top-k 2000/1000
    train, 1000/1000 test) or C4 (five sizes on res4, top-k 12000/2000 train, 6000/1000 test).
    ``post_nms_topk_train`` replaces the training post-NMS top-k (Keypoint R-CNN: 1500)."""
    shapes = backbone.output_shape()
    ratios = [[0.5, 1.0, 2.0]]
    if is_fpn(backbone):
        levels = list(FPN_RPN_LEVELS)
        anchors = AnchorGenerator(
            [[32], [64], [128], [256], [512]], ratios, [shapes[f].stride for f in levels]
        )
        topk = {"pre_nms_topk": (2000, 1000), "post_nms_topk": (1000, 1000)}
    else:
        levels = ["res4"]
        anchors = AnchorGenerator([[32, 64, 128, 256, 512]], ratios, [shapes["res4"].stride])
        topk = {"pre_nms_topk": (12000, 6000), "post_nms_topk": (2000, 1000)}
    if post_nms_topk_train is not None:
        topk["post_nms_topk"] = (post_nms_topk_train, topk["post_nms_topk"][1])
    channels = shapes[levels[0]].channels
    head = RPNHead(channels, anchors.num_anchors_per_cell[0])
    return RPN(levels, head, anchors, **topk)


def default_box_predictor(
    in_features: int, num_classes: int, smooth_l1_beta: float = 0.0
) -> FastRCNNOutputLayers:
    return FastRCNNOutputLayers(in_features, num_classes, smooth_l1_beta=smooth_l1_beta)


def default_roi_heads(
    backbone: nn.Module, num_classes: int, smooth_l1_beta: float = 0.0, **branches: ROIBranch
) -> nn.Module:
    """Detectron2's ROI heads: FPN — 7×7 ROIAlignV2 pooling on p2–p5, two 1024-d FCs; C4 — 14×14
    pooling on res4 and the ``res5`` stage (built by the backbone's ``make_res5_head``).
    ``smooth_l1_beta``: the box regression loss's (Detectron2's ``ROI_BOX_HEAD.SMOOTH_L1_BETA``);
    ``branches``: per-instance heads (``mask_head=...``, ``keypoint_head=...``); the C4 heads take
    a ``mask_head`` only, which reads their res5 features (no pooler of its own)."""
    shapes = backbone.output_shape()
    if is_fpn(backbone):
        levels = list(FPN_ROI_LEVELS)
        pooler = ROIPooler(7, [1.0 / shapes[f].stride for f in levels], sampling_ratio=0)
        head = ConvFCHead((shapes[levels[0]].channels, 7, 7), conv_dims=(), fc_dims=(1024, 1024))
        predictor = default_box_predictor(head.output_size, num_classes, smooth_l1_beta)
        return StandardROIHeads(levels, pooler, head, predictor, **branches)
    if set(branches) - {"mask_head"}:
        raise ValueError(
            f"the C4 ROI heads take no per-instance branch but a mask head "
            f"({sorted(set(branches) - {'mask_head'})}); use an FPN backbone"
        )
    if not hasattr(backbone, "make_res5_head"):
        raise ValueError(
            f"a C4 Faster R-CNN needs a ResNet backbone (it runs res5 in the ROI head); "
            f"{type(backbone).__name__} has no make_res5_head(). Use an FPN backbone instead."
        )
    res5, channels = backbone.make_res5_head()
    pooler = ROIPooler(14, [1.0 / shapes["res4"].stride], sampling_ratio=0)
    return Res5ROIHeads(
        ["res4"],
        pooler,
        res5,
        default_box_predictor(channels, num_classes, smooth_l1_beta),
        **branches,
    )


class FasterRCNN(GeneralizedRCNN):
    """Faster R-CNN as a LightningModule.

    Args:
        backbone: e.g. ``FPN(ResNet(depth=50), ...)`` (FPN model) or ``ResNet(depth=50,
            out_features=["res4"])`` (C4 model), or any detzoo backbone with p2–p6 outputs
            (``FPN(TimmBackbone("convnext_tiny"))``).
        num_classes: number of foreground classes.
        rpn, roi_heads: replace the Detectron2 defaults for this backbone (see
            :func:`default_rpn`, :func:`default_roi_heads`).
        score_thresh, nms_thresh, detections_per_image: test-time filtering of the box predictor.
        **kwargs: :class:`~detzoo.models.base.DetectionModel` arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        rpn: RPN | None = None,
        roi_heads: nn.Module | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        **kwargs,
    ):
        backbone = build(backbone)
        rpn = build(rpn) if rpn is not None else default_rpn(backbone)
        roi_heads = (
            build(roi_heads) if roi_heads is not None else default_roi_heads(backbone, num_classes)
        )
        super().__init__(backbone, rpn, roi_heads, **kwargs)
        self.num_classes = num_classes
        self.set_test_thresholds(
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_image=detections_per_image,
        )

    def test_time_modules(self) -> list[nn.Module]:
        return [self.roi_heads.box_predictor]
