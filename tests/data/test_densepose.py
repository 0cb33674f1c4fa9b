import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from detzoo.data import CocoDensePose

from .tiny_coco import base_dataset, write_dataset


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def _densepose_dataset():
    content = base_dataset()
    head = np.zeros((256, 256), bool)
    head[:128] = True
    parts = [[] for _ in range(14)]
    parts[13] = _rle(head)  # coarse part 14 (head) on the top half of the box frame
    content["annotations"][0].update(
        dp_x=[0.0, 128.0, 256.0], dp_y=[0.0, 64.0, 256.0], dp_I=[23, 23, 1],
        dp_U=[0.1, 0.5, 0.9], dp_V=[0.2, 0.6, 1.0], dp_masks=parts,
    )  # fmt: skip
    return content


def test_points_map_from_the_box_frame_to_image_pixels(tmp_path):
    dataset = CocoDensePose(tmp_path / "images", write_dataset(tmp_path, _densepose_dataset()))
    target = dataset[0][1]
    densepose, no_points = target["densepose"]
    assert no_points is None  # the crowd blob has no dp_* fields
    # bbox [10, 10, 20, 15]: x = 10 + dp_x / 256 * 20, y = 10 + dp_y / 256 * 15
    torch.testing.assert_close(densepose["x"], torch.tensor([10.0, 20.0, 30.0]))
    torch.testing.assert_close(densepose["y"], torch.tensor([10.0, 13.75, 25.0]))
    assert densepose["I"].tolist() == [23, 23, 1] and densepose["I"].dtype == torch.int64
    segm = densepose["segm"]
    assert segm.shape == (256, 256) and segm.dtype == torch.uint8
    assert (segm[:128] == 14).all() and (segm[128:] == 0).all()
    torch.testing.assert_close(densepose["segm_box"], torch.tensor([10.0, 10, 30, 25]))


def test_mismatched_point_lists_name_the_annotation(tmp_path):
    content = _densepose_dataset()
    content["annotations"][0]["dp_U"] = [0.1]
    with pytest.raises(ValueError, match="annotation id 10 has dp_\\* lists of different lengths"):
        CocoDensePose(tmp_path / "images", write_dataset(tmp_path, content))
    content = _densepose_dataset()
    content["annotations"][0]["dp_masks"] = []
    with pytest.raises(ValueError, match="annotation id 10 needs dp_masks"):
        CocoDensePose(tmp_path / "images", write_dataset(tmp_path, content))
