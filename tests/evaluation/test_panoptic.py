import math

import pytest
import torch

from detzoo.evaluation import PanopticEvaluator

PERSON, CAR, SKY, GRASS, DOG = range(5)  # things: person, car, dog (never seen); stuff: sky, grass
NAMES = ["person", "car", "sky", "grass", "dog"]


def _image():
    """A 10x10 image. Ground truth: sky rows 0-1 (20 px), person rows 2-5 cols 0-3 (16), car rows
    2-5 cols 5-9 (20), crowd car rows 6-7 cols 5-9 (10), grass rows 8-9 (20), void elsewhere (14)."""
    gt = torch.zeros(10, 10, dtype=torch.int32)
    gt[0:2] = 1
    gt[2:6, 0:4] = 2
    gt[2:6, 5:10] = 3
    gt[6:8, 5:10] = 4
    gt[8:10] = 5
    gt_info = [
        {"id": 1, "category_id": SKY, "iscrowd": 0},
        {"id": 2, "category_id": PERSON, "iscrowd": 0},
        {"id": 3, "category_id": CAR, "iscrowd": 0},
        {"id": 4, "category_id": CAR, "iscrowd": 1},
        {"id": 5, "category_id": GRASS, "iscrowd": 0},
    ]
    pred = torch.zeros(10, 10, dtype=torch.int64)
    pred[0:3] = 10  # sky: 30 px, 20 on gt sky, 1 on void -> IoU 20 / (30 + 20 - 20 - 1) = 20/29
    pred[3:6, 0:5] = (
        11  # person: 15 px, 12 on gt person, 3 on void -> IoU 12 / (15 + 16 - 12 - 3) = 3/4
    )
    pred[3:6, 5:10] = 12  # car: 15 px inside gt car -> IoU 15/20 = 3/4
    pred[6:8, 6:10] = 13  # car on the crowd car region: not a false positive
    pred[6:8, 0:4] = 14  # person on void: not a false positive
    pred[8:10, 0:4] = 15  # grass: IoU 8/20 -> unmatched: a false positive and a false negative
    pred[8:10, 4:10] = 16  # sky on grass: a false positive
    pred_info = [
        {"id": 10, "category_id": SKY, "isthing": False},
        {"id": 11, "category_id": PERSON, "isthing": True},
        {"id": 12, "category_id": CAR, "isthing": True},
        {"id": 13, "category_id": CAR, "isthing": True},
        {"id": 14, "category_id": PERSON, "isthing": True},
        {"id": 15, "category_id": GRASS, "isthing": False},
        {"id": 16, "category_id": SKY, "isthing": False},
    ]
    return {"panoptic_seg": pred, "segments_info": pred_info}, {
        "panoptic_seg": gt,
        "segments_info": gt_info,
    }


def _evaluator() -> PanopticEvaluator:
    return PanopticEvaluator(things=[PERSON, CAR, DOG], stuff=[SKY, GRASS], class_names=NAMES)


def test_hand_computed():
    pred, target = _image()
    evaluator = _evaluator()
    evaluator.update([pred], [target])
    r = evaluator.compute()
    # per category (tp, fp, fn, summed IoU): person (1, 0, 0, 3/4), car (1, 0, 0, 3/4),
    # sky (1, 1, 0, 20/29), grass (0, 1, 1, 0); dog is absent from both and left out
    pq_sky = (20 / 29) / 1.5
    assert r["panoptic_seg/PQ-person"] == pytest.approx(3 / 4)
    assert r["panoptic_seg/PQ-sky"] == pytest.approx(40 / 87)
    assert r["panoptic_seg/SQ-sky"] == pytest.approx(20 / 29)
    assert r["panoptic_seg/RQ-sky"] == pytest.approx(2 / 3)
    assert (r["panoptic_seg/PQ-grass"], r["panoptic_seg/SQ-grass"], r["panoptic_seg/RQ-grass"]) == (
        0,
        0,
        0,
    )
    assert math.isnan(r["panoptic_seg/PQ-dog"])
    assert r["panoptic_seg/PQ"] == pytest.approx((3 / 4 + 3 / 4 + pq_sky + 0) / 4)
    assert r["panoptic_seg/SQ"] == pytest.approx((3 / 4 + 3 / 4 + 20 / 29 + 0) / 4)
    assert r["panoptic_seg/RQ"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    assert r["panoptic_seg/PQ_th"] == pytest.approx(3 / 4)
    assert r["panoptic_seg/SQ_th"] == pytest.approx(3 / 4)
    assert r["panoptic_seg/RQ_th"] == pytest.approx(1)
    assert r["panoptic_seg/PQ_st"] == pytest.approx(20 / 87)
    assert r["panoptic_seg/SQ_st"] == pytest.approx(10 / 29)
    assert r["panoptic_seg/RQ_st"] == pytest.approx(1 / 3)


def test_iou_of_exactly_half_is_not_a_match():
    # gt person on cols 0-1, void elsewhere; pred person on cols 1-2: intersection 2, void 2,
    # IoU = 2 / (4 + 4 - 2 - 2) = 1/2, not > 1/2; void is 2/4 of the prediction, not > 1/2
    gt = torch.tensor([[1, 1, 0, 0]] * 2)
    pred = torch.tensor([[0, 7, 7, 0]] * 2)
    evaluator = _evaluator()
    evaluator.update(
        [{"panoptic_seg": pred, "segments_info": [{"id": 7, "category_id": PERSON}]}],
        [{"panoptic_seg": gt, "segments_info": [{"id": 1, "category_id": PERSON}]}],
    )
    r = evaluator.compute()
    assert (r["panoptic_seg/PQ"], r["panoptic_seg/RQ"]) == (0, 0)
    assert (int(evaluator.fp[PERSON]), int(evaluator.fn[PERSON])) == (1, 1)
    assert math.isnan(r["panoptic_seg/PQ_st"])  # no stuff category counted


def test_accumulates_over_images_and_resets():
    pred, target = _image()
    evaluator = _evaluator()
    evaluator.update([pred, pred], [target, target])
    assert evaluator.compute()["panoptic_seg/PQ-sky"] == pytest.approx(40 / 87)  # (40/29) / 3
    assert int(evaluator.tp.sum()) == 6
    evaluator.reset()
    assert int(evaluator.tp.sum()) == 0


def test_bad_input():
    pred, target = _image()
    with pytest.raises(ValueError, match="both thing and stuff"):
        PanopticEvaluator(things=[0, 1], stuff=[1])
    evaluator = _evaluator()
    with pytest.raises(ValueError, match="differ"):
        evaluator.update([dict(pred, segments_info=pred["segments_info"][:-1])], [target])
    with pytest.raises(ValueError, match="unknown category ids"):
        bad = [dict(s, category_id=9) if s["id"] == 10 else s for s in pred["segments_info"]]
        evaluator.update([dict(pred, segments_info=bad)], [target])
    with pytest.raises(ValueError, match="shapes"):
        evaluator.update([dict(pred, panoptic_seg=pred["panoptic_seg"][:5])], [target])
