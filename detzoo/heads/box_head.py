"""Box head: convs and FCs turning pooled ROI features into a box feature vector
(Detectron2's FastRCNNConvFCHead; the "4conv1fc" and "2fc" variants are configurations of it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from detzoo.config import Recordable
from detzoo.layers import Conv2d, c2_msra_fill, c2_xavier_fill, get_norm


class ConvFCHead(Recordable, nn.Module):
    """``conv1..convN`` (3×3, ReLU, optional norm) then ``fc1..fcM`` (ReLU).

    Args:
        input_shape: ``(channels, height, width)`` of the pooled features, e.g. ``(256, 7, 7)``.
        conv_dims: output channels of each conv (``[]`` for the 2-FC head).
        fc_dims: sizes of each FC layer (``[1024, 1024]`` for the 2-FC head).
        conv_norm: norm name for the convs (``""``, ``"GN"``, ``"BN"``, ...).

    ``output_size`` is the feature size: ``fc_dims[-1]``, or ``C*H*W`` of the last conv without FCs.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        conv_dims: Sequence[int] = (),
        fc_dims: Sequence[int] = (1024, 1024),
        conv_norm: str = "",
    ):
        super().__init__()
        if not conv_dims and not fc_dims:
            raise ValueError("ConvFCHead needs at least one conv or FC layer")
        channels, height, width = input_shape
        self.convs = []
        for k, dim in enumerate(conv_dims):
            conv = Conv2d(
                channels,
                dim,
                kernel_size=3,
                padding=1,
                bias=not conv_norm,
                norm=get_norm(conv_norm, dim),
                activation=nn.ReLU(),
            )
            c2_msra_fill(conv)
            self.add_module(f"conv{k + 1}", conv)
            self.convs.append(conv)
            channels = dim
        size = channels * height * width
        self.fcs = []
        for k, dim in enumerate(fc_dims):
            fc = nn.Linear(size, dim)
            c2_xavier_fill(fc)
            self.add_module(f"fc{k + 1}", fc)
            self.fcs.append(fc)
            size = dim
        self.output_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[R, C, H, W]`` → ``[R, output_size]``."""
        for conv in self.convs:
            x = conv(x)
        x = x.flatten(1)
        for fc in self.fcs:
            x = torch.relu(fc(x))
        return x
