"""Batch collation: DESIGN.md's ``(list_of_images, list_of_targets)``, nothing stacked (images
differ in size; the model pads them itself), plus the images a loader skipped."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .skipping import SkippedImage


@dataclass
class DetectionBatch:
    """One batch: ``images`` (``[3, H, W]`` each), their ``targets``, and the images of the batch
    that were skipped because their files are corrupt (``skip_corrupt_images``; they are in
    neither list). It behaves as the ``(images, targets)`` pair of DESIGN.md: ``images, targets
    = batch``, ``batch[1]``, ``len(batch) == 2``. (A dataclass, not a tuple, because Lightning
    rebuilds tuples when it moves a batch to the device, which would drop ``skipped``.)"""

    images: list[torch.Tensor]
    targets: list[dict[str, Any]]
    skipped: list[SkippedImage] = field(default_factory=list)

    def __iter__(self) -> Iterator[list]:
        return iter((self.images, self.targets))

    def __getitem__(self, index: int) -> list:
        return (self.images, self.targets)[index]

    def __len__(self) -> int:
        return 2


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, dict[str, Any]] | SkippedImage],
) -> DetectionBatch:
    """``[(image, target) or SkippedImage, ...]`` -> :class:`DetectionBatch`, in order."""
    samples = [item for item in batch if not isinstance(item, SkippedImage)]
    return DetectionBatch(
        images=[image for image, _ in samples],
        targets=[target for _, target in samples],
        skipped=[item for item in batch if isinstance(item, SkippedImage)],
    )
