"""detzoo's COCO evaluators give COCOeval's 12 (keypoints: 10) stats to 1e-9.

The scene is built so that recall lands exactly on COCOeval's recall thresholds: one object per
image, and 1, 2, 4, 5 or 10 ground truths per (category, area range), so every recall is a
multiple of 1/10, 1/4 or 1/5. torchmetrics' default thresholds are float32 values (0.1 ->
0.10000000149): with them the precision lookup skips those recall points and AP differs.
"""

import contextlib
import io
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detzoo.evaluation import CocoEvaluator, KeypointEvaluator
from detzoo.evaluation.coco import COCO_STAT_KEYS
from detzoo.evaluation.keypoints import KEYPOINT_STAT_KEYS

SIZE = 160
SIDES = {"small": 20, "medium": 50, "large": 120}  # areas 400, 2500, 14400 px²
COUNTS = {  # ground truths per (category, area range)
    (0, "small"): 10,
    (0, "medium"): 5,
    (0, "large"): 4,
    (1, "small"): 2,
    (1, "medium"): 1,
    (1, "large"): 5,
}
OKS_SIGMAS = [0.05, 0.08, 0.1]


def _rect_mask(box: list[float]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[y0:y1, x0:x1] = 1
    return mask


def _keypoints(box: list[float], rng: np.random.Generator, noise: float) -> np.ndarray:
    """Three keypoints at fixed fractions of the box, moved by ``noise`` × the box side."""
    x0, y0, x1, y1 = box
    side = x1 - x0
    points = np.array([[0.3, 0.3], [0.7, 0.4], [0.5, 0.8]]) * side + [x0, y0]
    points = points + rng.normal(0.0, noise * side, points.shape)
    return np.concatenate([points, np.full((3, 1), 2.0)], axis=1)


def _scene(seed: int) -> tuple[list[dict], list[dict]]:
    """(targets, predictions) in detzoo's format: one object per image, exact, shifted or missed
    detections, false positives, all with distinct scores."""
    rng = np.random.default_rng(seed)
    targets, preds = [], []
    scores = iter(rng.permutation(np.linspace(0.05, 0.95, 400)))
    for (label, size), count in COUNTS.items():
        side = SIDES[size]
        for _ in range(count):
            x0, y0 = (float(v) for v in rng.integers(0, SIZE - side, 2))
            gt_box = [x0, y0, x0 + side, y0 + side]
            targets.append({"box": gt_box, "label": label, "kpts": _keypoints(gt_box, rng, 0.0)})
            dets = []
            outcome = rng.choice(["exact", "shifted", "loose", "missed"], p=[0.4, 0.25, 0.15, 0.2])
            if outcome != "missed":
                shift = {"exact": 0, "shifted": round(0.1 * side), "loose": round(0.3 * side)}
                dx = float(shift[outcome])
                det = [x0 + dx, y0, min(x0 + dx + side, SIZE), y0 + side]
                dets.append((det, label, rng.uniform(0.0, 0.15)))
            for _ in range(int(rng.integers(0, 3))):  # false positives, any class
                fx, fy = (float(v) for v in rng.integers(0, SIZE - 30, 2))
                fs = float(rng.integers(8, 30))
                dets.append(([fx, fy, fx + fs, fy + fs], int(rng.integers(0, 2)), 0.3))
            preds.append(
                [(box, lab, next(scores), _keypoints(box, rng, noise)) for box, lab, noise in dets]
            )
    return targets, preds


def _detzoo_inputs(targets: list[dict], preds: list[list]) -> tuple[list[dict], list[dict]]:
    tm_targets = [
        {
            "boxes": torch.tensor([t["box"]]),
            "labels": torch.tensor([t["label"]]),
            "iscrowd": torch.tensor([0]),
            "area": torch.tensor([float(_rect_mask(t["box"]).sum())]),
            "masks": torch.from_numpy(_rect_mask(t["box"])[None]),
            "keypoints": torch.from_numpy(t["kpts"][None]).float(),
        }
        for t in targets
    ]
    tm_preds = [
        {
            "boxes": torch.tensor([d[0] for d in dets]).reshape(-1, 4),
            "scores": torch.tensor([d[2] for d in dets], dtype=torch.float32),
            "labels": torch.tensor([d[1] for d in dets], dtype=torch.int64),
            "masks": torch.from_numpy(
                np.stack([_rect_mask(d[0]) for d in dets])
                if dets
                else np.zeros((0, SIZE, SIZE), np.uint8)
            ).bool(),
            "keypoints": torch.from_numpy(
                np.stack([d[3] for d in dets]) if dets else np.zeros((0, 3, 3))
            ).float(),
        }
        for dets in preds
    ]
    return tm_targets, tm_preds


def _xywh(box: list[float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _cocoeval_stats(targets: list[dict], preds: list[list], iou_type: str) -> list[float]:
    """COCOeval's stats on json records written from the same scene (float32 scores, as detzoo's)."""
    gt_json = {
        "images": [{"id": i, "height": SIZE, "width": SIZE} for i in range(len(targets))],
        "categories": [{"id": c, "name": str(c)} for c in (0, 1)],
        "annotations": [
            {
                "id": i + 1,
                "image_id": i,
                "category_id": t["label"],
                "bbox": _xywh(t["box"]),
                "area": float(_rect_mask(t["box"]).sum()),
                "iscrowd": 0,
                "segmentation": {
                    k: (v.decode() if k == "counts" else v)
                    for k, v in mask_util.encode(np.asfortranarray(_rect_mask(t["box"]))).items()
                },
                "keypoints": t["kpts"].reshape(-1).tolist(),
                "num_keypoints": 3,
            }
            for i, t in enumerate(targets)
        ],
    }
    results = []
    for image_id, dets in enumerate(preds):
        for box, label, score, kpts in dets:
            record = {
                "image_id": image_id,
                "category_id": label,
                "bbox": _xywh(box),
                "score": float(np.float32(score)),
            }
            if iou_type == "segm":
                rle = mask_util.encode(np.asfortranarray(_rect_mask(box)))
                record["segmentation"] = {**rle, "counts": rle["counts"].decode()}
            if iou_type == "keypoints":
                record["keypoints"] = kpts.astype(np.float32).reshape(-1).tolist()
            results.append(record)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_json
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iouType=iou_type)
        if iou_type == "keypoints":
            ev.params.kpt_oks_sigmas = np.array(OKS_SIGMAS)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def _assert_stats(results: dict[str, float], prefix: str, names: list[str], expected: list[float]):
    assert len(expected) == len(names)
    for name, value in zip(names, expected):
        key = f"{prefix}/{name}"
        if value < 0:  # COCOeval's -1: no ground truth in that range
            assert math.isnan(results[key]), key
        else:
            assert results[key] == pytest.approx(value, abs=1e-9, rel=0), key


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_coco_evaluator_gives_cocoevals_12_stats(backend, seed):
    targets, preds = _scene(seed)
    tm_targets, tm_preds = _detzoo_inputs(targets, preds)
    evaluator = CocoEvaluator(("bbox", "segm"), backend=backend)
    evaluator.update(tm_preds, tm_targets)
    results = evaluator.compute()
    for iou_type in ("bbox", "segm"):
        _assert_stats(results, iou_type, COCO_STAT_KEYS, _cocoeval_stats(targets, preds, iou_type))
    # recall lands on the thresholds and precision varies: the scene is not degenerate
    assert 0.1 < results["bbox/AP"] < 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keypoint_evaluator_gives_cocoevals_10_stats(seed):
    targets, preds = _scene(seed)
    tm_targets, tm_preds = _detzoo_inputs(targets, preds)
    evaluator = KeypointEvaluator(oks_sigmas=OKS_SIGMAS)
    evaluator.update(tm_preds, tm_targets)
    results = evaluator.compute()
    _assert_stats(
        results, "keypoints", KEYPOINT_STAT_KEYS, _cocoeval_stats(targets, preds, "keypoints")
    )
