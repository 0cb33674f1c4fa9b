"""Panoptic FPN's merge on hand-made cases (Detectron2's ``combine_semantic_and_instance_outputs``)."""

import torch

from detzoo.heads.panoptic_merge import PanopticMerge, combine_semantic_and_instance_outputs


def _masks(h: int, w: int, *rects: tuple[int, int, int, int]) -> torch.Tensor:
    """Bool ``[N, h, w]`` masks, one per ``(y0, y1, x0, x1)`` rectangle."""
    out = torch.zeros(len(rects), h, w, dtype=torch.bool)
    for m, (y0, y1, x0, x1) in zip(out, rects):
        m[y0:y1, x0:x1] = True
    return out


def test_instances_paste_by_score_and_overlap_drops_mostly_covered_ones():
    # A (0.9): 4x4 at the top-left; B (0.8): 4x4 sharing 1 of its 16 pixels with A: keeps its 15
    # free pixels; C (0.7): 4x4 with 13 of 16 pixels (81% > 50%) already taken: dropped.
    masks = _masks(8, 8, (0, 4, 0, 4), (3, 7, 3, 7), (0, 4, 1, 5))
    scores = torch.tensor([0.8, 0.9, 0.7])  # order in the tensor is not the paste order
    masks = masks[[1, 0, 2]]
    labels = torch.tensor([5, 2, 3])
    semantic = torch.zeros(8, 8, dtype=torch.int64)
    seg, info = combine_semantic_and_instance_outputs(scores, labels, masks, semantic, 0.5, 1, 0.5)
    assert [(s["id"], s["category_id"], s["instance_id"]) for s in info] == [(1, 2, 1), (2, 5, 0)]
    assert all(s["isthing"] for s in info)
    assert info[0]["score"] == torch.tensor(0.9).item()
    assert seg.dtype == torch.int32
    assert (seg[0:4, 0:4] == 1).all()
    b_only = masks[0] & ~masks[1]
    assert (seg[b_only] == 2).all() and int(b_only.sum()) == 15
    assert int((seg == 2).sum()) == 15 and int((seg == 0).sum()) == 64 - 16 - 15
    # C at exactly 50% taken is kept (the rule is "more than overlap_thresh")
    masks_half = _masks(8, 8, (0, 4, 0, 4), (0, 4, 2, 6))
    seg, info = combine_semantic_and_instance_outputs(
        torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), masks_half, semantic, 0.5, 1, 0.0
    )
    assert len(info) == 2 and int((seg == 2).sum()) == 8


def test_stuff_fills_free_pixels_above_the_area_limit_and_things_channel_never_does():
    semantic = torch.zeros(10, 10, dtype=torch.int64)
    semantic[:, 5:] = 1  # stuff channel 1: 50 pixels, 10 of them under the instance
    semantic[8:, :5] = 2  # stuff channel 2: 10 pixels, below the limit of 20
    masks = _masks(10, 10, (0, 2, 0, 10))
    seg, info = combine_semantic_and_instance_outputs(
        torch.tensor([0.9]), torch.tensor([4]), masks, semantic, 0.5, 20, 0.5
    )
    assert info[0]["isthing"] and info[0]["category_id"] == 4
    assert info[1] == {"id": 2, "isthing": False, "category_id": 1, "area": 40}
    assert len(info) == 2  # channel 2 (10 px < 20) is void, channel 0 is never stuff
    assert (seg[8:, :5] == 0).all()
    assert (seg[2:8, :5] == 0).all()  # things channel outside every instance: void
    assert (seg[2:, 5:] == 2).all()


def test_instances_below_the_confidence_threshold_and_empty_masks_are_skipped():
    masks = _masks(6, 6, (0, 2, 0, 2), (2, 4, 2, 4), (4, 6, 4, 6))
    masks[1] = False  # empty mask: skipped, takes no id
    scores = torch.tensor([0.9, 0.8, 0.3])
    seg, info = combine_semantic_and_instance_outputs(
        scores, torch.tensor([0, 1, 2]), masks, torch.zeros(6, 6, dtype=torch.int64), 0.5, 1, 0.5
    )
    assert [s["instance_id"] for s in info] == [0]
    assert int((seg > 0).sum()) == 4


def test_merge_object_holds_the_settings():
    merge = PanopticMerge(overlap_thresh=0.5, stuff_area_thresh=4096, score_thresh=0.5)
    merge.score_thresh = 0.2
    masks = _masks(4, 4, (0, 2, 0, 2))
    _, info = merge(torch.tensor([0.3]), torch.tensor([1]), masks, torch.zeros(4, 4).long())
    assert len(info) == 1
