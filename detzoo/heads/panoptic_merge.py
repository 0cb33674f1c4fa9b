"""Panoptic FPN's merge of instance and semantic predictions into one panoptic segmentation
(Detectron2's ``combine_semantic_and_instance_outputs``).

Instances are pasted in decreasing score order; one stops the merge once a score is below
``score_thresh``, is skipped when its mask is empty or when more than ``overlap_thresh`` of it is
already taken, and otherwise claims its still-free pixels. Every semantic class except the
"things" channel 0 then claims its free pixels, unless fewer than ``stuff_area_thresh`` remain.
"""

from __future__ import annotations

import torch

from detzoo.data.panoptic import THINGS_CHANNEL


def combine_semantic_and_instance_outputs(
    scores: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    semantic: torch.Tensor,
    overlap_thresh: float = 0.5,
    stuff_area_thresh: int = 4096,
    score_thresh: float = 0.5,
) -> tuple[torch.Tensor, list[dict]]:
    """One image's panoptic segmentation.

    Args:
        scores: float ``[N]`` instance scores.
        labels: int64 ``[N]`` contiguous thing classes.
        masks: bool ``[N, H, W]`` instance masks at the output size.
        semantic: int ``[H, W]`` semantic argmax (0 = things, ``c >= 1`` = stuff channel ``c``).
        overlap_thresh: an instance whose mask is more than this fraction taken is dropped.
        stuff_area_thresh: a stuff class with fewer free pixels than this is left void.
        score_thresh: instances scoring below this are not used.

    Returns:
        ``panoptic_seg`` int32 ``[H, W]`` (segment id per pixel, 0 = void) and ``segments_info``:
        per segment ``{"id", "isthing": True, "score", "category_id": thing class,
        "instance_id": index into the instances}`` or ``{"id", "isthing": False,
        "category_id": semantic channel, "area": pixels}``; ids count from 1 in that order.
    """
    if masks.shape[-2:] != semantic.shape:
        raise ValueError(
            f"instance masks {tuple(masks.shape[-2:])} and the semantic map "
            f"{tuple(semantic.shape)} must have the same size"
        )
    panoptic = torch.zeros(semantic.shape, dtype=torch.int32, device=semantic.device)
    segments: list[dict] = []
    masks = masks.to(device=semantic.device, dtype=torch.bool)
    for index in torch.argsort(-scores).tolist():
        score = scores[index].item()
        if score < score_thresh:
            break
        mask = masks[index]
        area = int(mask.sum())
        if area == 0:
            continue
        taken = int((mask & (panoptic > 0)).sum())
        if taken / area > overlap_thresh:
            continue
        if taken > 0:
            mask = mask & (panoptic == 0)
        segment_id = len(segments) + 1
        panoptic[mask] = segment_id
        segments.append(
            {
                "id": segment_id,
                "isthing": True,
                "score": score,
                "category_id": int(labels[index]),
                "instance_id": index,
            }
        )
    for label in torch.unique(semantic).tolist():
        if label == THINGS_CHANNEL:
            continue
        mask = (semantic == label) & (panoptic == 0)
        area = int(mask.sum())
        if area < stuff_area_thresh:
            continue
        segment_id = len(segments) + 1
        panoptic[mask] = segment_id
        segments.append(
            {"id": segment_id, "isthing": False, "category_id": int(label), "area": area}
        )
    return panoptic, segments


class PanopticMerge:
    """The merge's test-time settings (Detectron2's ``MODEL.PANOPTIC_FPN.COMBINE``), in one object
    so that a model's ``set_test_thresholds(score_thresh=...)`` reaches it.

    Args:
        overlap_thresh: ``COMBINE.OVERLAP_THRESH``.
        stuff_area_thresh: ``COMBINE.STUFF_AREA_LIMIT``, in output pixels.
        score_thresh: ``COMBINE.INSTANCES_CONFIDENCE_THRESH``.
    """

    def __init__(
        self, overlap_thresh: float = 0.5, stuff_area_thresh: int = 4096, score_thresh: float = 0.5
    ):
        self.overlap_thresh = overlap_thresh
        self.stuff_area_thresh = stuff_area_thresh
        self.score_thresh = score_thresh

    def __call__(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor,
        semantic: torch.Tensor,
    ) -> tuple[torch.Tensor, list[dict]]:
        """:func:`combine_semantic_and_instance_outputs` with these settings."""
        return combine_semantic_and_instance_outputs(
            scores,
            labels,
            masks,
            semantic,
            self.overlap_thresh,
            self.stuff_area_thresh,
            self.score_thresh,
        )
