import json

import cv2
import numpy as np
import pytest
import torch

from detzoo.data import CocoDetection
from detzoo.structures import bitmap_to_box

from .tiny_coco import base_dataset, blob_mask, write_dataset


@pytest.fixture
def dataset(tmp_path):
    return CocoDetection(tmp_path / "images", write_dataset(tmp_path))


def test_instances_targets_follow_the_contract(dataset, tmp_path):
    assert dataset.class_names == ["square", "blob"]
    assert dataset.thing_dataset_id_to_contiguous_id == {5: 0, 9: 1}
    assert len(dataset) == 3
    image, target = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 40, 60)
    on_disk = cv2.cvtColor(cv2.imread(str(tmp_path / "images" / "a.png")), cv2.COLOR_BGR2RGB)
    assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(on_disk))  # RGB order
    assert target["boxes"].dtype == torch.float32
    torch.testing.assert_close(
        target["boxes"], torch.tensor([[10.0, 10, 30, 25], [40, 20, 55, 36]])
    )
    assert target["labels"].tolist() == [0, 1] and target["labels"].dtype == torch.int64
    assert target["iscrowd"].tolist() == [0, 1]
    torch.testing.assert_close(target["area"], torch.tensor([300.0, float(blob_mask().sum())]))
    masks = target["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (2, 40, 60)
    np.testing.assert_array_equal(masks[1].numpy(), blob_mask())
    np.testing.assert_allclose(bitmap_to_box(masks[0].numpy()), [10, 10, 30, 25], atol=1)
    assert target["image_id"] == 1 and target["orig_size"] == (40, 60)
    assert target["file_name"].endswith("a.png")


def test_image_without_objects_has_empty_tensors(dataset):
    image, target = dataset[1]
    assert image.shape == (3, 50, 30)
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (0, 50, 30)


def test_without_masks(tmp_path):
    dataset = CocoDetection(tmp_path / "images", write_dataset(tmp_path), with_masks=False)
    assert "masks" not in dataset[0][1]


def test_empty_and_crowd_only_images_skipped_with_warning_when_filtering(tmp_path):
    path = write_dataset(tmp_path)  # image 1 has objects, 2 none, 3 a crowd region only
    with pytest.warns(UserWarning, match="skipped 2 of 3 images"):
        dataset = CocoDetection(tmp_path / "images", path, filter_empty=True)
    assert [r["image_id"] for r in dataset.records] == [1]
    assert [r["image_id"] for r in CocoDetection(tmp_path / "images", path).records] == [1, 2, 3]


def test_filtering_a_file_without_objects_says_what_to_do(tmp_path):
    content = base_dataset()
    content["annotations"] = [a for a in content["annotations"] if a.get("iscrowd")]
    path = write_dataset(tmp_path, content)
    with pytest.raises(ValueError, match="none of its 3 images has a non-crowd annotation"):
        CocoDetection(tmp_path / "images", path, filter_empty=True)


def test_degenerate_boxes_dropped_with_count(tmp_path):
    content = base_dataset()
    content["annotations"][0]["bbox"] = [10, 10, 0, 15]
    content["annotations"][2]["bbox"] = [5, 5, 20, 0]
    with pytest.warns(UserWarning, match="dropped 2 annotations with zero-area"):
        dataset = CocoDetection(tmp_path / "images", write_dataset(tmp_path, content))
    assert dataset[0][1]["labels"].tolist() == [1]


def _broken(tmp_path, edit):
    content = base_dataset()
    edit(content)
    return write_dataset(tmp_path, content)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["annotations"][1].update(category_id=42),
            r"annotation id 11 .*category_id 42",
        ),
        (
            lambda c: c["annotations"][0].update(bbox=[1, 1, -3, 4]),
            r"annotation id 10 .*negative width",
        ),
        (
            lambda c: c["annotations"][0].update(segmentation=[[1, 1, 5, 5]]),
            r"annotation id 10 has a polygon with 4 coordinates",
        ),
        (
            lambda c: c["annotations"][1]["segmentation"].update(size=[10, 10]),
            r"annotation id 11 has an RLE of size \[10, 10\]",
        ),
        (
            lambda c: c["annotations"][0].update(image_id=77),
            r"annotation id 10 refers to image_id 77",
        ),
    ],
)
def test_bad_annotations_fail_at_construction(tmp_path, edit, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        CocoDetection(tmp_path / "images", path)


def test_missing_image_names_the_file(dataset, tmp_path):
    (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.png"):
        dataset[1]


def test_corrupt_image_names_the_file(dataset, tmp_path):
    (tmp_path / "images" / "b.png").write_bytes(b"not a png at all")
    with pytest.raises(OSError, match=r"b\.png .*cannot be decoded"):
        dataset[1]


def test_size_mismatch_names_file_and_both_sizes(tmp_path):
    path = write_dataset(tmp_path)
    content = json.loads(path.read_text())
    content["images"][1]["height"] = 51
    path.write_text(json.dumps(content))
    dataset = CocoDetection(tmp_path / "images", path)
    with pytest.raises(ValueError, match=r"b\.png is 50x30 .* say 51x30"):
        dataset[1]


def test_missing_or_invalid_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDetection(tmp_path, tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json is not valid json"):
        CocoDetection(tmp_path, tmp_path / "bad.json")
