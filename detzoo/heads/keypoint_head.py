"""Keypoint R-CNN's keypoint branch (Detectron2's ``KRCNNConvDeconvUpsampleHead``,
``keypoint_rcnn_loss``, ``keypoint_rcnn_inference`` and ``select_proposals_with_visible_keypoints``).

The head predicts one ``S x S`` heatmap of spatial logits per keypoint (S = 2 x 2 x the pooled
size: 56 for 14x14 pooling). Training is a softmax cross-entropy over the ``S*S`` cells of each
labelled keypoint inside its proposal; inference takes each heatmap's argmax (see
:mod:`detzoo.structures.keypoint_heatmaps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_branch import ROIBranch, select_foreground
from detzoo.heads.roi_sampling import SampledProposals
from detzoo.layers import Conv2d, c2_msra_fill
from detzoo.structures.keypoint_heatmaps import heatmaps_to_keypoints, keypoints_to_heatmap


def sampled_keypoints_normalizer(
    num_keypoints: int, batch_size_per_image: int, positive_fraction: float
) -> float:
    """Detectron2's per-image keypoint-loss normaliser when
    ``NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS`` is off: the keypoints of a full foreground sample,
    ``num_keypoints * ROI_HEADS.BATCH_SIZE_PER_IMAGE * ROI_HEADS.POSITIVE_FRACTION``."""
    return float(num_keypoints * batch_size_per_image * positive_fraction)


def instance_keypoints(
    instances: SampledProposals, target: Mapping[str, torch.Tensor], num_keypoints: int
) -> torch.Tensor:
    """The ground-truth keypoints ``[R, K, 3]`` matched to each of one image's proposals."""
    if "keypoints" not in target:
        raise ValueError(
            "the keypoint head needs 'keypoints' [N, K, 3] in every training target with objects "
            "(a keypoints dataset: detzoo.data.CocoKeypoints / task 'keypoints')"
        )
    keypoints = target["keypoints"]
    if keypoints.dim() != 3 or keypoints.shape[1:] != (num_keypoints, 3):
        raise ValueError(
            f"target keypoints have shape {tuple(keypoints.shape)}; the keypoint head predicts "
            f"{num_keypoints} keypoints, so it needs [N, {num_keypoints}, 3]"
        )
    return keypoints[instances.gt_index].to(instances.boxes.dtype)


def select_proposals_with_visible_keypoints(
    instances: Sequence[SampledProposals],
    targets: Sequence[Mapping[str, torch.Tensor]],
    num_keypoints: int,
) -> list[SampledProposals]:
    """Each image's proposals whose matched ground truth has a labelled keypoint (visibility
    ``>= 1``) inside the proposal box, edges included (Detectron2's
    ``select_proposals_with_visible_keypoints``; it runs on the foreground samples, so the
    keypoint head trains on fewer proposals than the box head)."""
    out = []
    for inst, target in zip(instances, targets):
        if len(inst.boxes) == 0:
            out.append(inst)
            continue
        keypoints = instance_keypoints(inst, target, num_keypoints)
        x, y = keypoints[..., 0], keypoints[..., 1]
        boxes = inst.boxes[:, None, :]
        inside = (
            (x >= boxes[..., 0])
            & (x <= boxes[..., 2])
            & (y >= boxes[..., 1])
            & (y <= boxes[..., 3])
        )
        keep = (inside & (keypoints[..., 2] >= 1)).any(dim=1)
        out.append(inst.select(keep))
    return out


def keypoint_rcnn_loss(
    logits: torch.Tensor,
    instances: Sequence[SampledProposals],
    targets: Sequence[Mapping[str, torch.Tensor]],
    normalizer: float | None,
) -> torch.Tensor:
    """Summed cross-entropy over the ``S*S`` cells of every valid keypoint, divided by
    ``normalizer`` (``None``: the number of valid keypoints in the batch).

    Args:
        logits: ``[R, K, S, S]`` heatmap logits of all images' ``instances`` in order.
        instances: each image's training proposals (``boxes``, ``gt_index``).
        targets: each image's targets with ``keypoints`` ``[N, K, 3]``.
        normalizer: see above.

    Returns:
        A scalar; ``0 * logits.sum()`` (zero, with a gradient path) when no keypoint is valid.
    """
    num_rois, num_keypoints, side, _ = logits.shape
    cells, valid = [], []
    for inst, target in zip(instances, targets):
        if len(inst.boxes) == 0:
            continue
        keypoints = instance_keypoints(inst, target, num_keypoints)
        heatmap, ok = keypoints_to_heatmap(keypoints, inst.boxes, side)
        cells.append(heatmap.flatten())
        valid.append(ok.flatten())
    if not cells or not torch.cat(valid).any():
        return logits.sum() * 0
    valid_index = torch.cat(valid).nonzero().squeeze(1)
    loss = F.cross_entropy(
        logits.reshape(num_rois * num_keypoints, side * side)[valid_index],
        torch.cat(cells)[valid_index],
        reduction="sum",
    )
    return loss / (valid_index.numel() if normalizer is None else normalizer)


