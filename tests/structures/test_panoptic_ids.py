import numpy as np

from detzoo.structures.panoptic_ids import id2rgb, rgb2id


def test_id2rgb_by_hand_and_round_trip():
    ids = np.array([[0, 1, 255], [256, 65536 + 2 * 256 + 3, 256**3 - 1]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[0, 2].tolist() == [255, 0, 0] and rgb[1, 0].tolist() == [0, 1, 0]
    assert rgb[1, 1].tolist() == [3, 2, 1] and rgb[1, 2].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(rgb2id(rgb), ids)
