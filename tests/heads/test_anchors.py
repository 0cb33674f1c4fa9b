import math

import pytest
import torch

from detzoo.heads.anchors import AnchorGenerator, cell_anchors


def test_cell_anchors_hand_computed():
    a = cell_anchors([32], [0.5, 1.0, 2.0])
    w_half = math.sqrt(1024 / 0.5) / 2  # ratio h/w = 0.5: wide anchor of area 32^2
    expected = torch.tensor(
        [
            [-w_half, -w_half * 0.5, w_half, w_half * 0.5],
            [-16.0, -16.0, 16.0, 16.0],
            [-w_half * 0.5, -w_half, w_half * 0.5, w_half],
        ]
    )
    torch.testing.assert_close(a, expected)
    areas = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    torch.testing.assert_close(areas, torch.full((3,), 1024.0))


def test_cell_anchors_are_size_major():
    a = cell_anchors([16, 32], [1.0, 2.0])
    widths = a[:, 2] - a[:, 0]
    torch.testing.assert_close(widths[:2], torch.tensor([16.0, 16 / math.sqrt(2)]))
    torch.testing.assert_close(widths[2:], torch.tensor([32.0, 32 / math.sqrt(2)]))


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_grid_anchors_positions(offset):
    gen = AnchorGenerator(
        sizes=[[32], [64]], aspect_ratios=[[1.0, 2.0]], strides=[4, 8], offset=offset
    )
    feats = [torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 2)]
    level0, level1 = gen(feats)
    assert level0.shape == (2 * 3 * 2, 4) and level1.shape == (1 * 2 * 2, 4)
    assert gen.num_anchors_per_cell == [2, 2]
    # cell (row 1, column 2) of level 0, first cell anchor (size 32, ratio 1)
    cx, cy = (2 + offset) * 4, (1 + offset) * 4
    torch.testing.assert_close(
        level0[(1 * 3 + 2) * 2], torch.tensor([cx - 16, cy - 16, cx + 16, cy + 16])
    )
    # level 1, column 1, second cell anchor (size 64, ratio 2 -> tall)
    cx, cy = (1 + offset) * 8, offset * 8
    w = 64 / math.sqrt(2)
    torch.testing.assert_close(
        level1[1 * 2 + 1], torch.tensor([cx - w / 2, cy - w, cx + w / 2, cy + w])
    )


def test_per_level_lists_must_match_levels():
    with pytest.raises(ValueError, match="3 feature levels"):
        AnchorGenerator(sizes=[[32], [64]], aspect_ratios=[[1.0]], strides=[4, 8, 16])
    with pytest.raises(ValueError, match="offset"):
        AnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[4], offset=1.0)
