"""Assigns each prediction (anchor or proposal) to a ground-truth box, Detectron2's Matcher."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detzoo.config import Recordable


class Matcher(Recordable):
    """Matches predictions to ground truth by a quality matrix (usually IoU).

    Each prediction gets the index of its best ground truth and a label chosen by which interval
    of ``thresholds`` its best quality falls in: with thresholds ``[t1, t2]`` and labels
    ``[l0, l1, l2]``, quality in ``[-inf, t1)`` → ``l0``, ``[t1, t2)`` → ``l1``, ``[t2, inf)`` →
    ``l2``. Labels are 1 (positive), 0 (negative) or -1 (ignored).

    Args:
        thresholds: increasing thresholds, e.g. ``[0.3, 0.7]`` for RPN.
        labels: ``len(thresholds) + 1`` labels, e.g. ``[0, -1, 1]``.
        allow_low_quality_matches: also make positive, for every ground truth, the predictions
            that have its highest quality (ties included), even below the top threshold — so every
            ground truth gets at least one positive (RPN, RetinaNet).
    """

    def __init__(
        self,
        thresholds: Sequence[float],
        labels: Sequence[int],
        allow_low_quality_matches: bool = False,
    ):
        thresholds = [float(t) for t in thresholds]
        if any(a > b for a, b in zip(thresholds[:-1], thresholds[1:])):
            raise ValueError(f"matcher thresholds must be increasing, got {thresholds}")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(
                f"matcher needs len(thresholds) + 1 labels, got {len(labels)} labels "
                f"for {len(thresholds)} thresholds"
            )
        if any(label not in (-1, 0, 1) for label in labels):
            raise ValueError(f"matcher labels must be -1, 0 or 1, got {list(labels)}")
        self.thresholds = [-float("inf"), *thresholds, float("inf")]
        self.labels = [int(label) for label in labels]
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Matches for a quality matrix ``[M ground truth, N predictions]``.

        Returns ``(matches, match_labels)``: int64 ``[N]`` index of the matched ground truth
        (0 where there is none) and int8 ``[N]`` labels.
        """
        if quality.dim() != 2:
            raise ValueError(f"quality matrix must be [M, N], got shape {tuple(quality.shape)}")
        n = quality.shape[1]
        if quality.numel() == 0:
            matches = quality.new_zeros(n, dtype=torch.int64)
            match_labels = quality.new_full((n,), self.labels[0], dtype=torch.int8)
            return matches, match_labels

        matched_vals, matches = quality.max(dim=0)
        match_labels = matches.new_ones(n, dtype=torch.int8)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_range = (matched_vals >= low) & (matched_vals < high)
            match_labels[in_range] = label
        if self.allow_low_quality_matches:
            best_per_gt, _ = quality.max(dim=1)
            _, preds_with_best = torch.nonzero(quality == best_per_gt[:, None], as_tuple=True)
            match_labels[preds_with_best] = 1
        return matches, match_labels
