"""Conv2d with an optional norm and activation as submodules (Detectron2's ``layers.Conv2d``), so
parameters are named ``<conv>.weight`` and ``<conv>.norm.*`` as in Detectron2 checkpoints."""

from __future__ import annotations

import torch
from torch import nn


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by ``norm`` (if given) and ``activation`` (if given)."""

    def __init__(
        self, *args, norm: nn.Module | None = None, activation: nn.Module | None = None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x
