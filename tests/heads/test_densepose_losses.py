"""DensePose training against hand-computed values: where annotated points land on the output grid
and what bilinear interpolation reads there, the coarse-segmentation target resampling, the loss
terms of a crafted annotation and the proposals it trains on."""

import math

import pytest
import torch

from detzoo.heads.densepose_losses import (
    DensePosePoints,
    densepose_chart_losses,
    grid_interpolation,
    pack_densepose_annotations,
    resample_to_boxes,
    select_proposals_with_densepose,
)
from detzoo.heads.roi_sampling import SampledProposals

LOSSES = {"loss_densepose_U", "loss_densepose_V", "loss_densepose_I", "loss_densepose_S"}


def _proposals(boxes, gt_index, gt_boxes=None, gt_classes=None) -> SampledProposals:
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gt_index = torch.tensor(gt_index, dtype=torch.int64)
    classes = torch.zeros_like(gt_index) if gt_classes is None else torch.tensor(gt_classes)
    gt = boxes.clone() if gt_boxes is None else torch.tensor(gt_boxes).reshape(-1, 4)
    return SampledProposals(boxes, classes, gt, gt_index)


def _annotation(x, y, parts, u, v, segm=None, segm_box=None) -> dict:
    out = {
        "x": torch.tensor(x, dtype=torch.float32),
        "y": torch.tensor(y, dtype=torch.float32),
        "I": torch.tensor(parts, dtype=torch.int64),
        "U": torch.tensor(u, dtype=torch.float32),
        "V": torch.tensor(v, dtype=torch.float32),
    }
    if segm is not None:
        out["segm"] = torch.as_tensor(segm, dtype=torch.uint8)
        out["segm_box"] = torch.tensor(segm_box, dtype=torch.float32)
    return out


def test_points_on_the_output_grid():
    # an 8 px interval from 10 on a 4-value grid: value i sits at pixel 10 + 2 i
    coords = torch.tensor([13.0, 10.0, 17.9, 18.0, 9.9])
    lo, hi, weight, inside = grid_interpolation(
        coords, torch.full((5,), 10.0), torch.full((5,), 8.0), 4
    )
    assert lo.tolist() == [1, 0, 3, 3, 0]  # position 1.5, 0, 3.95, 4 (clamped), -0.05 (clamped)
    assert hi.tolist() == [2, 1, 3, 3, 1]  # past the last value, hi = lo = 3
    # (outside points get meaningless weights, as in Detectron2; they are never used)
    torch.testing.assert_close(weight, torch.tensor([0.5, 0.0, 0.0, 0.0, -0.05]))
    assert inside.tolist() == [True, True, True, False, False]  # [start, start + size)


def test_bilinear_reads_of_a_linear_map():
    # ROI 1 is [10, 20, 18, 28] on a 4x4 grid; maps[r, c] = 100 r + 10 c + 4 * row + col, so an
    # interior point reads 100 r + 10 c + 4 * y_position + x_position
    rois = torch.tensor([[0.0, 0.0, 4.0, 4.0], [10.0, 20.0, 18.0, 28.0]])
    grid = torch.arange(4.0)
    maps = (
        100 * torch.arange(2.0)[:, None, None, None]
        + 10 * torch.arange(3.0)[None, :, None, None]
        + 4 * grid[:, None]
        + grid
    )
    xy = torch.tensor([[13.0, 23.0], [11.0, 26.5]])  # positions (1.5, 1.5) and (0.5, 3.25)
    points = DensePosePoints.locate(
        torch.tensor([1, 1]), rois, xy, torch.tensor([2, 1]), torch.zeros(2, 2), 4
    )
    # the second point is past the last row: it reads row 3 only
    torch.testing.assert_close(
        points.interpolate(maps, points.part), torch.tensor([100 + 20 + 6 + 1.5, 110 + 12 + 0.5])
    )
    all_channels = points.interpolate(maps)
    assert all_channels.shape == (2, 3)
    torch.testing.assert_close(all_channels[0], torch.tensor([107.5, 117.5, 127.5]))


def test_coarse_segmentation_targets_follow_detectron2_resampling():
    # output cell j samples the source at normalised j / 4 of the destination box, the source's
    # pixel centres spanning its edges (align_corners): the same box reads source columns
    # round(0, 0.75, 1.5, 2.25) = 0, 1, 2, 2; its right half reads round(1.5, 1.875, 2.25, 2.625)
    maps = torch.arange(16.0).reshape(1, 4, 4)
    src = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    same = resample_to_boxes(maps, src, src, 4)[0]
    assert same[0].tolist() == [0.0, 1.0, 2.0, 2.0]
    assert same[:, 0].tolist() == [0.0, 4.0, 8.0, 8.0]
    right_half = resample_to_boxes(maps, src, torch.tensor([[4.0, 0.0, 8.0, 8.0]]), 4)[0]
    assert right_half[0].tolist() == [2.0, 2.0, 2.0, 3.0]
    # a destination box beyond the source reads 0 (zero padding) outside it
    wider = resample_to_boxes(maps + 1, src, torch.tensor([[0.0, 0.0, 24.0, 8.0]]), 4)[0]
    assert wider[0].tolist() == [1.0, 3.0, 0.0, 0.0]


