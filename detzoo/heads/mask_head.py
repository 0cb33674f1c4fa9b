"""Mask R-CNN's mask branch (Detectron2's ``MaskRCNNConvUpsampleHead``, ``mask_rcnn_loss`` and
``mask_rcnn_inference``): 3x3 convs, a 2x deconvolution and a 1x1 predictor of per-class mask
logits on pooled ROI features.

Training targets are each foreground proposal's matched ground-truth mask cropped to the proposal
and resized to the head's output size (:mod:`detzoo.structures.mask_crops`): from
``target["polygons"]`` when a target carries them (rasterised inside the box, Detectron2's
polygon path), else from the bitmaps ``target["masks"]``. At inference the head adds ``masks``
``[D, 1, M, M]``, the sigmoid of each detection's class channel; the model's postprocessing
(:func:`detzoo.models.postprocess.rescale_detections`) pastes them into the output image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_branch import ROIBranch
from detzoo.heads.roi_sampling import SampledProposals
from detzoo.layers import Conv2d, c2_msra_fill, get_norm
from detzoo.structures.mask_crops import crop_and_resize_bitmasks, crop_and_resize_polygons


def mask_targets(
    instances: Sequence[SampledProposals],
    targets: Sequence[Mapping[str, object]],
    mask_size: int,
) -> torch.Tensor:
    """Bool ``[R, M, M]`` training targets of all images' ``instances`` (in order): each
    instance's matched ground truth (``gt_index``) cropped to its proposal box, as Detectron2's
    ``gt_masks.crop_and_resize(proposal_boxes, M)``.

    Per image, ``target["polygons"]`` (``G`` instances, each a list of flat ``[x0, y0, ...]``
    polygons in input pixels) is used when present, else ``target["masks"]`` (``[G, H, W]``
    bitmaps in the input frame).
    """
    crops = []
    for i, (inst, target) in enumerate(zip(instances, targets)):
        if len(inst.boxes) == 0:
            continue
        if "polygons" in target:
            crop = crop_and_resize_polygons(
                target["polygons"], inst.boxes, inst.gt_index, mask_size
            )
        elif "masks" in target:
            crop = crop_and_resize_bitmasks(target["masks"], inst.boxes, inst.gt_index, mask_size)
        else:
            raise ValueError(
                f"training target {i} has no 'masks' (or 'polygons'); a mask head needs instance "
                f"masks (load the dataset with its segmentations)"
            )
        crops.append(crop)
    if not crops:
        device = instances[0].boxes.device if instances else None
        return torch.zeros(0, mask_size, mask_size, dtype=torch.bool, device=device)
    return torch.cat(crops)


def mask_rcnn_loss(
    logits: torch.Tensor, gt_classes: torch.Tensor, gt_masks: torch.Tensor
) -> torch.Tensor:
    """Detectron2's ``mask_rcnn_loss``: mean per-pixel binary cross-entropy of each instance's
    ground-truth-class channel (the only channel when class-agnostic) against its target.

    Args:
        logits: ``[R, C, M, M]`` mask logits (``C`` = K classes, or 1 when class-agnostic).
        gt_classes: int64 ``[R]`` in ``[0, K)``.
        gt_masks: bool ``[R, M, M]`` targets.

    Returns:
        A scalar; ``0 * logits.sum()`` when ``R == 0`` (every parameter still gets a zero
        gradient).
    """
    if logits.dim() != 4 or logits.shape[2] != logits.shape[3]:
        raise ValueError(f"mask logits must be [R, C, M, M], got {tuple(logits.shape)}")
    if gt_masks.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"mask targets {tuple(gt_masks.shape)} do not fit logits {tuple(logits.shape)}"
        )
    if len(logits) == 0:
        return logits.sum() * 0
    if logits.shape[1] == 1:
        selected = logits[:, 0]
    else:
        index = torch.arange(len(logits), device=logits.device)
        selected = logits[index, gt_classes.to(torch.int64)]
    return F.binary_cross_entropy_with_logits(
        selected, gt_masks.to(selected.dtype), reduction="mean"
    )


def mask_rcnn_inference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Detectron2's ``mask_rcnn_inference``: foreground probabilities ``[D, 1, M, M]`` of each
    detection's class channel (``labels`` int64 ``[D]``) of ``logits`` ``[D, C, M, M]``, or of the
    only channel when ``C == 1``."""
    if logits.shape[1] == 1:
        return logits.sigmoid()
    index = torch.arange(len(logits), device=logits.device)
    return logits[index, labels][:, None].sigmoid()


