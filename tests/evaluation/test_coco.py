import contextlib
import io
import math

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detzoo.evaluation import CocoEvaluator
from detzoo.evaluation.coco import COCO_STAT_KEYS

from . import scenes

STAT_KEYS = COCO_STAT_KEYS  # COCOeval.stats, in order


def _cocoeval_direct(iou_type: str) -> dict[str, float]:
    """pycocotools COCOeval on the scene's json, reported the way Detectron2 does (per class too)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = scenes.coco_gt_json()
        gt.createIndex()
        dt = gt.loadRes(scenes.coco_results(iou_type))
        ev = COCOeval(gt, dt, iouType=iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = {f"{iou_type}/{k}": float(v) for k, v in zip(STAT_KEYS, ev.stats)}
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    for k, name in enumerate(scenes.CLASS_NAMES):
        p = precision[:, :, k, 0, -1]
        out[f"{iou_type}/AP-{name}"] = float(p[p > -1].mean())
    return out


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_matches_cocoeval_on_json(backend):
    evaluator = CocoEvaluator(("bbox", "segm"), backend=backend, class_names=scenes.CLASS_NAMES)
    preds, targets = scenes.predictions(), scenes.targets()
    evaluator.update(preds[:2], targets[:2])
    evaluator.update(preds[2:], targets[2:])
    results = evaluator.compute()

    expected = {**_cocoeval_direct("bbox"), **_cocoeval_direct("segm")}
    assert set(results) == set(expected)
    for key, value in expected.items():
        if value < 0:  # COCOeval's -1: no ground truth in that range
            assert math.isnan(results[key]), key
        else:
            assert results[key] == pytest.approx(value, abs=1e-6), key
    # the scene is not trivial: misses, false positives and the crowd all matter
    assert 0.2 < results["bbox/AP"] < 0.9
    assert results["bbox/AP"] != results["segm/AP"]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_single_iou_type_keeps_images_without_objects(iou_type):
    """Image 2 has no objects and the top-scoring detection: dropping it would raise AP."""
    evaluator = CocoEvaluator((iou_type,))
    evaluator.update(scenes.predictions(), scenes.targets())
    results = evaluator.compute()
    assert set(results) == {f"{iou_type}/{k}" for k in STAT_KEYS}
    assert results[f"{iou_type}/AP"] == pytest.approx(
        _cocoeval_direct(iou_type)[f"{iou_type}/AP"], abs=1e-6
    )


def test_crowd_and_area_are_passed_through():
    """Without ``iscrowd`` the detection inside the crowd region is a false positive: AP drops."""
    preds, targets = scenes.predictions(), scenes.targets()
    with_crowd = CocoEvaluator(("bbox",))
    with_crowd.update(preds, targets)
    no_crowd = CocoEvaluator(("bbox",))
    no_crowd.update(preds, [{k: v for k, v in t.items() if k != "iscrowd"} for t in targets])
    assert no_crowd.compute()["bbox/AP"] < with_crowd.compute()["bbox/AP"] - 0.01

    # a huge annotation area moves the small object into "large"
    big_area = [dict(t, area=torch.full_like(t["area"], 1e5)) for t in targets]
    moved = CocoEvaluator(("bbox",))
    moved.update(preds, big_area)
    assert math.isnan(moved.compute()["bbox/APs"])
    assert not math.isnan(with_crowd.compute()["bbox/APs"])


def test_reset_and_repeated_compute():
    evaluator = CocoEvaluator(("bbox",))
    preds, targets = scenes.predictions(), scenes.targets()
    evaluator.update(preds, targets)
    first = evaluator.compute()
    assert evaluator.compute() == first
    evaluator.reset()
    evaluator.update(preds[:1], targets[:1])
    assert evaluator.compute()["bbox/AP"] != first["bbox/AP"]


def test_bad_input():
    with pytest.raises(ValueError, match="iou_types"):
        CocoEvaluator(("keypoints",))
    with pytest.raises(ValueError, match="backend"):
        CocoEvaluator(backend="detectron2")
    evaluator = CocoEvaluator(("segm",))
    preds, targets = scenes.predictions(), scenes.targets()
    with pytest.raises(ValueError, match="masks"):
        evaluator.update([{k: v for k, v in preds[0].items() if k != "masks"}], targets[:1])
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        evaluator.update(preds[:2], targets[:1])


def test_per_class_ap_of_a_single_class():
    """One class (keypoint models' person / figure): torchmetrics' per-class tensors are 0-d."""
    evaluator = CocoEvaluator(("bbox",), class_names=["figure"])
    box = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    evaluator.update(
        [{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}],
        [{"boxes": box, "labels": torch.tensor([0])}],
    )
    results = evaluator.compute()
    assert results["bbox/AP"] == pytest.approx(1.0)
    assert results["bbox/AP-figure"] == pytest.approx(1.0)
