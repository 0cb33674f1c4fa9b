"""Tiny COCO-format datasets written into a test's tmp_path (images are lossless PNGs)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CATEGORIES = [{"id": 5, "name": "square"}, {"id": 9, "name": "blob"}]


def write_image(path: Path, height: int, width: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (``counts`` a list, column-major runs starting with zeros)."""
    flat = np.asfortranarray(mask).reshape(-1, order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]]))
    counts = ([0] if flat[0] else []) + runs.tolist()
    return {"size": list(mask.shape), "counts": counts}


def blob_mask(height: int = 40, width: int = 60) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[20:36, 40:55] = 1
    return mask


def base_dataset() -> dict:
    """Image 1 (40x60): a polygon square (label 0) and an RLE crowd blob (label 1); image 2
    (50x30): no objects; image 3 (30x40): a crowd region only."""
    blob = blob_mask()
    crowd = np.zeros((30, 40), np.uint8)
    crowd[5:15, 5:25] = 1
    crowd_rle = mask_utils.encode(np.asfortranarray(crowd))  # compressed RLE, json-ready below
    crowd_rle["counts"] = crowd_rle["counts"].decode()
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 40, "width": 60},
            {"id": 2, "file_name": "b.png", "height": 50, "width": 30},
            {"id": 3, "file_name": "c.png", "height": 30, "width": 40},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 5,
                "bbox": [10, 10, 20, 15],
                "area": 300.0,
                "iscrowd": 0,
                "segmentation": [[10, 10, 30, 10, 30, 25, 10, 25]],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 9,
                "bbox": [40, 20, 15, 16],
                "area": float(blob.sum()),
                "iscrowd": 1,
                "segmentation": uncompressed_rle(blob),
            },
            {
                "id": 12,
                "image_id": 3,
                "category_id": 9,
                "bbox": [5, 5, 20, 10],
                "area": 200.0,
                "iscrowd": 1,
                "segmentation": crowd_rle,
            },
        ],
        "categories": copy.deepcopy(CATEGORIES),
    }


def write_dataset(root: Path, dataset: dict | None = None, name: str = "instances.json") -> Path:
    """Write ``dataset`` (default :func:`base_dataset`) and its images under ``root``; returns the
    json path. Images go to ``root/images``."""
    dataset = base_dataset() if dataset is None else dataset
    for index, image in enumerate(dataset["images"]):
        write_image(root / "images" / image["file_name"], image["height"], image["width"], index)
    path = root / name
    path.write_text(json.dumps(dataset))
    return path
