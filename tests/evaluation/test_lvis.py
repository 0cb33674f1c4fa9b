import math

import pytest
import torch

from detzoo.evaluation import LVISEvaluator

FREQUENCIES = ["r", "c", "f"]  # label 0 rare, 1 common, 2 frequent
A = [0.0, 0.0, 20.0, 20.0]  # small (400 px²)
B = [0.0, 0.0, 50.0, 50.0]  # medium (2500 px²)
C = [0.0, 0.0, 100.0, 100.0]  # large (10000 px²)
FAR_B = [100.0, 100.0, 150.0, 150.0]  # medium, overlapping nothing
FAR_C = [100.0, 100.0, 200.0, 200.0]  # large, overlapping nothing


def _image(gt, dets, neg=(), not_exhaustive=()):
    masks = torch.zeros(len(gt), 200, 200, dtype=torch.uint8)
    pred_masks = torch.zeros(len(dets), 200, 200, dtype=torch.bool)
    for m, (box, _) in zip(masks, gt):
        m[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])] = 1
    for m, (box, _, _) in zip(pred_masks, dets):
        m[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])] = True
    target = {
        "boxes": torch.tensor([g[0] for g in gt]).reshape(-1, 4),
        "labels": torch.tensor([g[1] for g in gt], dtype=torch.int64),
        "masks": masks,
        "neg_category_ids": torch.tensor(neg, dtype=torch.int64),
        "not_exhaustive_category_ids": list(not_exhaustive),
    }
    pred = {
        "boxes": torch.tensor([d[0] for d in dets]).reshape(-1, 4),
        "scores": torch.tensor([d[1] for d in dets]),
        "labels": torch.tensor([d[2] for d in dets], dtype=torch.int64),
        "masks": pred_masks,
    }
    return pred, target


def _scene(not_exhaustive: bool = True):
    images = [
        # label 0 found; label 1 is known absent (neg): its detection is a false positive;
        # label 2 is unknown here: its top-scoring detection is dropped
        _image([(A, 0)], [(A, 0.9, 0), (FAR_B, 0.8, 1), (FAR_C, 0.95, 2)], neg=[1]),
        # label 1 not exhaustively annotated: its unmatched detection is ignored
        _image(
            [(B, 1)], [(FAR_B, 0.85, 1), (B, 0.7, 1)], not_exhaustive=[1] if not_exhaustive else []
        ),
        # label 2: a false positive above the true positive
        _image([(C, 2)], [(FAR_C, 0.65, 2), (C, 0.6, 2)]),
    ]
    return [p for p, _ in images], [t for _, t in images]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_federated_rules_hand_computed(iou_type):
    evaluator = LVISEvaluator(FREQUENCIES, iou_types=(iou_type,), class_names=["cat", "dog", "cow"])
    evaluator.update(*_scene())
    r = evaluator.compute()
    # per label, detections by score: 0: TP -> AP 1; 1: ignored, FP, TP -> AP 1/2;
    # 2: FP, TP -> AP 1/2 (exact boxes: the same at every IoU threshold)
    for key, value in {
        "AP": 2 / 3,
        "AP50": 2 / 3,
        "AP75": 2 / 3,
        "APr": 1,
        "APc": 1 / 2,
        "APf": 1 / 2,
    }.items():
        assert r[f"{iou_type}/{key}"] == pytest.approx(value, abs=1e-9), key
    assert (r[f"{iou_type}/APs"], r[f"{iou_type}/APm"], r[f"{iou_type}/APl"]) == pytest.approx(
        (1, 1 / 2, 1 / 2)
    )
    assert r[f"{iou_type}/AP-dog"] == pytest.approx(1 / 2)


def test_not_exhaustive_and_max_dets():
    strict = LVISEvaluator(FREQUENCIES)
    strict.update(*_scene(not_exhaustive=False))
    assert strict.compute()["bbox/APc"] == pytest.approx(1 / 3)  # FP, FP, TP
    capped = LVISEvaluator(FREQUENCIES, max_dets_per_image=2)  # image 0 keeps scores 0.95, 0.9
    capped.update(*_scene())
    assert capped.compute()["bbox/APc"] == pytest.approx(1.0)  # ignored, TP


def test_empty_reset_and_bad_input():
    evaluator = LVISEvaluator(FREQUENCIES)
    preds, targets = _scene()
    evaluator.update([{k: v[:0] for k, v in preds[0].items()}], targets[:1])
    assert math.isnan(evaluator.compute()["bbox/AP"])
    evaluator.reset()
    evaluator.update(preds, targets)
    assert evaluator.compute()["bbox/AP"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="frequencies"):
        LVISEvaluator(["x"])
    with pytest.raises(ValueError, match="labels must be in"):
        LVISEvaluator(["r"]).update(preds[:1], targets[:1])
    with pytest.raises(ValueError, match="masks"):
        LVISEvaluator(FREQUENCIES, iou_types=("segm",)).update(
            [{k: v for k, v in preds[0].items() if k != "masks"}], targets[:1]
        )
