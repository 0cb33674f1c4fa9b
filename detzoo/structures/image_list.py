"""A batch of differently sized images padded into one tensor (Detectron2's ImageList)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ImageList:
    """``tensor`` ``[N, C, H_pad, W_pad]`` holds the images, each in its top-left corner;
    ``image_sizes`` is each image's unpadded ``(height, width)`` in pixels."""

    tensor: torch.Tensor
    image_sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.image_sizes)

    @staticmethod
    def from_tensors(
        tensors: Sequence[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0
    ) -> ImageList:
        """Pads ``[C, H_i, W_i]`` tensors to a common size, rounded up to a multiple of
        ``size_divisibility`` (e.g. 32 for FPN) when it is > 1, bottom/right with ``pad_value``."""
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one image")
        channels = {t.shape[:-2] for t in tensors}
        if len(channels) != 1:
            raise ValueError(f"images differ in leading dimensions: {sorted(channels)}")
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(h for h, _ in sizes)
        max_w = max(w for _, w in sizes)
        if size_divisibility > 1:
            max_h = -(-max_h // size_divisibility) * size_divisibility
            max_w = -(-max_w // size_divisibility) * size_divisibility
        batch = torch.stack(
            [
                F.pad(t, (0, max_w - t.shape[-1], 0, max_h - t.shape[-2]), value=pad_value)
                for t in tensors
            ]
        )
        return ImageList(batch, sizes)
