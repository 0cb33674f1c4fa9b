"""Panoptic quality of Panoptic FPN predictions against detzoo's panoptic targets.

Panoptic FPN names a segment's category as Detectron2 does: the contiguous thing class for
things, the semantic-head channel (``1 + i`` for the i-th stuff class) for stuff. The evaluator
works in one category space: things ``0 .. T-1``, then stuff ``T .. T+S-1``.

Ground truth comes from the evaluation target detzoo's panoptic reader gives
(:class:`detzoo.data.CocoPanoptic`): each instance mask is one thing segment (with its
``iscrowd``); the pixels of each stuff value of ``sem_seg`` outside every instance are one stuff
segment (COCO panoptic has one segment per stuff class and image); everything else is void.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detzoo.data.panoptic import IGNORE_VALUE, THINGS_CHANNEL
from detzoo.evaluation.panoptic import PanopticEvaluator


def panoptic_target(target: Mapping[str, Any], num_things: int) -> dict[str, Any]:
    """``panoptic_seg`` int64 ``[H, W]`` (0 = void) and ``segments_info`` (``id``,
    ``category_id`` in the unified space, ``iscrowd``) from a target's ``masks`` ``[N, H, W]``,
    ``labels`` ``[N]``, optional ``iscrowd`` ``[N]`` and ``sem_seg`` ``[H, W]``."""
    sem_seg = target["sem_seg"]
    panoptic = torch.zeros(sem_seg.shape, dtype=torch.int64)
    segments = []
    masks = target.get("masks")
    labels = target["labels"]
    crowd = target.get("iscrowd", torch.zeros(len(labels), dtype=torch.int64))
    if masks is None and len(labels):
        raise ValueError("panoptic evaluation needs instance 'masks' in every target with objects")
    for k in range(len(labels)):
        segment_id = k + 1
        panoptic[masks[k].cpu().bool()] = segment_id
        segments.append({"id": segment_id, "category_id": int(labels[k]), "iscrowd": int(crowd[k])})
    free = panoptic == 0
    sem_seg = sem_seg.cpu()
    for value in torch.unique(sem_seg).tolist():
        if value in (THINGS_CHANNEL, IGNORE_VALUE):
            continue
        mask = free & (sem_seg == value)
        if not mask.any():
            continue
        segment_id = len(segments) + 1
        panoptic[mask] = segment_id
        segments.append({"id": segment_id, "category_id": num_things + value - 1, "iscrowd": 0})
    return {"panoptic_seg": panoptic, "segments_info": segments}


def unified_segments(segments_info: Sequence[Mapping[str, Any]], num_things: int) -> list[dict]:
    """Panoptic FPN ``segments_info`` with categories in the unified space."""
    return [
        {
            "id": s["id"],
            "category_id": s["category_id"] if s["isthing"] else num_things + s["category_id"] - 1,
        }
        for s in segments_info
    ]


class PanopticFPNEvaluator:
    """PQ/SQ/RQ (all, things, stuff) of Panoptic FPN predictions (``panoptic_seg``,
    ``segments_info``) against panoptic-reader targets (``masks``, ``labels``, ``iscrowd``,
    ``sem_seg``), through :class:`~detzoo.evaluation.PanopticEvaluator` (sums over ranks).

    Args:
        thing_names: the ``T`` thing class names (contiguous order).
        stuff_names: the ``S`` stuff class names (semantic channels ``1..S``).
    """

    def __init__(self, thing_names: Sequence[str], stuff_names: Sequence[str]):
        self.num_things = len(thing_names)
        num_stuff = len(stuff_names)
        self.metric = PanopticEvaluator(
            things=range(self.num_things),
            stuff=range(self.num_things, self.num_things + num_stuff),
            class_names=[*thing_names, *stuff_names],
        )

    def update(self, preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping]) -> None:
        """Adds a batch (prediction and target dicts of the same images, original size)."""
        self.metric.update(
            [
                {
                    "panoptic_seg": p["panoptic_seg"],
                    "segments_info": unified_segments(p["segments_info"], self.num_things),
                }
                for p in preds
            ],
            [panoptic_target(t, self.num_things) for t in targets],
        )

    def reset(self) -> None:
        self.metric.reset()

    def compute(self) -> dict[str, float]:
        """``panoptic_seg/PQ`` ... as :class:`~detzoo.evaluation.PanopticEvaluator` reports."""
        return self.metric.compute()
