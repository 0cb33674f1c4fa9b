import json

import cv2
import numpy as np
import pytest
import torch

from detzoo.data import CocoPanoptic

from .tiny_coco import write_image

CATEGORIES = [
    {"id": 1, "name": "circle", "isthing": 1},
    {"id": 3, "name": "square", "isthing": 1},
    {"id": 21, "name": "sky", "isthing": 0},
    {"id": 23, "name": "ground", "isthing": 0},
]


def _write_panoptic(tmp_path, segments_edit=None):
    """One 20 x 30 image: sky on top, ground below, a square (id 301) and a crowd of circles
    (id 302), void in one corner."""
    ids = np.zeros((20, 30), np.int64)
    ids[:10] = 201
    ids[10:] = 202
    ids[2:8, 3:9] = 301
    ids[12:18, 20:28] = 302
    ids[0, 0] = 0
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    (tmp_path / "panoptic").mkdir()
    cv2.imwrite(str(tmp_path / "panoptic" / "x.png"), rgb[..., ::-1])
    write_image(tmp_path / "images" / "x.jpg", 20, 30)
    segments = [
        {"id": 201, "category_id": 21, "iscrowd": 0, "bbox": [0, 0, 30, 10], "area": 299},
        {"id": 202, "category_id": 23, "iscrowd": 0, "bbox": [0, 10, 30, 10], "area": 252},
        {"id": 301, "category_id": 3, "iscrowd": 0, "bbox": [3, 2, 6, 6], "area": 36},
        {"id": 302, "category_id": 1, "iscrowd": 1, "bbox": [20, 12, 8, 6], "area": 48},
    ]
    if segments_edit:
        segments_edit(segments)
    content = {
        "images": [{"id": 7, "file_name": "x.jpg", "height": 20, "width": 30}],
        "annotations": [{"image_id": 7, "file_name": "x.png", "segments_info": segments}],
        "categories": CATEGORIES,
    }
    path = tmp_path / "panoptic.json"
    path.write_text(json.dumps(content))
    return path


def test_things_merge_into_one_sem_seg_channel(tmp_path):
    path = _write_panoptic(tmp_path)
    dataset = CocoPanoptic(tmp_path / "images", path, tmp_path / "panoptic")
    assert dataset.class_names == ["circle", "square"]
    assert dataset.sem_seg_class_names == ["things", "sky", "ground"]
    image, target = dataset[0]
    sem_seg = target["sem_seg"]
    assert sem_seg.dtype == torch.int64 and sem_seg.shape == (20, 30)
    assert sem_seg[0, 0] == 255 and sem_seg[0, 5] == 1 and sem_seg[15, 5] == 2
    assert (sem_seg[2:8, 3:9] == 0).all() and (sem_seg[12:18, 20:28] == 0).all()
    assert target["labels"].tolist() == [1, 0] and target["iscrowd"].tolist() == [0, 1]
    torch.testing.assert_close(target["boxes"], torch.tensor([[3.0, 2, 9, 8], [20, 12, 28, 18]]))
    assert target["masks"].shape == (2, 20, 30)
    assert target["masks"][0].sum() == 36 and target["masks"][0, 2:8, 3:9].all()


def test_unknown_segment_category_is_rejected(tmp_path):
    path = _write_panoptic(tmp_path, lambda s: s[2].update(category_id=99))
    with pytest.raises(ValueError, match="annotation id 301 has category_id 99"):
        CocoPanoptic(tmp_path / "images", path, tmp_path / "panoptic")


def test_png_of_wrong_size_is_named(tmp_path):
    path = _write_panoptic(tmp_path)
    cv2.imwrite(str(tmp_path / "panoptic" / "x.png"), np.zeros((5, 5, 3), np.uint8))
    dataset = CocoPanoptic(tmp_path / "images", path, tmp_path / "panoptic")
    with pytest.raises(ValueError, match=r"x\.png is 5x5 .* image is 20x30"):
        dataset[0]
