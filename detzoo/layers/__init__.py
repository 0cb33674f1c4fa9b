"""Building blocks shared by backbones and heads."""

from detzoo.layers.conv import Conv2d
from detzoo.layers.init import c2_msra_fill, c2_xavier_fill
from detzoo.layers.norm import NORMS, FrozenBatchNorm2d, get_norm

__all__ = ["NORMS", "Conv2d", "FrozenBatchNorm2d", "c2_msra_fill", "c2_xavier_fill", "get_norm"]
