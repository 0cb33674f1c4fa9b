import math

import pytest
import torch

from detzoo.heads.poolers import ROIPooler, assign_boxes_to_levels
from detzoo.ops import roi_align


def test_level_assignment_hand_computed():
    # sqrt(area): 224 -> canonical level 4; 112 -> 3; 448 -> 5; 10 -> clamped to 2; 2000 -> clamped to 5
    sides = [224.0, 112.0, 448.0, 10.0, 2000.0, 223.0]
    boxes = [torch.tensor([[0.0, 0.0, s, s] for s in sides])]
    levels = assign_boxes_to_levels(
        boxes, min_level=2, max_level=5, canonical_box_size=224, canonical_level=4
    )
    assert levels.tolist() == [2, 1, 3, 0, 3, 1]  # relative to min_level 2


def test_pooler_uses_the_assigned_level():
    torch.manual_seed(0)
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    feats = [torch.randn(2, 3, math.ceil(256 * s), math.ceil(256 * s)) for s in scales]
    boxes = [
        torch.tensor([[10.0, 10.0, 40.0, 50.0], [0.0, 0.0, 250.0, 250.0]]),
        torch.tensor([[5.0, 60.0, 120.0, 180.0]]),
    ]
    pooler = ROIPooler(7, scales, sampling_ratio=0)
    out = pooler(feats, boxes)
    assert out.shape == (3, 3, 7, 7)
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)]
    )
    levels = assign_boxes_to_levels(boxes, 2, 5, 224, 4)
    for i in range(3):
        lvl = int(levels[i])
        expected = roi_align(feats[lvl], rois[i : i + 1], 7, scales[lvl], 0, aligned=True)
        torch.testing.assert_close(out[i : i + 1], expected)


def test_bad_scales():
    with pytest.raises(ValueError, match="1/2\\^k"):
        ROIPooler(7, [1 / 4, 1 / 16], 0)
    with pytest.raises(ValueError, match="pooler_type"):
        ROIPooler(7, [1 / 4], 0, pooler_type="ROIPool")
