"""DensePose R-CNN, chart-based (Detectron2's ``projects/DensePose``, GeneralizedRCNN with
``DENSEPOSE_ON`` and ``DensePoseROIHeads``): Faster R-CNN with FPN plus the DensePose branch of
:mod:`detzoo.heads.densepose_head` on the detections."""

from __future__ import annotations

from torch import nn

from detzoo.config import build
from detzoo.evaluation import DensePoseEvaluator
from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.densepose_head import DensePoseChartHead, DensePoseROIHeads
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.rpn import RPN
from detzoo.heads.semantic_fpn import SemSegFPNHead
from detzoo.models.faster_rcnn import (
    FPN_ROI_LEVELS,
    FasterRCNN,
    default_box_predictor,
    default_rpn,
    require_branch,
    require_fpn,
)


def default_densepose_head(backbone: nn.Module) -> DensePoseChartHead:
    """Detectron2's ``Base-DensePose-RCNN-FPN`` DensePose branch: a decoder (256 channels, stride
    4) over p2-p5, 28x28 legacy ROIAlign pooling (sampling ratio 2) from its output, eight 3x3
    convs of 512, 4x4 transposed convs and 2x upsampling to 112x112 charts (2 coarse channels,
    24 parts), ``FG_IOU_THRESHOLD`` 0.7, loss weights 0.01 (U/V), 1 (I), 5 (S)."""
    shapes = backbone.output_shape()
    levels = list(FPN_ROI_LEVELS)
    decoder = SemSegFPNHead(
        levels,
        shapes[levels[0]].channels,
        [shapes[f].stride for f in levels],
        num_classes=256,
        conv_dims=256,
        norm="",
    )
    pooler = ROIPooler(
        28, [1.0 / shapes[levels[0]].stride], sampling_ratio=2, pooler_type="ROIAlign"
    )
    return DensePoseChartHead(levels, pooler, decoder.num_classes, decoder=decoder)


def default_densepose_roi_heads(
    backbone: nn.Module, num_classes: int, densepose_head: DensePoseChartHead
) -> DensePoseROIHeads:
    """Detectron2's DensePose ROI heads for an FPN backbone: the box branch of
    ``Base-DensePose-RCNN-FPN`` (7x7 legacy ROIAlign pooling with sampling ratio 2 on p2-p5, two
    1024-d FCs) and ``densepose_head``."""
    shapes = backbone.output_shape()
    levels = list(FPN_ROI_LEVELS)
    pooler = ROIPooler(
        7, [1.0 / shapes[f].stride for f in levels], sampling_ratio=2, pooler_type="ROIAlign"
    )
    head = ConvFCHead((shapes[levels[0]].channels, 7, 7), conv_dims=(), fc_dims=(1024, 1024))
    predictor = default_box_predictor(head.output_size, num_classes)
    return DensePoseROIHeads(levels, pooler, head, predictor, densepose_head=densepose_head)


class DensePoseRCNN(FasterRCNN):
    """DensePose R-CNN as a LightningModule. Predictions add ``densepose``: a dict of the chart
    outputs at head resolution over each detection's box, ``coarse_segm`` ``[N, K, S, S]``,
    ``fine_segm``, ``u``, ``v`` ``[N, C, S, S]`` (raw scores / coordinates; K = 2, C = 25,
    S = 112 by default; :func:`detzoo.structures.densepose.densepose_to_box_iuv` turns them into
    box-sized part index and U, V maps). Training targets need ``densepose`` (task
    ``densepose``: :class:`detzoo.data.CocoDensePose`). Validation reports box AP, and DensePose
    AP (GPS, GPSm) when the evaluated dataset has a ``densepose_surface`` (see
    :meth:`build_evaluators`).

    Args:
        backbone: an FPN with ``p2``–``p6`` (Detectron2's DensePose chart recipes are FPN).
        num_classes: foreground classes (DensePose-COCO: 1, ``person``).
        rpn: replaces the default: Detectron2's FPN RPN (:func:`~detzoo.models.faster_rcnn.default_rpn`).
        roi_heads: replaces the default, :func:`default_densepose_roi_heads` with
            :func:`default_densepose_head`; a given one must have a ``densepose_head``.
        score_thresh, nms_thresh, detections_per_image: test-time filtering of the box predictor.
        **kwargs: :class:`~detzoo.models.base.DetectionModel` arguments.

    Detectron2 checkpoints convert with :attr:`DETECTRON2_RENAMES`: Detectron2 keeps the decoder
    (``roi_heads.decoder``) and the predictor (``roi_heads.densepose_predictor``) beside the head;
    detzoo keeps them in the branch (``roi_heads.densepose_head.decoder`` / ``.predictor``).
    """

    DETECTRON2_RENAMES = (
        (r"^roi_heads\.decoder\.", "roi_heads.densepose_head.decoder."),
        (r"^roi_heads\.densepose_predictor\.", "roi_heads.densepose_head.predictor."),
    )

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 1,
        rpn: RPN | None = None,
        roi_heads: nn.Module | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        **kwargs,
    ):
        backbone = build(backbone)
        require_fpn(backbone, "DensePose R-CNN")
        rpn = build(rpn) if rpn is not None else default_rpn(backbone)
        if roi_heads is None:
            roi_heads = default_densepose_roi_heads(
                backbone, num_classes, default_densepose_head(backbone)
            )
        roi_heads = build(roi_heads)
        require_branch(roi_heads, "densepose_head", "DensePoseRCNN")
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

    def build_evaluators(self) -> list:
        """Box AP, plus DensePose AP (:class:`~detzoo.evaluation.DensePoseEvaluator`: GPS and GPSm
        as Detectron2's DensePose evaluator) when the evaluated dataset has a
        ``densepose_surface`` to measure geodesic distances on: ``shapes`` gives its figure's,
        DensePose-COCO Detectron2's SMPL geodesics when
        ``CocoDataModule(densepose_geodesics_dir=...)`` points at them."""
        evaluators = super().build_evaluators()
        surface = self._eval_dataset_attribute("densepose_surface")
        if surface is not None:
            evaluators.append(DensePoseEvaluator(surface))
        return evaluators
