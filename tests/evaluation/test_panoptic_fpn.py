"""PQ of Panoptic FPN predictions against panoptic-reader targets: the ground-truth segments built
from instance masks and ``sem_seg``, and the unified category space."""

import math

import torch

from detzoo.evaluation import PanopticFPNEvaluator
from detzoo.evaluation.panoptic_fpn import panoptic_target, unified_segments


def _target() -> dict:
    sem = torch.full((6, 8), 1, dtype=torch.int64)  # stuff channel 1 ("sky")
    sem[3:] = 2  # stuff channel 2 ("ground")
    sem[0, 0] = 255  # void
    sem[5, 7] = 0  # a thing pixel outside every instance mask: void
    masks = torch.zeros(2, 6, 8, dtype=torch.uint8)
    masks[0, 1:3, 1:3] = 1
    masks[1, 3:5, 4:7] = 1
    sem[1:3, 1:3] = 0
    sem[3:5, 4:7] = 0
    return {
        "masks": masks,
        "labels": torch.tensor([1, 0]),
        "iscrowd": torch.tensor([0, 1]),
        "sem_seg": sem,
    }


def test_ground_truth_segments_from_instances_and_stuff():
    out = panoptic_target(_target(), num_things=2)
    seg, info = out["panoptic_seg"], out["segments_info"]
    assert info == [
        {"id": 1, "category_id": 1, "iscrowd": 0},
        {"id": 2, "category_id": 0, "iscrowd": 1},
        {"id": 3, "category_id": 2, "iscrowd": 0},  # stuff channel 1 -> 2 things + 0
        {"id": 4, "category_id": 3, "iscrowd": 0},
    ]
    assert int((seg == 1).sum()) == 4 and int((seg == 2).sum()) == 6
    assert seg[0, 0] == 0 and seg[5, 7] == 0
    assert int((seg == 3).sum()) == 3 * 8 - 1 - 4 and int((seg == 4).sum()) == 3 * 8 - 6 - 1


def test_unified_segments_move_stuff_after_the_things():
    info = [
        {"id": 1, "isthing": True, "category_id": 1, "score": 0.9, "instance_id": 0},
        {"id": 2, "isthing": False, "category_id": 1, "area": 10},
    ]
    assert unified_segments(info, num_things=2) == [
        {"id": 1, "category_id": 1},
        {"id": 2, "category_id": 2},
    ]


def test_prediction_equal_to_the_ground_truth_has_pq_one_and_a_missed_stuff_lowers_it():
    target = _target()
    gt = panoptic_target(target, num_things=2)
    things = {1: (True, 1), 2: (True, 0), 3: (False, 1), 4: (False, 2)}
    info = [
        {"id": k, "isthing": t, "category_id": c}
        for k, (t, c) in things.items()
        if k != 2  # the crowd instance is not predicted: no false negative
    ]
    seg = gt["panoptic_seg"].clone().int()
    seg[seg == 2] = 0
    evaluator = PanopticFPNEvaluator(["circle", "square"], ["sky", "ground"])
    evaluator.update([{"panoptic_seg": seg, "segments_info": info}], [target])
    results = evaluator.compute()
    assert results["panoptic_seg/PQ"] == 1.0
    assert math.isnan(results["panoptic_seg/PQ-circle"])  # only a crowd region: not counted
    assert results["panoptic_seg/PQ-sky"] == 1.0
    evaluator.reset()
    seg[seg == 4] = 0  # "ground" not predicted: one false negative
    evaluator.update([{"panoptic_seg": seg, "segments_info": info[:2]}], [target])
    results = evaluator.compute()
    assert results["panoptic_seg/PQ-ground"] == 0.0
    assert math.isclose(results["panoptic_seg/PQ_st"], 0.5)
    assert math.isclose(results["panoptic_seg/PQ_th"], 1.0)
