"""DensePose charts resampled into boxes (Detectron2's chart-result conversion) and drawn: integer
boxes, constant and linear U/V fields, the part index from fine and coarse segmentation, and the
drawing's pixels."""

import pytest
import torch

from detzoo.structures.densepose import (
    BoxIUV,
    chart_to_box_iuv,
    contour_mask,
    densepose_to_box_iuv,
    draw_densepose,
    int_box_xywh,
    part_palette,
)


def _charts(side: int = 4, part: int = 3):
    """Charts where the coarse segmentation says foreground and the fine one ``part``
    everywhere."""
    coarse = torch.stack([torch.zeros(side, side), torch.ones(side, side)])
    fine = torch.zeros(25, side, side)
    fine[part] = 1.0
    return coarse, fine


def test_int_box_truncates_corner_and_size():
    # (x, y, w, h) = (2.7, 3.2, 5.6, 4.9) truncated: the size is not recomputed from the corners
    assert int_box_xywh(torch.tensor([2.7, 3.2, 8.3, 8.1])) == (2, 3, 5, 4)


def test_constant_field_survives_resampling():
    coarse, fine = _charts()
    u = torch.full((25, 4, 4), 0.25)
    v = torch.full((25, 4, 4), 0.5)
    result = chart_to_box_iuv(coarse, fine, u, v, torch.tensor([10.0, 20.0, 17.0, 25.0]))
    assert result.box_xywh == (10, 20, 7, 5)
    assert result.labels.dtype == torch.uint8 and result.labels.shape == (5, 7)
    assert (result.labels == 3).all()
    assert result.uv.shape == (2, 5, 7) and result.uv.dtype == torch.float32
    torch.testing.assert_close(result.uv[0], torch.full((5, 7), 0.25))
    torch.testing.assert_close(result.uv[1], torch.full((5, 7), 0.5))


def test_linear_field_survives_resampling_into_a_box_and_back():
    # u = (column + 0.5) / 4 on a 4x4 chart: pixel centres of a box twice as large carry
    # (j + 0.5) / 8 (half-pixel bilinear resampling is exact for linear fields away from the
    # border pixels, which repeat the chart's edge values), and resampling the box's map back to
    # 4x4 gives the chart again away from its border
    coarse, fine = _charts()
    ramp = (torch.arange(4.0) + 0.5) / 4
    u = ramp.expand(25, 4, 4).clone()
    v = ramp[:, None].expand(25, 4, 4).clone()
    result = chart_to_box_iuv(coarse, fine, u, v, torch.tensor([0.0, 0.0, 8.0, 8.0]))
    expected = (torch.arange(8.0) + 0.5) / 8
    torch.testing.assert_close(result.uv[0, :, 1:-1], expected[1:-1].expand(8, 6))
    torch.testing.assert_close(result.uv[1, 1:-1, :], expected[1:-1, None].expand(6, 8))
    back = torch.nn.functional.interpolate(
        result.uv[None], (4, 4), mode="bilinear", align_corners=False
    )[0]
    torch.testing.assert_close(back[0, :, 1:-1], u[0, :, 1:-1])
    torch.testing.assert_close(back[1, 1:-1], v[0, 1:-1])


def test_part_index_needs_coarse_foreground():
    # coarse foreground on the left half only; fine part 7 on the top half, 12 on the bottom
    coarse = torch.zeros(2, 4, 4)
    coarse[1, :, :2] = 1.0
    fine = torch.zeros(25, 4, 4)
    fine[7, :2] = 1.0
    fine[12, 2:] = 1.0
    u = torch.arange(25.0)[:, None, None].expand(25, 4, 4) / 100  # u = part / 100
    result = chart_to_box_iuv(coarse, fine, u, u, torch.tensor([0.0, 0.0, 4.0, 4.0]))
    expected = torch.tensor([[7, 7, 0, 0], [7, 7, 0, 0], [12, 12, 0, 0], [12, 12, 0, 0]])
    assert result.labels.tolist() == expected.tolist()
    torch.testing.assert_close(result.uv[0], expected / 100)  # the labelled part's channel, 0 off
    torch.testing.assert_close(result.uv[1], expected / 100)


def test_tiny_boxes_give_one_pixel_maps_and_predictions_convert_per_detection():
    coarse, fine = _charts(part=5)
    u = torch.full((25, 4, 4), 0.5)
    densepose = {
        "coarse_segm": coarse.expand(2, 2, 4, 4),
        "fine_segm": fine.expand(2, 25, 4, 4),
        "u": u.expand(2, 25, 4, 4),
        "v": u.expand(2, 25, 4, 4),
    }
    boxes = torch.tensor([[3.0, 4.0, 3.5, 4.2], [0.0, 0.0, 6.0, 3.0]])
    tiny, wide = densepose_to_box_iuv(densepose, boxes)
    assert tiny.box_xywh == (3, 4, 1, 1) and tiny.labels.tolist() == [[5]]
    assert wide.labels.shape == (3, 6)


def test_palette_and_contours():
    palette = part_palette()
    assert palette.shape == (25, 3) and palette.dtype == torch.uint8
    assert palette[0].tolist() == [0, 0, 0] and len({tuple(c) for c in palette.tolist()}) == 25
    # U crosses 0.5 between columns 1 and 2 (2 levels) on part 1; V is constant; column 3 is
    # another part, so the step from column 2 to 3 is no isoline
    labels = torch.tensor([[1, 1, 1, 2]] * 2)
    uv = torch.stack([torch.tensor([[0.1, 0.4, 0.6, 0.9]] * 2), torch.full((2, 4), 0.2)])
    assert contour_mask(labels, uv, 2).tolist() == [[False, True, False, False]] * 2


def test_drawing_blends_parts_and_draws_isolines():
    image = torch.full((3, 10, 12), 100, dtype=torch.uint8)
    labels = torch.tensor([[0, 1, 1, 1]] * 3, dtype=torch.uint8)
    uv = torch.stack([torch.tensor([[0.0, 0.1, 0.7, 0.8]] * 3), torch.full((3, 4), 0.2)])
    # the box runs past the image's right edge: its last column is cut
    result = BoxIUV(labels, uv, (9, 2, 4, 3))
    out = draw_densepose(image, [result], alpha=0.5, contour_levels=2, contour_color=(0, 0, 255))
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert (out[:, :2] == 100).all() and (out[:, :, :9] == 100).all()  # outside the box
    assert (out[:, 2:5, 9] == 100).all()  # background pixel of the box
    assert out[:, 3, 10].tolist() == [0, 0, 255]  # U crosses 0.5 between columns 10 and 11
    blended = (0.5 * 100 + 0.5 * part_palette()[1].float()).round().to(torch.uint8)
    assert out[:, 3, 11].tolist() == blended.tolist()
    assert (image == 100).all()  # the input is not modified
    with pytest.raises(ValueError, match="RGB uint8"):
        draw_densepose(image.float(), [result])
