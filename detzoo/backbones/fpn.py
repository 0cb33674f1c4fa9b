"""Feature Pyramid Network over any backbone (Detectron2's FPN, LastLevelMaxPool, LastLevelP6P7)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detzoo.backbones.base import Backbone, ShapeSpec
from detzoo.config import Recordable, build
from detzoo.layers import Conv2d, c2_xavier_fill, get_norm


class LastLevelMaxPool(Recordable, nn.Module):
    """P6 = P5 subsampled by 2 (max-pool, kernel 1), for the RPN of FPN R-CNNs."""

    num_levels = 1
    in_feature = "p5"

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class LastLevelP6P7(Recordable, nn.Module):
    """P6 = 3×3/2 conv of ``in_feature`` (``"res5"`` = C5 or ``"p5"``), P7 = 3×3/2 conv of ReLU(P6)
    (RetinaNet)."""

    num_levels = 2

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = "res5"):
        super().__init__()
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for conv in (self.p6, self.p7):
            c2_xavier_fill(conv)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p6 = self.p6(x)
        return [p6, self.p7(F.relu(p6))]


class FPN(Recordable, Backbone):
    """Top-down pyramid with lateral 1×1 and output 3×3 convs on ``in_features`` of ``bottom_up``.

    Args:
        bottom_up: the backbone whose features feed the pyramid (``ResNet``, ``TimmBackbone``, ...).
        in_features: its feature names, finest first (e.g. ``["res2", ..., "res5"]``).
        out_channels: channels of every pyramid level.
        norm: norm of the lateral/output convs (``""`` = conv bias instead).
        top_block: extra coarser levels (:class:`LastLevelMaxPool` or :class:`LastLevelP6P7`).
        fuse_type: ``"sum"`` or ``"avg"`` of the lateral and upsampled top-down features.

    Outputs are named ``p<k>`` with ``k = log2(stride)``; layers are ``fpn_lateral<k>`` and
    ``fpn_output<k>`` as in Detectron2.
    """

    def __init__(
        self,
        bottom_up: nn.Module,
        in_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        out_channels: int = 256,
        norm: str = "",
        top_block: nn.Module | None = None,
        fuse_type: str = "sum",
    ):
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        self.bottom_up = build(bottom_up)
        shapes = self.bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(
                f"FPN in_features {missing} are not outputs of the bottom-up backbone ({sorted(shapes)})"
            )
        strides = [shapes[f].stride for f in in_features]
        if any(b != 2 * a for a, b in zip(strides[:-1], strides[1:])):
            raise ValueError(
                f"FPN needs in_features whose strides double level to level, got {strides}"
            )
        self.in_features = list(in_features)
        self.fuse_type = fuse_type
        self.lateral_convs, self.output_convs = [], []
        for f, stride in zip(in_features, strides):
            level = int(math.log2(stride))
            lateral = Conv2d(
                shapes[f].channels,
                out_channels,
                1,
                bias=norm == "",
                norm=get_norm(norm, out_channels),
            )
            output = Conv2d(
                out_channels,
                out_channels,
                3,
                padding=1,
                bias=norm == "",
                norm=get_norm(norm, out_channels),
            )
            c2_xavier_fill(lateral)
            c2_xavier_fill(output)
            self.add_module(f"fpn_lateral{level}", lateral)
            self.add_module(f"fpn_output{level}", output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)
        self.top_block = build(top_block)
        self._shapes = {f"p{int(math.log2(s))}": ShapeSpec(out_channels, s) for s in strides}
        if self.top_block is not None:
            last = int(math.log2(strides[-1]))
            for k in range(last + 1, last + 1 + self.top_block.num_levels):
                self._shapes[f"p{k}"] = ShapeSpec(out_channels, 2**k)
        self.size_divisibility = strides[
            -1
        ]  # Detectron2: the coarsest input level, not the top block

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shapes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        bottom_up = self.bottom_up(x)
        prev = self.lateral_convs[-1](bottom_up[self.in_features[-1]])
        results = [self.output_convs[-1](prev)]
        for i in range(len(self.in_features) - 2, -1, -1):
            top_down = F.interpolate(prev, scale_factor=2.0, mode="nearest")
            prev = self.lateral_convs[i](bottom_up[self.in_features[i]]) + top_down
            if self.fuse_type == "avg":
                prev = prev / 2
            results.insert(0, self.output_convs[i](prev))
        names = list(self._shapes)
        if self.top_block is not None:
            source = self.top_block.in_feature
            top_in = bottom_up[source] if source in bottom_up else results[names.index(source)]
            results.extend(self.top_block(top_in))
        return dict(zip(names, results))
