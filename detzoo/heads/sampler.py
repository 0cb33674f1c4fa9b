"""Balanced positive/negative sampling of labelled predictions (Detectron2's subsample_labels)."""

from __future__ import annotations

import torch


def subsample_labels(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws at most ``num_samples`` predictions, at most ``positive_fraction`` of them positive.

    Args:
        labels: int ``[N]``; ``-1`` ignored, ``bg_label`` negative, anything else positive.
        num_samples: total number to draw; negatives fill what positives leave.
        positive_fraction: the largest share of positives.
        bg_label: the label that marks negatives.

    Returns:
        ``(pos_idx, neg_idx)``: int64 indices into ``labels`` of the sampled positives and negatives
        (random order; uses the global torch RNG).
    """
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    positive = torch.nonzero((labels != -1) & (labels != bg_label), as_tuple=True)[0]
    negative = torch.nonzero(labels == bg_label, as_tuple=True)[0]
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    pos_idx = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
    neg_idx = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
    return pos_idx, neg_idx
