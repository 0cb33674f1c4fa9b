import json
import math
from pathlib import Path

import pytest
import torch

from detzoo.data import LvisDetection
from detzoo.evaluation import LVISEvaluator

from ..data.tiny_coco import write_image

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
        "neg_labels": torch.tensor(neg, dtype=torch.int64),
        "not_exhaustive_labels": list(not_exhaustive),
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


# ---- an LVIS dataset on disk, its targets fed straight into the evaluator ---------------------
# category ids 5, 9, 13 are the labels 0 (rare), 1 (common), 2 (frequent): the two id spaces differ
LVIS_CATEGORIES = [
    {"id": 5, "name": "square", "frequency": "r"},
    {"id": 9, "name": "blob", "frequency": "c"},
    {"id": 13, "name": "ring", "frequency": "f"},
]
# per image: (name, height, width), its one object (category id, XYWH box), neg_category_ids,
# not_exhaustive_category_ids
LVIS_IMAGES = [
    (("a.png", 40, 60), (5, [10, 10, 20, 15]), [9], []),
    (("b.png", 50, 30), (9, [2, 3, 12, 14]), [], [9]),
    (("c.png", 30, 40), (13, [5, 5, 20, 10]), [5], []),
]


def write_federated_lvis(root: Path) -> Path:
    """An LVIS v1 json of ``LVIS_IMAGES`` (no crowds, as LVIS) and its images under
    ``root/coco/val2017``; returns the json's path."""
    images, annotations = [], []
    for image_id, (
        (name, height, width),
        (category, (x, y, w, h)),
        neg,
        not_exhaustive,
    ) in enumerate(LVIS_IMAGES, start=1):
        images.append(
            {
                "id": image_id,
                "coco_url": f"http://images.cocodataset.org/val2017/{name}",
                "height": height,
                "width": width,
                "neg_category_ids": neg,
                "not_exhaustive_category_ids": not_exhaustive,
            }
        )
        annotations.append(
            {
                "id": 100 + image_id,
                "image_id": image_id,
                "category_id": category,
                "bbox": [x, y, w, h],
                "area": float(w * h),
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            }
        )
        write_image(root / "coco" / "val2017" / name, height, width, seed=image_id)
    path = root / "lvis_v1_val.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": LVIS_CATEGORIES})
    )
    return path


def _box_mask(height: int, width: int, box) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    return mask


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_lvis_dataset_targets_drive_the_federated_rules(tmp_path, iou_type):
    dataset = LvisDetection(tmp_path / "coco", write_federated_lvis(tmp_path))
    targets = [dataset[i][1] for i in range(len(dataset))]
    assert [t["neg_labels"].tolist() for t in targets] == [[1], [], [0]]
    assert [t["not_exhaustive_labels"].tolist() for t in targets] == [[], [1], []]
    # per image: its true positive (the ground truth itself), and a false detection far from
    # every object (XYXY, inside the image) with its label and a score above the true positive's
    far = {0: ([35, 28, 55, 38], 2), 1: ([16, 30, 28, 45], 1), 2: ([28, 18, 38, 28], 0)}
    preds = []
    for i, target in enumerate(targets):
        box, label = far[i]
        height, width = target["masks"].shape[-2:]
        preds.append(
            {
                "boxes": torch.cat([target["boxes"], torch.tensor([box], dtype=torch.float32)]),
                "scores": torch.tensor([0.5, 0.9]),
                "labels": torch.cat([target["labels"], torch.tensor([label])]),
                "masks": torch.stack([target["masks"][0].bool(), _box_mask(height, width, box)]),
            }
        )
    evaluator = LVISEvaluator(dataset.category_frequency, iou_types=(iou_type,))
    evaluator.update(preds, targets)
    r = evaluator.compute()
    # label 0 (rare): image 3 lists it as negative, so its detection there is a false positive
    # above the true positive of image 1: AP 1/2. Label 1 (common): not exhaustive in image 2,
    # its unmatched detection there is ignored: AP 1. Label 2 (frequent): image 1 has neither
    # it nor its negative, so its detection there is dropped: AP 1. Exact boxes: every IoU.
    expected = {"APr": 1 / 2, "APc": 1.0, "APf": 1.0, "AP": 5 / 6, "AP50": 5 / 6, "AP75": 5 / 6}
    assert {k: r[f"{iou_type}/{k}"] for k in expected} == pytest.approx(expected, abs=1e-9)


def test_category_ids_in_targets_are_refused():
    """The LVIS json's id-space keys would be silently compared with labels: refused."""
    preds, targets = _scene()
    targets[0]["neg_category_ids"] = targets[0].pop("neg_labels")
    with pytest.raises(ValueError, match="neg_labels"):
        LVISEvaluator(FREQUENCIES).update(preds[:1], targets[:1])
    with pytest.raises(ValueError, match="labels must be in"):  # a negative label out of range
        LVISEvaluator(FREQUENCIES).update(
            preds[1:2], [{**targets[1], "not_exhaustive_labels": torch.tensor([7])}]
        )