def _crafted_batch():
    """Two images. Image 0: ROI [10, 20, 18, 28] (4x4 grid of 2 px) with four points: two on
    parts inside, one on background inside, one outside the ROI; its segm (4x4 over the ROI)
    marks the two left columns as part 3. Image 1: an ROI whose ground truth has no points."""
    segm = torch.zeros(4, 4, dtype=torch.uint8)
    segm[:, :2] = 3
    first = _annotation(
        x=[13.0, 11.0, 15.0, 30.0],
        y=[23.0, 21.0, 25.0, 23.0],
        parts=[2, 5, 0, 2],
        u=[0.5, 0.1, 0.0, 0.9],
        v=[0.25, 0.3, 0.0, 0.9],
        segm=segm,
        segm_box=[10.0, 20.0, 18.0, 28.0],
    )
    instances = [
        _proposals([[0.0, 0.0, 5.0, 5.0], [10.0, 20.0, 18.0, 28.0]], [1, 0]),
        _proposals([[0.0, 0.0, 8.0, 8.0]], [0]),
    ]
    targets = [{"densepose": [first, None]}, {"densepose": [_annotation([], [], [], [], [])]}]
    return instances, targets


def test_packing_keeps_the_rois_with_points():
    instances, targets = _crafted_batch()
    packed = pack_densepose_annotations(instances, targets, 4)
    assert packed.rows.tolist() == [1]  # ROI 0 has no annotation, image 1's has no points
    assert packed.points.roi.tolist() == [1, 1, 1, 1]
    assert packed.points.inside.tolist() == [True, True, True, False]
    torch.testing.assert_close(packed.boxes, torch.tensor([[10.0, 20.0, 18.0, 28.0]]))
    assert packed.segm.shape == (1, 4, 4)
    assert pack_densepose_annotations(instances[:1], [{"densepose": [None, None]}], 4) is None


def test_chart_losses_of_a_crafted_annotation():
    instances, targets = _crafted_batch()
    packed = pack_densepose_annotations(instances, targets, 4)
    # constant charts: u = 0.3, v = 0.75 on every part; fine scores equal; coarse foreground
    # logit 2 above background
    chart = {
        "coarse_segm": torch.stack([torch.zeros(3, 4, 4), torch.full((3, 4, 4), 2.0)], dim=1),
        "fine_segm": torch.zeros(3, 25, 4, 4),
        "u": torch.full((3, 25, 4, 4), 0.3),
        "v": torch.full((3, 25, 4, 4), 0.75),
    }
    losses = densepose_chart_losses(chart, packed, 0.01, 1.0, 5.0)
    assert set(losses) == LOSSES
    # U / V: smooth-L1 (quadratic below 1) summed over the two inside points on a part
    expected_u = 0.01 * (0.5 * 0.2**2 + 0.5 * 0.2**2)
    expected_v = 0.01 * (0.5 * 0.5**2 + 0.5 * 0.45**2)
    assert losses["loss_densepose_U"].item() == pytest.approx(expected_u, rel=1e-5)
    assert losses["loss_densepose_V"].item() == pytest.approx(expected_v, rel=1e-5)
    # I: uniform scores over 25 parts at the three inside points (background included)
    assert losses["loss_densepose_I"].item() == pytest.approx(math.log(25), rel=1e-6)
    # S: the resampled segm reads source columns 0, 1, 2, 2: foreground, foreground, background,
    # background; cross-entropy log(1 + e^-2) on foreground cells, log(1 + e^2) on background
    expected_s = 5.0 * 0.5 * (math.log1p(math.exp(-2)) + math.log1p(math.exp(2)))
    assert losses["loss_densepose_S"].item() == pytest.approx(expected_s, rel=1e-6)


def test_losses_without_points_on_a_part_are_zero_with_gradients():
    instances, targets = _crafted_batch()
    targets[0]["densepose"][0]["I"] = torch.zeros(4, dtype=torch.int64)  # all background
    chart = {
        k: torch.randn(3, c, 4, 4, requires_grad=True)
        for k, c in (("coarse_segm", 2), ("fine_segm", 25), ("u", 25), ("v", 25))
    }
    losses = densepose_chart_losses(chart, pack_densepose_annotations(instances, targets, 4))
    assert set(losses) == LOSSES and all(v.item() == 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(t.grad is not None and (t.grad == 0).all() for t in chart.values())


def test_training_proposals_need_densepose_and_a_high_iou():
    # ground truth 0 [0, 0, 10, 10] has points, 1 has none; IoU must exceed 0.7
    gt = [[0.0, 0.0, 10.0, 10.0]] * 4
    instances = [
        _proposals(
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 7.0], [0.0, 0.0, 10.0, 8.0], [0, 0, 10, 10]],
            [0, 0, 0, 1],
            gt_boxes=gt,
        ),
        _proposals([], []),
    ]
    targets = [{"densepose": [_annotation([1.0], [1.0], [1], [0.5], [0.5]), None]}, {}]
    kept = select_proposals_with_densepose(instances, targets, 0.7)
    torch.testing.assert_close(
        kept[0].boxes, torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0]])
    )
    assert len(kept[1].boxes) == 0  # an image without foreground needs no annotations
    with pytest.raises(ValueError, match="training target 0 has no 'densepose'"):
        select_proposals_with_densepose(instances, [{}, {}], 0.7)
