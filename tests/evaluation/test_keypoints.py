import contextlib
import io
import math

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detzoo.evaluation import COCO_PERSON_OKS_SIGMAS, KeypointEvaluator

SIGMAS = (0.05, 0.08, 0.1, 0.12)
# per image: ground truth (box xyxy, keypoints [(x, y, v)], area, iscrowd)
GT = [
    [
        ((10, 10, 60, 90), [(20, 20, 2), (40, 30, 2), (30, 60, 1), (35, 85, 2)], 3000.0, 0),
        ((70, 10, 100, 50), [(75, 15, 2), (90, 20, 0), (80, 40, 2), (0, 0, 0)], 900.0, 0),
        ((0, 100, 120, 128), [(0, 0, 0)] * 4, 2500.0, 1),  # crowd
    ],
    [
        ((5, 5, 105, 105), [(20, 30, 2), (60, 30, 2), (40, 70, 2), (50, 95, 1)], 9000.0, 0),
        ((10, 10, 20, 20), [(0, 0, 0)] * 4, 80.0, 0),  # no visible keypoint: ignored
        (
            (110, 5, 126, 40),
            [(115, 10, 2), (120, 20, 2), (118, 30, 2), (0, 0, 0)],
            400.0,
            0,
        ),  # missed
    ],
]
# per image: predictions (box xyxy, score, keypoints [(x, y, score)])
PREDS = [
    [
        ((12, 11, 61, 92), 0.9, [(21, 21, 1), (42, 31, 1), (30, 64, 1), (36, 86, 1)]),
        ((71, 12, 99, 48), 0.8, [(78, 17, 1), (10, 10, 1), (80, 42, 1), (50, 50, 1)]),
        ((5, 102, 40, 126), 0.7, [(10, 110, 1), (20, 110, 1), (30, 110, 1), (35, 120, 1)]),
    ],
    [
        ((6, 4, 106, 104), 0.95, [(24, 30, 1), (60, 36, 1), (40, 70, 1), (53, 95, 1)]),
        (
            (40, 40, 90, 90),
            0.6,
            [(50, 50, 1), (60, 60, 1), (70, 70, 1), (80, 80, 1)],
        ),  # false positive
    ],
]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([g[0] for g in image], dtype=torch.float32),
            "labels": torch.zeros(len(image), dtype=torch.int64),
            "keypoints": torch.tensor([g[1] for g in image], dtype=torch.float32),
            "area": torch.tensor([g[2] for g in image]),
            "iscrowd": torch.tensor([g[3] for g in image]),
        }
        for image in GT
    ]


def _preds() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([p[0] for p in image], dtype=torch.float32),
            "scores": torch.tensor([p[1] for p in image]),
            "labels": torch.zeros(len(image), dtype=torch.int64),
            "keypoints": torch.tensor([p[2] for p in image], dtype=torch.float32),
        }
        for image in PREDS
    ]


def gt_annotations(image_ids: list[int], category_id: int) -> list[dict]:
    """The scene's ground truth as COCO keypoint annotations (XYWH boxes, flat keypoints)."""
    annotations = []
    for image_id, image in zip(image_ids, GT):
        for (x0, y0, x1, y1), kpts, area, crowd in image:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": area,
                    "iscrowd": crowd,
                    "keypoints": [c for kp in kpts for c in kp],
                    "num_keypoints": sum(v > 0 for _, _, v in kpts),
                }
            )
    return annotations


def _cocoeval_on_json() -> list[float]:
    """COCOeval on the json a COCO-format keypoint dataset and Detectron2's results would hold."""
    image_ids = [42, 7]  # arbitrary ids, category id 1: the evaluator must not depend on them
    annotations, results = gt_annotations(image_ids, 1), []
    for image_id, image in zip(image_ids, PREDS):
        for (x0, y0, x1, y1), score, kpts in image:
            results.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": score,
                    "keypoints": [c for kp in kpts for c in kp],
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i} for i in image_ids],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iouType="keypoints")
        ev.params.kpt_oks_sigmas = torch.tensor(SIGMAS, dtype=torch.float64).numpy()
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats[:5]]


def test_matches_cocoeval_on_json():
    evaluator = KeypointEvaluator(SIGMAS)
    evaluator.update(_preds()[:1], _targets()[:1])
    evaluator.update(_preds()[1:], _targets()[1:])
    results = evaluator.compute()
    expected = _cocoeval_on_json()
    stats = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
    assert list(results) == [f"keypoints/{k}" for k in stats]
    for value, exp in zip(results.values(), expected):
        if exp < 0:
            assert math.isnan(value)
        else:
            assert value == pytest.approx(exp, abs=1e-6)
    assert 0.1 < results["keypoints/AP"] < 0.9  # neither trivial nor degenerate
    assert results["keypoints/AP50"] > results["keypoints/AP75"]


def test_perfect_predictions_give_ap_one():
    targets = _targets()
    preds = []
    for (
        t
    ) in targets:  # one exact prediction per evaluable (non-crowd, some keypoint visible) object
        keep = (t["iscrowd"] == 0) & (t["keypoints"][:, :, 2] > 0).any(dim=1)
        preds.append(
            {
                "boxes": t["boxes"][keep],
                "scores": torch.linspace(0.9, 0.5, int(keep.sum())),
                "labels": t["labels"][keep],
                "keypoints": t["keypoints"][keep],
            }
        )
    evaluator = KeypointEvaluator(SIGMAS)
    evaluator.update(preds, targets)
    assert evaluator.compute()["keypoints/AP"] == pytest.approx(1.0)


def test_default_sigmas_are_cocos_and_need_k17():
    assert len(COCO_PERSON_OKS_SIGMAS) == 17
    assert COCO_PERSON_OKS_SIGMAS[0] == pytest.approx(0.026)
    assert COCO_PERSON_OKS_SIGMAS[-1] == pytest.approx(0.089)
    with pytest.raises(ValueError, match="pass oks_sigmas"):
        KeypointEvaluator().update(_preds(), _targets())
    with pytest.raises(ValueError, match="4 oks_sigmas"):
        KeypointEvaluator((0.1,) * 4).update(
            [dict(p, keypoints=torch.zeros(len(p["boxes"]), 5, 3)) for p in _preds()], _targets()
        )
    with pytest.raises(ValueError, match="positive"):
        KeypointEvaluator([0.1, -0.1])


def test_no_predictions_and_reset():
    evaluator = KeypointEvaluator(SIGMAS)
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
        "keypoints": torch.zeros(0, 4, 3),
    }
    evaluator.update([empty], _targets()[:1])
    assert all(math.isnan(v) for v in evaluator.compute().values())
    evaluator.reset()
    evaluator.update(_preds(), _targets())
    assert evaluator.compute()["keypoints/AP"] > 0.1
