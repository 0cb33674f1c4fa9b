"""Anchor generation for dense heads (RPN, RetinaNet), Detectron2's DefaultAnchorGenerator.

Anchors are XYXY boxes in input-image pixels. For each feature level with stride ``s`` and a
``[H, W]`` grid, the anchors at grid cell (i, j) are the level's *cell anchors* shifted by
``((j + offset) * s, (i + offset) * s)``. The flattened order is (row, column, cell anchor), which
is the order the heads' prediction tensors are flattened in (``[N, H*W*A]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from detzoo.config import Recordable


def _per_level(values: Sequence, num_levels: int, what: str) -> list[list[float]]:
    """Broadcasts ``[[...]]`` (one list for all levels) or ``[[...], [...], ...]`` (one per level)."""
    values = [list(v) if isinstance(v, (list, tuple)) else [v] for v in values]
    if len(values) == 1:
        return values * num_levels
    if len(values) != num_levels:
        raise ValueError(
            f"anchor {what} has {len(values)} entries but there are {num_levels} feature levels; "
            f"give one list for all levels or one per level"
        )
    return values


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> torch.Tensor:
    """Anchors centred at (0, 0): ``[len(sizes) * len(aspect_ratios), 4]`` XYXY, size-major order.

    An anchor of size ``s`` and aspect ratio ``r = h / w`` has area ``s**2``.
    """
    anchors = []
    for size in sizes:
        area = float(size) ** 2
        for ratio in aspect_ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


class AnchorGenerator(Recordable, nn.Module):
    """Anchors for every level of a feature pyramid.

    Args:
        sizes: anchor sizes (sqrt of area, input pixels), one list for all levels or one per level,
            e.g. ``[[32], [64], [128], [256], [512]]`` for an FPN RPN.
        aspect_ratios: ratios ``h / w``, one list for all levels or one per level.
        strides: the stride (input pixels per feature cell) of each level.
        offset: where the anchor centre sits in a cell, in units of the stride (0.0 = top-left
            corner as Detectron2's default; 0.5 = cell centre).
    """

    def __init__(
        self,
        sizes: Sequence,
        aspect_ratios: Sequence,
        strides: Sequence[int],
        offset: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"anchor offset must be in [0, 1), got {offset}")
        self.strides = [int(s) for s in strides]
        self.offset = float(offset)
        levels = len(self.strides)
        sizes = _per_level(sizes, levels, "sizes")
        ratios = _per_level(aspect_ratios, levels, "aspect_ratios")
        for i, (s, r) in enumerate(zip(sizes, ratios)):
            self.register_buffer(f"cell_anchors_{i}", cell_anchors(s, r), persistent=False)
        self.num_levels = levels

    @property
    def num_anchors_per_cell(self) -> list[int]:
        """A, the number of anchors per grid cell, for each level."""
        return [len(self._cell(i)) for i in range(self.num_levels)]

    def _cell(self, level: int) -> torch.Tensor:
        return getattr(self, f"cell_anchors_{level}")

    def grid_anchors(self, grid_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Anchors ``[H_l * W_l * A_l, 4]`` (float32, input pixels) for each level's ``(H_l, W_l)``."""
        if len(grid_sizes) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} feature levels, got {len(grid_sizes)}")
        out = []
        for level, ((h, w), stride) in enumerate(zip(grid_sizes, self.strides)):
            base = self._cell(level)
            xs = torch.arange(
                self.offset * stride,
                w * stride,
                step=stride,
                dtype=torch.float32,
                device=base.device,
            )
            ys = torch.arange(
                self.offset * stride,
                h * stride,
                step=stride,
                dtype=torch.float32,
                device=base.device,
            )
            shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return out

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Anchors for feature maps ``[N, C, H_l, W_l]``: one ``[H_l * W_l * A_l, 4]`` per level."""
        return self.grid_anchors([tuple(f.shape[-2:]) for f in features])