class KRCNNConvDeconvUpsampleHead(ROIBranch):
    """``conv_fcn1..N`` (3x3, ReLU), the 4x4 stride-2 transposed conv ``score_lowres`` to one
    heatmap per keypoint, then 2x bilinear upsampling: ``[R, C, P, P]`` -> ``[R, K, 4P, 4P]``.
    Weights are Kaiming-normal (fan-out, ReLU) with zero biases, as in Detectron2.

    Args:
        in_features: feature names the pooler reads (``["p2", "p3", "p4", "p5"]``).
        pooler: ``P x P`` pooler (Detectron2: 14x14 ROIAlignV2, sampling ratio 0).
        in_channels: channels of the pooled features.
        num_keypoints: K.
        conv_dims: output channels of each 3x3 conv (Detectron2: eight of 512).
        loss_weight: multiplier of ``loss_keypoint``.
        loss_normalizer: ``"visible"`` divides the summed loss by the batch's valid keypoints
            (Detectron2's default, ``NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS``); a number ``n``
            divides it by ``n x`` the number of images (see :func:`sampled_keypoints_normalizer`
            for the value Detectron2 derives).

    Training uses the foreground proposals with a labelled keypoint inside
    (:func:`select_proposals_with_visible_keypoints`); predictions get ``keypoints`` float
    ``[D, K, 3]`` (x, y, score) in input pixels.
    """

    def __init__(
        self,
        in_features: Sequence[str],
        pooler: ROIPooler,
        in_channels: int,
        num_keypoints: int,
        conv_dims: Sequence[int] = (512,) * 8,
        loss_weight: float = 1.0,
        loss_normalizer: float | str = "visible",
    ):
        super().__init__(in_features, pooler)
        if num_keypoints < 1:
            raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
        if loss_normalizer != "visible" and not (
            isinstance(loss_normalizer, (int, float)) and loss_normalizer > 0
        ):
            raise ValueError(
                f"loss_normalizer must be 'visible' or a positive number, got {loss_normalizer!r}"
            )
        self.num_keypoints = num_keypoints
        self.loss_weight = loss_weight
        self.loss_normalizer = loss_normalizer
        self.conv_names = []
        channels = in_channels
        for k, dim in enumerate(conv_dims, start=1):
            conv = Conv2d(channels, dim, kernel_size=3, stride=1, padding=1)
            c2_msra_fill(conv)
            self.add_module(f"conv_fcn{k}", conv)
            self.conv_names.append(f"conv_fcn{k}")
            channels = dim
        self.score_lowres = nn.ConvTranspose2d(
            channels, num_keypoints, kernel_size=4, stride=2, padding=1
        )
        c2_msra_fill(self.score_lowres)

    def layers(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[R, C, P, P]`` -> heatmap logits ``[R, K, 4P, 4P]``."""
        x = pooled
        for name in self.conv_names:
            x = F.relu(getattr(self, name)(x))
        x = self.score_lowres(x)
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def select_instances(
        self,
        samples: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
        num_classes: int,
    ) -> list[SampledProposals]:
        foreground = select_foreground(samples, num_classes)
        return select_proposals_with_visible_keypoints(foreground, targets, self.num_keypoints)

    def losses(
        self,
        outputs: torch.Tensor,
        instances: Sequence[SampledProposals],
        targets: Sequence[Mapping[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        normalizer = (
            None
            if self.loss_normalizer == "visible"
            else len(instances) * float(self.loss_normalizer)
        )
        loss = keypoint_rcnn_loss(outputs, instances, targets, normalizer)
        return {"loss_keypoint": loss * self.loss_weight}

    def predict(self, outputs: torch.Tensor, detections: Sequence[dict[str, torch.Tensor]]) -> None:
        boxes = torch.cat([d["boxes"] for d in detections])
        keypoints = heatmaps_to_keypoints(outputs, boxes)[:, :, [0, 1, 3]]
        per_image = keypoints.split([len(d["boxes"]) for d in detections])
        for detection, image_keypoints in zip(detections, per_image):
            detection["keypoints"] = image_keypoints
