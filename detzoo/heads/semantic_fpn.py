"""Semantic segmentation head on an FPN (Detectron2's ``SemSegFPNHead``, Panoptic FPN's
"semantic FPN" branch).

Each input level gets a tower of 3×3 conv (+ norm, ReLU) blocks, each block followed by a 2×
bilinear upsampling until the level reaches ``common_stride`` (1/4 of the input for p2–p5:
p2 one conv, p3 one conv + up, p4 two, p5 three); the towers are summed and a 1×1 predictor
gives per-class logits at ``1 / common_stride`` scale. Training upsamples the logits by
``common_stride`` (bilinear) and takes a pixel-wise cross-entropy that ignores ``ignore_value``;
inference upsamples the same way. Parameter names follow Detectron2
(``sem_seg_head.p4.2.norm.weight``: in a tower, even indices are convs, odd ones upsamplings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detzoo.config import Recordable
from detzoo.layers import Conv2d, c2_msra_fill, get_norm


def upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bilinear ``scale``× upsampling (``align_corners=False``, as Detectron2)."""
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class SemSegFPNHead(Recordable, nn.Module):
    """Per-pixel class logits from FPN features.

    Args:
        in_features: feature names, finest first (``["p2", "p3", "p4", "p5"]``).
        in_channels: channels of every input level (FPN: 256).
        in_strides: stride of each input level in input pixels (``[4, 8, 16, 32]``).
        num_classes: output channels (Panoptic FPN: 1 "things" channel + the stuff classes).
        conv_dims: channels of the towers (Detectron2: 128).
        common_stride: stride of the merged map (4); every input stride must be a power-of-two
            multiple of it.
        norm: norm of the tower convs by Detectron2's names (``"GN"``: 32 groups, ``""``: none).
        loss_weight: multiplies the cross-entropy (Panoptic FPN: 0.5).
        ignore_value: target value of unlabelled pixels (and of the batch padding).
    """

    def __init__(
        self,
        in_features: Sequence[str] = ("p2", "p3", "p4", "p5"),
        in_channels: int = 256,
        in_strides: Sequence[int] = (4, 8, 16, 32),
        num_classes: int = 54,
        conv_dims: int = 128,
        common_stride: int = 4,
        norm: str = "GN",
        loss_weight: float = 1.0,
        ignore_value: int = 255,
    ):
        super().__init__()
        if len(in_features) != len(in_strides) or not in_features:
            raise ValueError(
                f"in_features {list(in_features)} and in_strides {list(in_strides)} must be "
                f"non-empty and of equal length"
            )
        self.in_features = list(in_features)
        self.common_stride = common_stride
        self.num_classes = num_classes
        self.loss_weight = loss_weight
        self.ignore_value = ignore_value
        for name, stride in zip(self.in_features, in_strides):
            ratio = stride / common_stride
            if ratio < 1 or not math.log2(ratio).is_integer():
                raise ValueError(
                    f"level {name} has stride {stride}; the semantic head needs strides that are "
                    f"{common_stride} times a power of two (common_stride={common_stride})"
                )
            self.add_module(name, self._tower(in_channels, conv_dims, int(ratio), norm))
        self.predictor = Conv2d(conv_dims, num_classes, kernel_size=1)
        c2_msra_fill(self.predictor)

    @staticmethod
    def _tower(in_channels: int, conv_dims: int, ratio: int, norm: str) -> nn.Sequential:
        ops: list[nn.Module] = []
        for k in range(max(1, int(math.log2(ratio)))):
            conv = Conv2d(
                in_channels if k == 0 else conv_dims,
                conv_dims,
                kernel_size=3,
                padding=1,
                bias=not norm,
                norm=get_norm(norm, conv_dims),
                activation=nn.ReLU(),
            )
            c2_msra_fill(conv)
            ops.append(conv)
            if ratio > 1:
                ops.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        return nn.Sequential(*ops)

    def layers(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``[N, num_classes, H/common_stride, W/common_stride]`` of the padded batch."""
        x = None
        for name in self.in_features:
            y = getattr(self, name)(features[name])
            x = y if x is None else x + y
        return self.predictor(x)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``[N, num_classes, H_pad, W_pad]`` at the padded input size."""
        return upsample(self.layers(features), self.common_stride)

    def losses(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss_sem_seg``: mean cross-entropy of ``logits`` ``[N, C, H, W]`` (from
        :meth:`forward`) against int64 ``targets`` ``[N, H, W]`` (the batch's ``sem_seg`` padded
        with ``ignore_value``) over non-ignored pixels, times ``loss_weight``. A batch with no
        labelled pixel gives a zero loss that still reaches every parameter."""
        if targets.shape[-2:] != logits.shape[-2:]:
            raise ValueError(
                f"sem_seg targets {tuple(targets.shape[-2:])} and logits "
                f"{tuple(logits.shape[-2:])} differ in size; pad targets like the images"
            )
        labelled = targets != self.ignore_value
        bad = labelled & ((targets < 0) | (targets >= self.num_classes))
        if bad.any():
            value = int(targets[bad][0])
            raise ValueError(
                f"sem_seg target holds value {value}; the semantic head predicts "
                f"{self.num_classes} classes, so targets must be in [0, {self.num_classes}) or "
                f"{self.ignore_value} (ignored)"
            )
        logits = logits.float()
        if not labelled.any():
            return {"loss_sem_seg": 0.0 * logits.sum()}
        loss = F.cross_entropy(logits, targets, ignore_index=self.ignore_value)
        return {"loss_sem_seg": loss * self.loss_weight}


def pad_semantic_targets(
    targets: Sequence[Mapping[str, torch.Tensor]],
    image_sizes: Sequence[tuple[int, int]],
    padded_size: tuple[int, int],
    ignore_value: int = 255,
) -> torch.Tensor:
    """The batch's ``sem_seg`` targets (int ``[h_i, w_i]``, each its image's input size) padded
    bottom/right with ``ignore_value`` to ``padded_size``, as the images are: int64
    ``[N, H_pad, W_pad]``."""
    out = []
    for i, (target, size) in enumerate(zip(targets, image_sizes)):
        if "sem_seg" not in target:
            raise ValueError(
                f"training target {i} has no 'sem_seg'; the semantic head needs semantic "
                f"targets (a panoptic dataset: detzoo.data.CocoPanoptic / task 'panoptic')"
            )
        seg = target["sem_seg"]
        if tuple(seg.shape) != tuple(size):
            raise ValueError(
                f"training target {i}: sem_seg is {tuple(seg.shape)} but its image is "
                f"{tuple(size)} (H, W); transforms must move sem_seg with the image"
            )
        pad = (0, padded_size[1] - seg.shape[1], 0, padded_size[0] - seg.shape[0])
        out.append(F.pad(seg.long(), pad, value=ignore_value))
    return torch.stack(out)
