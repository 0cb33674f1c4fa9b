import numpy as np
import pytest
import torch

from detzoo.structures import box_area, clip_boxes, nonempty, xywh_to_xyxy, xyxy_to_xywh


def test_xywh_xyxy_round_trip_numpy_and_torch():
    xywh = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 5.0]], np.float32)
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [[1, 2, 4, 6], [0, 0, 0, 5]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), xywh)
    assert xywh[0, 2] == 3.0  # input untouched
    as_torch = xywh_to_xyxy(torch.from_numpy(xywh))
    assert as_torch.dtype == torch.float32
    torch.testing.assert_close(as_torch, torch.from_numpy(xyxy))


def test_clip_area_nonempty():
    boxes = torch.tensor([[-5.0, -1.0, 12.0, 8.0], [3.0, 3.0, 3.0, 9.0], [4.0, 2.0, 2.0, 5.0]])
    clipped = clip_boxes(boxes, height=6, width=10)
    torch.testing.assert_close(clipped[0], torch.tensor([0.0, 0.0, 10.0, 6.0]))
    torch.testing.assert_close(box_area(clipped), torch.tensor([60.0, 0.0, 0.0]))
    assert nonempty(clipped).tolist() == [True, False, False]
    assert nonempty(clipped, threshold=10.0).tolist() == [False, False, False]


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        xywh_to_xyxy(np.zeros((3, 5)))
