"""ResNet / ResNeXt in Detectron2's layout (MSRA/caffe or torchvision style).

Written here rather than taken from torchvision because Detectron2's MSRA weights put the stride in
the first 1×1 conv of a bottleneck (torchvision puts it in the 3×3), take BGR 0–255 input, and name
parameters ``stem.conv1.norm.weight``, ``res2.0.shortcut.weight``, ... — mirroring those names makes
Detectron2 checkpoints load by a plain key match.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detzoo.backbones.base import Backbone, ShapeSpec, freeze
from detzoo.config import Recordable
from detzoo.layers import Conv2d, c2_msra_fill, get_norm

BLOCKS_PER_STAGE = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
STAGES = ("res2", "res3", "res4", "res5")


def _conv(in_ch: int, out_ch: int, kernel: int, norm: str, stride: int = 1, **kwargs) -> Conv2d:
    conv = Conv2d(
        in_ch, out_ch, kernel, stride=stride, bias=False, norm=get_norm(norm, out_ch), **kwargs
    )
    c2_msra_fill(conv)
    return conv


def _add_relu_(out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``relu(out + residual)``, written into ``out`` (a fresh conv/norm output) when that gives the
    same result: in-place ReLUs and residual adds avoid allocating (and page-faulting in) a new
    feature map per op, as torchvision's ResNet does."""
    if out.dtype != torch.result_type(out, residual) or out.shape != residual.shape:
        return F.relu(out + residual)
    return F.relu_(out.add_(residual))


