"""Batch collation: DESIGN.md's ``(list_of_images, list_of_targets)``, nothing stacked (images
differ in size; the model pads them itself)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """``[(image, target), ...]`` -> ``([image, ...], [target, ...])``, in order."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets
