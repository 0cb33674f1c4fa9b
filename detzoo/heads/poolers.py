"""Multi-level ROI pooling (Detectron2's ROIPooler): each box is pooled from the pyramid level
that suits its size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from detzoo.config import Recordable
from detzoo.ops import ROIAlign
from detzoo.ops.roi_pooling import as_rois

POOLER_TYPES = {"ROIAlign": False, "ROIAlignV2": True}  # name -> ROIAlign `aligned`


def assign_boxes_to_levels(
    boxes: Sequence[torch.Tensor],
    min_level: int,
    max_level: int,
    canonical_box_size: float,
    canonical_level: int,
) -> torch.Tensor:
    """Pyramid level index (0 = ``min_level``) for every box of every image, int64 ``[R]``.

    A box of size ``sqrt(area) = canonical_box_size`` goes to ``canonical_level``; each doubling of
    size moves one level up (FPN paper, eq. 1), clamped to ``[min_level, max_level]``.
    """
    sizes = torch.cat([(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) for b in boxes]).sqrt()
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    return (torch.clamp(levels, min=min_level, max=max_level) - min_level).to(torch.int64)


class ROIPooler(Recordable, nn.Module):
    """Pools ``output_size`` features for boxes from a list of feature levels.

    Args:
        output_size: pooled height/width (int or pair).
        scales: the scale (1 / stride) of each input level, finest first, e.g.
            ``(1/4, 1/8, 1/16, 1/32)``; consecutive levels must differ by a factor of 2.
        sampling_ratio: samples per bin side (``<= 0``: adaptive).
        pooler_type: ``"ROIAlignV2"`` (half-pixel aligned, Detectron2's default) or ``"ROIAlign"``.
        canonical_box_size, canonical_level: the level assignment rule (224 px → level 4).
    """

    def __init__(
        self,
        output_size: int | tuple[int, int],
        scales: Sequence[float],
        sampling_ratio: int,
        pooler_type: str = "ROIAlignV2",
        canonical_box_size: float = 224.0,
        canonical_level: int = 4,
    ):
        super().__init__()
        if pooler_type not in POOLER_TYPES:
            raise ValueError(
                f"unknown pooler_type {pooler_type!r}; choose from {sorted(POOLER_TYPES)}"
            )
        levels = [-math.log2(s) for s in scales]
        if any(abs(lv - round(lv)) > 1e-6 for lv in levels) or any(
            round(b) - round(a) != 1 for a, b in zip(levels[:-1], levels[1:])
        ):
            raise ValueError(f"pooler scales must be 1/2^k for consecutive k, got {list(scales)}")
        self.min_level, self.max_level = round(levels[0]), round(levels[-1])
        self.output_size = (
            (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        )
        self.canonical_box_size = float(canonical_box_size)
        self.canonical_level = int(canonical_level)
        aligned = POOLER_TYPES[pooler_type]
        self.level_poolers = nn.ModuleList(
            ROIAlign(
                self.output_size, spatial_scale=s, sampling_ratio=sampling_ratio, aligned=aligned
            )
            for s in scales
        )

    def forward(
        self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Pooled features ``[R, C, *output_size]`` for ``boxes`` (one ``[R_i, 4]`` XYXY per image,
        input pixels) from ``features`` (one ``[N, C, H_l, W_l]`` per level, finest first)."""
        if len(features) != len(self.level_poolers):
            raise ValueError(
                f"ROIPooler has {len(self.level_poolers)} levels, got {len(features)} features"
            )
        rois = as_rois(list(boxes), 4).to(features[0].dtype)
        if len(self.level_poolers) == 1:
            return self.level_poolers[0](features[0], rois)
        levels = assign_boxes_to_levels(
            boxes, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        out = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, pooler) in enumerate(zip(features, self.level_poolers)):
            inds = torch.nonzero(levels == level, as_tuple=True)[0]
            out.index_put_((inds,), pooler(feature, rois[inds]))
        return out
