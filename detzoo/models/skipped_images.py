"""The model's account of images a data loader skipped (corrupt files, ``skip_corrupt_images``).

Batches from detzoo's loaders carry the skipped images in ``batch.skipped`` (objects with
``file_name``, ``image_id`` and ``reason``); a plain ``(images, targets)`` tuple has none.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

from detzoo.evaluation.distributed import all_gather_list

_NAMED = 10  # file names listed in the warning; the count covers all


class SkippedImageLog:
    """Collects the skipped images of one epoch (or evaluation run) on this rank."""

    def __init__(self) -> None:
        self._skipped: list[tuple[str, Any, str]] = []

    def add(self, batch: Any) -> None:
        """Record ``batch.skipped`` (if the batch has any)."""
        for item in getattr(batch, "skipped", ()):
            self._skipped.append((item.file_name, item.image_id, item.reason))

    def report(self, stage: str) -> int:
        """Number of images skipped on all ranks since the last report (every rank must call
        this); warns once, naming the files, when there were any. Clears the log."""
        skipped = all_gather_list(self._skipped)
        self._skipped = []
        if skipped:
            listed = "\n".join(
                f"  {name} (image id {image_id}): {reason}"
                for name, image_id, reason in skipped[:_NAMED]
            )
            more = f"\n  ... and {len(skipped) - _NAMED} more" if len(skipped) > _NAMED else ""
            rank_zero_warn(
                f"{stage}: skipped {len(skipped)} image(s) whose files are corrupt:\n{listed}{more}"
            )
        return len(skipped)