class BasicStem(nn.Module):
    """7×7/2 conv + norm + ReLU, then 3×3/2 max-pool: stride 4."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 7, norm, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual (ResNet-18/34)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str, **_):
        super().__init__()
        self.shortcut = (
            _conv(in_channels, out_channels, 1, norm, stride=stride)
            if in_channels != out_channels or stride != 1
            else None
        )
        self.conv1 = _conv(in_channels, out_channels, 3, norm, stride=stride, padding=1)
        self.conv2 = _conv(out_channels, out_channels, 3, norm, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu_(self.conv1(x)))
        return _add_relu_(out, self.shortcut(x) if self.shortcut is not None else x)


class BottleneckBlock(nn.Module):
    """1×1 reduce, 3×3 (grouped, dilated), 1×1 expand, with a residual (ResNet-50+ / ResNeXt)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm: str,
        bottleneck_channels: int,
        num_groups: int = 1,
        stride_in_1x1: bool = True,
        dilation: int = 1,
    ):
        super().__init__()
        self.shortcut = (
            _conv(in_channels, out_channels, 1, norm, stride=stride)
            if in_channels != out_channels
            else None
        )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv(in_channels, bottleneck_channels, 1, norm, stride=stride_1x1)
        self.conv2 = _conv(
            bottleneck_channels, bottleneck_channels, 3, norm, stride=stride_3x3,
            padding=dilation, dilation=dilation, groups=num_groups,
        )  # fmt: skip
        self.conv3 = _conv(bottleneck_channels, out_channels, 1, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(F.relu_(self.conv2(F.relu_(self.conv1(x)))))
        return _add_relu_(out, self.shortcut(x) if self.shortcut is not None else x)


class ResNetStage(Recordable, nn.Sequential):
    """One ResNet stage: ``num_blocks`` residual blocks, the first with ``first_stride``
    (children ``0``, ``1``, ... as in Detectron2's ``res<k>.<i>`` names).

    ``bottleneck_channels`` 0 selects basic blocks (ResNet-18/34); otherwise bottleneck blocks.
    """

    def __init__(
        self,
        num_blocks: int,
        in_channels: int,
        out_channels: int,
        first_stride: int,
        norm: str,
        bottleneck_channels: int = 0,
        num_groups: int = 1,
        stride_in_1x1: bool = True,
        dilation: int = 1,
    ):
        block = BottleneckBlock if bottleneck_channels else BasicBlock
        super().__init__(
            *[
                block(
                    in_channels if b == 0 else out_channels,
                    out_channels,
                    first_stride if b == 0 else 1,
                    norm,
                    bottleneck_channels=bottleneck_channels,
                    num_groups=num_groups,
                    stride_in_1x1=stride_in_1x1,
                    dilation=dilation,
                )  # fmt: skip
                for b in range(num_blocks)
            ]
        )


class ResNet(Recordable, Backbone):
    """ResNet-18/34/50/101/152 and ResNeXt.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_features: outputs among ``"stem"``, ``"res2"``–``"res5"``; stages after the last one
            requested are not built (C4 models run res5 in the ROI head).
        norm: ``"FrozenBN"``, ``"BN"``, ``"SyncBN"``, ``"GN"`` or ``""``.
        freeze_at: 0 trains everything; 1 freezes the stem; k freezes the stem and res2..res{k}.
        stride_in_1x1: True for MSRA/caffe weights (Detectron2's R-50/R-101), False for torchvision
            and ResNeXt weights.
        num_groups, width_per_group: ResNeXt cardinality and width (``32, 8`` for X-101-32x8d).
        res5_dilation: 2 keeps res5 at stride 16 (DC5 models).
        stem_out_channels, res2_out_channels, in_channels: channel sizes (res2_out_channels
            defaults to 64 for ResNet-18/34 and 256 for deeper ones; stage k has
            ``res2_out_channels * 2**k`` output channels, so 32 makes a half-width ResNet-18 for
            training from scratch on small data — pretrained weights need the defaults).
    """

    def __init__(
        self,
        depth: int = 50,
        out_features: Sequence[str] = STAGES,
        norm: str = "FrozenBN",
        freeze_at: int = 2,
        stride_in_1x1: bool = True,
        num_groups: int = 1,
        width_per_group: int = 64,
        res5_dilation: int = 1,
        stem_out_channels: int = 64,
        res2_out_channels: int | None = None,
        in_channels: int = 3,
    ):
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}")
        unknown = [f for f in out_features if f not in ("stem", *STAGES)]
        if unknown or not out_features:
            raise ValueError(
                f"ResNet out_features must be among stem, res2..res5, got {list(out_features)}"
            )
        if res5_dilation not in (1, 2):
            raise ValueError(f"res5_dilation must be 1 or 2, got {res5_dilation}")
        if res2_out_channels is None:
            res2_out_channels = 64 if depth < 50 else 256
        if depth < 50 and num_groups != 1:
            raise ValueError("ResNet-18/34 have no grouped convolutions: use num_groups=1")
        self.depth = depth
        self.norm = norm
        self.stride_in_1x1 = stride_in_1x1
        self.num_groups = num_groups
        self.width_per_group = width_per_group
        self.res2_out_channels = res2_out_channels
        self._out_features = list(out_features)

        self.stem = BasicStem(in_channels, stem_out_channels, norm)
        shapes = {"stem": ShapeSpec(stem_out_channels, 4)}
        last = max((STAGES.index(f) for f in out_features if f != "stem"), default=-1)
        in_ch, stride = stem_out_channels, 4
        for i in range(last + 1):
            name = STAGES[i]
            dilation = res5_dilation if name == "res5" else 1
            first_stride = 1 if i == 0 or dilation == 2 else 2
            stage, in_ch = self._make_stage(i, in_ch, first_stride, dilation)
            self.add_module(name, stage)
            stride *= first_stride
            shapes[name] = ShapeSpec(in_ch, stride)
        self._shapes = {f: shapes[f] for f in out_features}
        self._freeze(freeze_at)

    def _stage_channels(self, index: int) -> tuple[int, int]:
        """(out_channels, bottleneck_channels) of stage ``index`` (0 = res2)."""
        if self.depth < 50:
            return self.res2_out_channels * 2**index, 0
        return self.res2_out_channels * 2**index, self.num_groups * self.width_per_group * 2**index

    def _make_stage(
        self, index: int, in_channels: int, first_stride: int, dilation: int
    ) -> tuple[ResNetStage, int]:
        out_ch, bottleneck = self._stage_channels(index)
        stage = ResNetStage(
            BLOCKS_PER_STAGE[self.depth][index], in_channels, out_ch, first_stride, self.norm,
            bottleneck_channels=bottleneck, num_groups=self.num_groups,
            stride_in_1x1=self.stride_in_1x1, dilation=dilation,
        )  # fmt: skip
        return stage, out_ch

    def _freeze(self, freeze_at: int) -> None:
        if freeze_at >= 1:
            self.stem = freeze(self.stem)
        for i, name in enumerate(STAGES):
            if freeze_at >= i + 2 and hasattr(self, name):
                setattr(self, name, freeze(getattr(self, name)))

    def make_res5_head(self) -> tuple[ResNetStage, int]:
        """A fresh res5 stage (first stride 2) for C4 ROI heads, and its output channels."""
        if hasattr(self, "res5"):
            raise ValueError("this ResNet already has res5; a C4 head needs out_features=['res4']")
        in_ch = self._stage_channels(2)[0]
        return self._make_stage(3, in_ch, 2, 1)

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shapes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ResNet takes [N, C, H, W] input, got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._shapes:
            outputs["stem"] = x
        for name in STAGES:
            if not hasattr(self, name):
                break
            x = getattr(self, name)(x)
            if name in self._shapes:
                outputs[name] = x
        return outputs
