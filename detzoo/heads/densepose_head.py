"""DensePose R-CNN's chart-based branch (Detectron2's ``projects/DensePose``: ``Decoder``,
``DensePoseV1ConvXHead``, ``DensePoseChartPredictor`` and ``DensePoseROIHeads``; the training
targets and losses are in :mod:`detzoo.heads.densepose_losses`).

The branch predicts, for every ROI, an ``S x S`` chart over the box (S = 112 in Detectron2's
recipes): ``coarse_segm`` (K = 2 channels, background / person), ``fine_segm`` (C = 25: background
and the 24 body-surface parts), and ``u``, ``v`` (C = 25: the surface coordinates on each part).
Detectron2's FPN recipes first merge p2-p5 into one stride-4 map with a small semantic-FPN
decoder (:class:`~detzoo.heads.semantic_fpn.SemSegFPNHead`'s layers: Detectron2's DensePose
``Decoder`` is Panoptic FPN's semantic head) and pool 28x28 ROIAlign (legacy, sampling ratio 2) features from it;
eight 3x3 convs of 512 then feed four stride-2 transposed convs, upsampled 2x bilinearly.

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.densepose_losses import (
    densepose_chart_losses,
    pack_densepose_annotations,
    select_proposals_with_densepose,
)
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_branch import ROIBranch, select_foreground
from detzoo.heads.roi_heads import StandardROIHeads
from detzoo.heads.roi_sampling import SampledProposals
from detzoo.heads.semantic_fpn import SemSegFPNHead
from detzoo.layers import Conv2d, c2_msra_fill
from detzoo.structures.densepose import NUM_FINE_PARTS

#: output keys of the chart predictor, in channel order
CHART_KEYS = ("coarse_segm", "fine_segm", "u", "v")


class DensePoseChartPredictor(nn.Module):
    """Detectron2's ``DensePoseChartPredictor``: four transposed convs (kernel ``deconv_kernel``,
    stride 2) ``ann_index_lowres`` (coarse segmentation), ``index_uv_lowres`` (fine segmentation),
    ``u_lowres`` and ``v_lowres``, then bilinear upsampling by ``up_scale``. Kaiming-normal
    (fan-out, ReLU) weights, zero biases.

    ``forward(x)``: ``[R, D, P, P]`` → ``[R, K + 3C, S, S]`` with ``S = 2 * up_scale * P``: the
    four outputs stacked along channels in :data:`CHART_KEYS` order (:meth:`split` names them).
    """

    def __init__(
        self,
        in_channels: int,
        num_coarse_segm_channels: int = 2,
        num_patches: int = NUM_FINE_PARTS,
        deconv_kernel: int = 4,
        up_scale: int = 2,
    ):
        super().__init__()
        self.channels = (num_coarse_segm_channels, *(num_patches + 1,) * 3)
        padding = int(deconv_kernel / 2 - 1)
        for name, out_channels in zip(
            ("ann_index_lowres", "index_uv_lowres", "u_lowres", "v_lowres"), self.channels
        ):
            deconv = nn.ConvTranspose2d(
                in_channels, out_channels, deconv_kernel, stride=2, padding=padding
            )
            c2_msra_fill(deconv)
            self.add_module(name, deconv)
        self.up_scale = up_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # stacked before upsampling (per-channel, so equal to upsampling each): one large tensor
        lowres = torch.cat(
            [
                self.ann_index_lowres(x),
                self.index_uv_lowres(x),
                self.u_lowres(x),
                self.v_lowres(x),
            ],
            dim=1,
        )
        return F.interpolate(
            lowres, scale_factor=self.up_scale, mode="bilinear", align_corners=False
        )

    def split(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[R, K + 3C, S, S]`` → ``{"coarse_segm": [R, K, S, S], "fine_segm", "u", "v":
        [R, C, S, S]}`` (views)."""
        return dict(zip(CHART_KEYS, outputs.split(self.channels, dim=1)))


