import json

import pytest
import torch

from detzoo.data import LvisDetection

from .tiny_coco import base_dataset, write_image


def _write_lvis(tmp_path, edit=None):
    """LVIS-style json (images named by coco_url only) and images under coco/train2017/."""
    content = base_dataset()
    for image in content["images"]:
        name = image.pop("file_name")
        image["coco_url"] = f"http://images.cocodataset.org/train2017/{name}"
        image["neg_category_ids"] = [9]
        image["not_exhaustive_category_ids"] = []
        write_image(tmp_path / "coco" / "train2017" / name, image["height"], image["width"])
    content["images"][0]["not_exhaustive_category_ids"] = [5]
    content["categories"][0]["frequency"] = "r"
    content["categories"][1]["frequency"] = "f"
    if edit:
        edit(content)
    path = tmp_path / "lvis_v1_train.json"
    path.write_text(json.dumps(content))
    return path


def test_lvis_reads_coco_url_paths_and_label_lists(tmp_path):
    dataset = LvisDetection(tmp_path / "coco", _write_lvis(tmp_path))
    assert dataset.category_frequency == ["r", "f"]
    image, target = dataset[0]
    assert target["file_name"] == str(tmp_path / "coco" / "train2017" / "a.png")
    assert image.shape == (3, 40, 60)
    assert target["neg_labels"].tolist() == [1] and target["neg_labels"].dtype == torch.int64
    assert target["not_exhaustive_labels"].tolist() == [0]
    assert dataset[1][1]["not_exhaustive_labels"].shape == (0,)


def test_unknown_negative_category_is_rejected(tmp_path):
    path = _write_lvis(tmp_path, lambda c: c["images"][1].update(neg_category_ids=[4]))
    with pytest.raises(ValueError, match=r"image id 2 lists neg_category_ids \[4\]"):
        LvisDetection(tmp_path / "coco", path)
