"""A tiny hand-made COCO scene (detections + ground truth) shared by the evaluation tests."""

import numpy as np
import pycocotools.mask as mask_util
import torch

SIZE = 128  # every image is SIZE x SIZE


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _disk(cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r).astype(np.uint8)


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


# (image index, label, mask, iscrowd): large, small, crowd, medium disk, missed medium object
GT = [
    (0, 0, _rect(10, 10, 110, 110), 0),  # large: 100x100
    (0, 1, _rect(112, 100, 126, 120), 0),  # small: 14x20
    (0, 1, _rect(0, 112, 60, 128), 1),  # crowd region of label 1
    (1, 0, _disk(40, 40, 25), 0),  # medium disk
    (1, 1, _rect(80, 80, 120, 125), 0),  # medium, never detected
]
# (image index, label, score, mask); boxes are the masks' extents, except where noted in BOX
DETS = [
    (0, 0, 0.9, _rect(14, 12, 112, 110)),  # good match of the large object
    (0, 1, 0.8, _rect(113, 102, 126, 121)),  # matches the small object
    (0, 1, 0.7, _rect(5, 114, 30, 126)),  # inside the crowd region: ignored
    (0, 0, 0.6, _rect(60, 112, 90, 127)),  # false positive
    (1, 0, 0.85, _disk(43, 38, 23)),  # matches the disk
    (1, 1, 0.3, _rect(2, 70, 30, 100)),  # false positive
    (2, 0, 0.95, _rect(30, 30, 80, 80)),  # top-scoring false positive on an image with no objects
]
NUM_IMAGES = 3
CLASS_NAMES = ["square", "tall"]


def targets() -> list[dict[str, torch.Tensor]]:
    """Ground truth per image in detzoo's target format."""
    out = []
    for image in range(NUM_IMAGES):
        objs = [g for g in GT if g[0] == image]
        masks = np.stack([g[2] for g in objs]) if objs else np.zeros((0, SIZE, SIZE), np.uint8)
        out.append(
            {
                "boxes": torch.tensor([_box(g[2]) for g in objs], dtype=torch.float32).reshape(
                    -1, 4
                ),
                "labels": torch.tensor([g[1] for g in objs], dtype=torch.int64),
                "iscrowd": torch.tensor([g[3] for g in objs], dtype=torch.int64),
                "area": torch.tensor([float(g[2].sum()) for g in objs], dtype=torch.float32),
                "masks": torch.from_numpy(masks),
                "image_id": torch.tensor(image),
            }
        )
    return out


def predictions() -> list[dict[str, torch.Tensor]]:
    """Detections per image in detzoo's prediction format."""
    out = []
    for image in range(NUM_IMAGES):
        dets = [d for d in DETS if d[0] == image]
        out.append(
            {
                "boxes": torch.tensor([_box(d[3]) for d in dets], dtype=torch.float32).reshape(
                    -1, 4
                ),
                "scores": torch.tensor([d[2] for d in dets], dtype=torch.float32),
                "labels": torch.tensor([d[1] for d in dets], dtype=torch.int64),
                "masks": torch.from_numpy(np.stack([d[3] for d in dets])).bool(),
            }
        )
    return out


def _rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def coco_gt_json() -> dict:
    """The same ground truth as an original COCO json would hold (category id = label + 1)."""
    annotations = []
    for ann_id, (image, label, mask, crowd) in enumerate(GT, start=1):
        x0, y0, x1, y1 = _box(mask)
        annotations.append(
            {
                "id": ann_id,
                "image_id": image,
                "category_id": label + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": float(mask.sum()),
                "iscrowd": crowd,
                "segmentation": _rle(mask),
            }
        )
    return {
        "images": [{"id": i, "height": SIZE, "width": SIZE} for i in range(NUM_IMAGES)],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)],
    }


def coco_results(iou_type: str) -> list[dict]:
    """The detections as a COCO results list for ``iou_type`` ("bbox" or "segm")."""
    results = []
    for image, label, score, mask in DETS:
        res = {"image_id": image, "category_id": label + 1, "score": score}
        if iou_type == "bbox":
            x0, y0, x1, y1 = _box(mask)
            res["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        else:
            res["segmentation"] = _rle(mask)
        results.append(res)
    return results