class DensePoseChartHead(ROIBranch):
    """The DensePose branch: optional decoder over the pooler's levels, pooler,
    ``body_conv_fcn1..N`` (``kernel_size`` convs with ReLU, Detectron2's ``DensePoseV1ConvXHead``)
    and the :class:`DensePoseChartPredictor` ``predictor``: pooled ``[R, C_in, P, P]`` → chart
    outputs ``[R, K + 3C, S, S]`` (``S = 2 * up_scale * P``).

    Args:
        in_features: feature names read (``["p2", "p3", "p4", "p5"]``).
        pooler: the pooler; a single level (the decoder's output) when ``decoder`` is given.
        in_channels: channels of the pooled features (the decoder's ``num_classes`` with one).
        decoder: merges ``in_features`` into one map before pooling (``DECODER_ON``): the
            ``layers`` of a :class:`~detzoo.heads.semantic_fpn.SemSegFPNHead` (Detectron2's
            ``Decoder``: ``DECODER_CONV_DIMS``, ``DECODER_NUM_CLASSES``, ``DECODER_NORM``).
        num_stacked_convs, conv_dims, kernel_size: the conv stack (``NUM_STACKED_CONVS``,
            ``CONV_HEAD_DIM``, ``CONV_HEAD_KERNEL``).
        num_coarse_segm_channels: K (``NUM_COARSE_SEGM_CHANNELS``): 2 (person / background) or 15.
        num_patches: body parts (``NUM_FINE_PARTS``); C = ``num_patches + 1``.
        deconv_kernel, up_scale: the predictor's (``DECONV_KERNEL``, ``UP_SCALE``).
        fg_iou_threshold: training ROIs need a larger IoU with their ground truth
            (``FG_IOU_THRESHOLD``).
        point_regression_weight, part_weight, index_weight: loss weights (see
            :func:`~detzoo.heads.densepose_losses.densepose_chart_losses`).

    Kaiming-normal (fan-out, ReLU) weights and zero biases, as Detectron2. Predictions get
    ``densepose``: ``{"coarse_segm": [D, K, S, S], "fine_segm", "u", "v": [D, C, S, S]}`` raw
    scores and coordinates over each detection's box (:mod:`detzoo.structures.densepose` maps
    them into the box).
    """

    def __init__(
        self,
        in_features: Sequence[str],
        pooler: ROIPooler,
        in_channels: int,
        decoder: SemSegFPNHead | None = None,
        num_stacked_convs: int = 8,
        conv_dims: int = 512,
        kernel_size: int = 3,
        num_coarse_segm_channels: int = 2,
        num_patches: int = NUM_FINE_PARTS,
        deconv_kernel: int = 4,
        up_scale: int = 2,
        fg_iou_threshold: float = 0.7,
        point_regression_weight: float = 0.01,
        part_weight: float = 1.0,
        index_weight: float = 5.0,
    ):
        super().__init__(in_features, pooler)
        if decoder is not None and len(pooler.level_poolers) != 1:
            raise ValueError(
                "with a decoder, the DensePose pooler pools its single output map: give it one "
                f"scale (the decoder's common stride), not {len(pooler.level_poolers)}"
            )
        self.decoder = decoder
        self.fg_iou_threshold = fg_iou_threshold
        self.point_regression_weight = point_regression_weight
        self.part_weight = part_weight
        self.index_weight = index_weight
        self.conv_names = []
        channels = in_channels
        for k in range(1, num_stacked_convs + 1):
            conv = Conv2d(channels, conv_dims, kernel_size, padding=kernel_size // 2)
            c2_msra_fill(conv)
            self.add_module(f"body_conv_fcn{k}", conv)
            self.conv_names.append(f"body_conv_fcn{k}")
            channels = conv_dims
        self.predictor = DensePoseChartPredictor(
            channels, num_coarse_segm_channels, num_patches, deconv_kernel, up_scale
        )

    def pool(
        self, features: Mapping[str, torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        if self.decoder is None:
            return super().pool(features, boxes)
        return self.pooler([self.decoder.layers(features)], boxes)

    def layers(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled ``[R, C_in, P, P]`` → stacked chart outputs ``[R, K + 3C, S, S]``."""
        x = pooled
        for name in self.conv_names:
            x = F.relu(getattr(self, name)(x))
        return self.predictor(x)

    def select_instances(
        self,
        samples: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
        num_classes: int,
    ) -> list[SampledProposals]:
        foreground = select_foreground(samples, num_classes)
        return select_proposals_with_densepose(foreground, targets, self.fg_iou_threshold)

    def losses(
        self,
        outputs: torch.Tensor,
        instances: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """:func:`~detzoo.heads.densepose_losses.densepose_chart_losses` of the outputs against the instances' annotations."""
        return densepose_chart_losses(
            self.predictor.split(outputs),
            pack_densepose_annotations(instances, targets, outputs.shape[-1]),
            self.point_regression_weight,
            self.part_weight,
            self.index_weight,
        )

    def predict(self, outputs: torch.Tensor, detections: Sequence[dict[str, torch.Tensor]]) -> None:
        """Adds ``densepose`` (a dict of ``[D_i, ...]`` chart outputs) to each image's detections."""
        sizes = [len(d["boxes"]) for d in detections]
        per_image = {k: v.split(sizes) for k, v in self.predictor.split(outputs).items()}
        for i, detection in enumerate(detections):
            detection["densepose"] = {k: v[i] for k, v in per_image.items()}


class DensePoseROIHeads(StandardROIHeads):
    """:class:`~detzoo.heads.roi_heads.StandardROIHeads` with a DensePose branch
    (``densepose_head``, run after the mask and keypoint branches), Detectron2's
    ``DensePoseROIHeads``. Arguments as :class:`StandardROIHeads`, plus ``densepose_head``."""

    branch_names = (*StandardROIHeads.branch_names, "densepose_head")

    def __init__(
        self,
        box_in_features: Sequence[str],
        box_pooler: ROIPooler,
        box_head: ConvFCHead,
        box_predictor: FastRCNNOutputLayers,
        mask_head: ROIBranch | None = None,
        keypoint_head: ROIBranch | None = None,
        densepose_head: ROIBranch | None = None,
        **kwargs,
    ):
        super().__init__(
            box_in_features,
            box_pooler,
            box_head,
            box_predictor,
            mask_head=mask_head,
            keypoint_head=keypoint_head,
            **kwargs,
        )
        self.densepose_head = densepose_head