class MaskRCNNConvUpsampleHead(ROIBranch):
    """``mask_fcn1..N`` (3x3, ReLU, optional norm) → ``deconv`` (2x2 stride 2, ReLU) →
    ``predictor`` (1x1): ``[R, C_in, S, S]`` → logits ``[R, C, 2S, 2S]``.

    Args:
        in_features: feature names the pooler reads (``["p2", "p3", "p4", "p5"]``; ``[]`` for C4).
        pooler: the branch's pooler (14x14 ROIAlignV2 in Detectron2's FPN models); ``None`` when the
            ROI heads hand it features (C4: the box branch's res5 output, 7x7).
        in_channels: channels of the pooled features.
        num_classes: K; the predictor has K outputs (1 when ``cls_agnostic_mask``).
        num_conv: 3x3 convs before the deconvolution (4 for FPN models, 0 for C4).
        conv_dim: channels of the convs and of the deconvolution.
        conv_norm: norm of the convs (``""``, ``"GN"``, ``"BN"``, ...); convs have no bias with one.
        cls_agnostic_mask: predict one mask for every class.

    Initialisation as Detectron2: MSRA fill for the convs and the deconvolution, N(0, 0.001) for
    the predictor, zero biases.
    """

    def __init__(
        self,
        in_features: Sequence[str],
        pooler: ROIPooler | None,
        in_channels: int,
        num_classes: int,
        num_conv: int = 4,
        conv_dim: int = 256,
        conv_norm: str = "",
        cls_agnostic_mask: bool = False,
    ):
        super().__init__(in_features, pooler)
        if num_conv < 0 or conv_dim < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"MaskRCNNConvUpsampleHead needs num_conv >= 0 and positive in_channels, conv_dim "
                f"and num_classes; got {num_conv}, {in_channels}, {conv_dim}, {num_classes}"
            )
        self.num_classes = num_classes
        self.cls_agnostic_mask = cls_agnostic_mask
        self.convs = []
        channels = in_channels
        for k in range(num_conv):
            conv = Conv2d(
                channels,
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=not conv_norm,
                norm=get_norm(conv_norm, conv_dim),
                activation=nn.ReLU(),
            )
            c2_msra_fill(conv)
            self.add_module(f"mask_fcn{k + 1}", conv)
            self.convs.append(conv)
            channels = conv_dim
        self.deconv = nn.ConvTranspose2d(channels, conv_dim, kernel_size=2, stride=2)
        c2_msra_fill(self.deconv)
        self.predictor = nn.Conv2d(conv_dim, 1 if cls_agnostic_mask else num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    def layers(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[R, C_in, S, S]`` → mask logits ``[R, C, 2S, 2S]``."""
        x = pooled
        for conv in self.convs:
            x = conv(x)
        return self.predictor(F.relu(self.deconv(x)))

    def losses(
        self,
        outputs: torch.Tensor,
        instances: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """``{"loss_mask"}``: :func:`mask_rcnn_loss` against :func:`mask_targets`."""
        gt_masks = mask_targets(instances, targets, outputs.shape[-1])
        gt_classes = torch.cat([s.gt_classes for s in instances])
        return {"loss_mask": mask_rcnn_loss(outputs, gt_classes, gt_masks.to(outputs.device))}

    def predict(self, outputs: torch.Tensor, detections: Sequence[dict[str, torch.Tensor]]) -> None:
        """Adds ``masks`` ``[D_i, 1, M, M]`` (probabilities) to each image's detections."""
        labels = [d["labels"] for d in detections]
        probs = mask_rcnn_inference(outputs, torch.cat(labels))
        for detection, masks in zip(detections, probs.split([len(lb) for lb in labels])):
            detection["masks"] = masks
