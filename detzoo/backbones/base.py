"""The protocol every detzoo backbone follows."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ShapeSpec:
    """A feature map's channel count and stride (input pixels per feature cell)."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """``forward(x [N, 3, H, W] normalised) -> {name: [N, C, H / stride, W / stride]}``.

    ``output_shape()`` gives each output's :class:`ShapeSpec`; ``size_divisibility`` is the multiple
    the padded input size must have (0: any), e.g. 32 for an FPN whose coarsest level has stride 32.
    """

    size_divisibility: int = 0

    def output_shape(self) -> dict[str, ShapeSpec]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def freeze(module: nn.Module) -> nn.Module:
    """Stops training ``module``: parameters get ``requires_grad=False`` and batch norms become
    frozen (fixed statistics), as Detectron2's ``freeze_at`` does."""
    from detzoo.layers.norm import FrozenBatchNorm2d

    for p in module.parameters():
        p.requires_grad = False
    return FrozenBatchNorm2d.convert(module)
