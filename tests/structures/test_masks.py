import numpy as np
import pytest

from detzoo.structures import bitmap_to_box, segmentation_to_bitmap, segmentations_to_bitmaps
from tests.data.tiny_coco import blob_mask, uncompressed_rle


def test_polygon_fills_its_rectangle():
    mask = segmentation_to_bitmap([[10, 10, 30, 10, 30, 25, 10, 25]], 40, 60)
    assert mask.dtype == np.uint8 and mask.shape == (40, 60)
    np.testing.assert_allclose(bitmap_to_box(mask), [10, 10, 30, 25], atol=1)
    assert abs(int(mask.sum()) - 300) <= 40  # pycocotools' rasterization of a 20 x 15 box


def test_uncompressed_and_compressed_rle_decode_exactly():
    blob = blob_mask()
    decoded = segmentation_to_bitmap(uncompressed_rle(blob), 40, 60)
    np.testing.assert_array_equal(decoded, blob)
    assert bitmap_to_box(decoded).tolist() == [40, 20, 55, 36]


def test_stack_of_zero_and_bad_type():
    assert segmentations_to_bitmaps([], 4, 5).shape == (0, 4, 5)
    with pytest.raises(ValueError, match="polygons or an RLE"):
        segmentation_to_bitmap("nope", 4, 5)
    assert bitmap_to_box(np.zeros((3, 3))).tolist() == [0, 0, 0, 0]
