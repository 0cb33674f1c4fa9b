"""Building blocks shared by backbones and heads."""

from typing import TYPE_CHECKING, Any

from detzoo.layers.conv import Conv2d
from detzoo.layers.init import c2_msra_fill, c2_xavier_fill
from detzoo.layers.norm import NORMS, FrozenBatchNorm2d, get_norm

if TYPE_CHECKING:
    from detzoo.layers.sync_norm import DetzooSyncBatchNorm, NaiveSyncBatchNorm

__all__ = [
    "NORMS",
    "Conv2d",
    "DetzooSyncBatchNorm",
    "FrozenBatchNorm2d",
    "NaiveSyncBatchNorm",
    "c2_msra_fill",
    "c2_xavier_fill",
    "get_norm",
]

# sync_norm imports Lightning (seconds): loaded on first use, so that backbones stay light.
_SYNC_NORM_NAMES = ("DetzooSyncBatchNorm", "NaiveSyncBatchNorm")


def __getattr__(name: str) -> Any:
    if name in _SYNC_NORM_NAMES:
        from detzoo.layers import sync_norm

        return getattr(sync_norm, name)
    raise AttributeError(f"module 'detzoo.layers' has no attribute {name!r}")
