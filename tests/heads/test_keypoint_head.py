"""The keypoint branch against hand-computed values: heatmap targets of crafted keypoints, decoding
back to image pixels, the proposals it trains on, its loss normalisers and empty batches."""

import math

import pytest
import torch

from detzoo.heads.keypoint_head import (
    KRCNNConvDeconvUpsampleHead,
    keypoint_rcnn_loss,
    sampled_keypoints_normalizer,
    select_proposals_with_visible_keypoints,
)
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_sampling import SampledProposals
from detzoo.structures.keypoint_heatmaps import heatmaps_to_keypoints, keypoints_to_heatmap


def _head(**kwargs) -> KRCNNConvDeconvUpsampleHead:
    """3 keypoints, 2x2 pooling on one stride-1 level, two 8-channel convs: 8x8 heatmaps."""
    pooler = ROIPooler(2, [1.0], sampling_ratio=0)
    return KRCNNConvDeconvUpsampleHead(["p"], pooler, 4, 3, conv_dims=(8, 8), **kwargs)


def _proposals(boxes, gt_index, gt_classes=None) -> SampledProposals:
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gt_index = torch.tensor(gt_index, dtype=torch.int64)
    classes = torch.zeros_like(gt_index) if gt_classes is None else torch.tensor(gt_classes)
    return SampledProposals(boxes, classes, torch.zeros_like(boxes), gt_index)


def test_heatmap_cells_of_crafted_keypoints():
    # ROI [10, 20, 18, 28] on a 4x4 heatmap: each cell is 2x2 pixels
    roi = torch.tensor([[10.0, 20.0, 18.0, 28.0]])
    keypoints = torch.tensor(
        [
            [
                [11.0, 21.0, 2],  # cell (x0, y0) -> 0
                [17.9, 23.0, 2],  # x floor(3.95) = 3, y floor(1.5) = 1 -> 1 * 4 + 3 = 7
                [18.0, 28.0, 2],  # on the right and bottom edges: last column and row -> 15
                [12.0, 22.0, 1],  # labelled but hidden still trains: (1, 1) -> 5
                [12.0, 22.0, 0],  # unlabelled: not a target
                [18.5, 21.0, 2],  # right of the ROI: column 4 is outside
                [9.9, 21.0, 2],  # left of it: column -1
            ]
        ]
    )
    cells, valid = keypoints_to_heatmap(keypoints, roi, 4)
    assert valid.tolist() == [[True, True, True, True, False, False, False]]
    assert cells.tolist() == [[0, 7, 15, 5, 0, 0, 0]]  # invalid cells are 0
    assert cells.dtype == torch.int64 and valid.dtype == torch.bool


def test_heatmap_of_no_rois_is_empty():
    cells, valid = keypoints_to_heatmap(torch.zeros(0, 17, 3), torch.zeros(0, 4), 56)
    assert cells.shape == valid.shape == (0, 17)


def test_decoding_a_one_hot_heatmap_gives_the_cell_centre():
    # box 8 x 8 px at (10, 20), 4x4 heatmap: a peak in cell (x=3, y=1) upsampled bicubically to
    # 8x8 pixels peaks at pixel (6 or 7, 2 or 3), whose centre is within a pixel of the cell's
    # centre (10 + 7, 20 + 3)
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 1, 3] = 5.0
    out = heatmaps_to_keypoints(maps, torch.tensor([[10.0, 20.0, 18.0, 28.0]]))
    x, y, logit, score = out[0, 0].tolist()
    assert abs(x - 17.0) <= 1.0 and abs(y - 23.0) <= 1.0
    # the score is 1 / sum(exp(maps - max of the resized map)) over the 4x4 logits
    assert score == pytest.approx(1.0 / (math.exp(5.0 - logit) + 15 * math.exp(-logit)), rel=1e-5)


def test_decoding_corrects_fractional_box_sizes():
    # a 5.5 x 2.5 px box: the map is resized to 6 x 3 pixels, and pixel centres are scaled back
    # by 5.5 / 6 and 2.5 / 3; a peak in the last cell lands in the last pixel
    maps = torch.zeros(1, 1, 2, 2)
    maps[0, 0, 1, 1] = 10.0
    out = heatmaps_to_keypoints(maps, torch.tensor([[1.0, 2.0, 6.5, 4.5]]))
    assert out[0, 0, 0].item() == pytest.approx(1.0 + 5.5 * 5.5 / 6)
    assert out[0, 0, 1].item() == pytest.approx(2.0 + 2.5 * 2.5 / 3)


def test_decode_of_encode_round_trip_within_a_pixel():
    g = torch.Generator().manual_seed(0)
    side = 56
    x0y0 = torch.rand(20, 2, generator=g) * 100
    size = 10 + torch.rand(20, 2, generator=g) * 46  # up to 56 px: a cell is at most a pixel
    rois = torch.cat([x0y0, x0y0 + size], dim=1)
    points = x0y0[:, None] + torch.rand(20, 5, 2, generator=g) * size[:, None]
    keypoints = torch.cat([points, torch.full((20, 5, 1), 2.0)], dim=2)
    cells, valid = keypoints_to_heatmap(keypoints, rois, side)
    assert valid.all()
    # a smooth peak (a concave quadratic of logits) centred on each target cell, as a trained
    # head predicts; bicubic resizing to the box keeps its maximum in place
    col, row = (cells % side).view(20, 5, 1, 1), (cells // side).view(20, 5, 1, 1)
    grid = torch.arange(side, dtype=torch.float32)
    maps = -((grid.view(1, 1, 1, -1) - col) ** 2 + (grid.view(1, 1, -1, 1) - row) ** 2) / 8
    decoded = heatmaps_to_keypoints(maps, rois)
    assert (decoded[..., :2] - points).abs().max() <= 1.0


def test_training_proposals_need_a_labelled_keypoint_inside():
    targets = [
        {
            "keypoints": torch.tensor(
                [
                    [[5.0, 5.0, 2], [0.0, 0.0, 0]],  # one visible keypoint at (5, 5)
                    [[50.0, 50.0, 0], [0.0, 0.0, 0]],  # nothing labelled
                    [[30.0, 30.0, 1], [90.0, 90.0, 2]],  # hidden-but-labelled at (30, 30)
                ]
            )
        },
        {"keypoints": torch.zeros(0, 2, 3)},
    ]
    proposals = _proposals(
        [
            [0, 0, 10, 10],  # gt 0, keypoint inside: kept
            [6, 6, 10, 10],  # gt 0, keypoint outside: dropped
            [5, 5, 9, 9],  # gt 0, keypoint on the corner (edges count): kept
            [0, 0, 60, 60],  # gt 1, nothing labelled: dropped
            [20, 20, 40, 40],  # gt 2, hidden keypoint inside: kept
        ],
        [0, 0, 0, 1, 2],
    )
    kept = select_proposals_with_visible_keypoints(
        [proposals, _proposals([], [])], targets, num_keypoints=2
    )
    assert kept[0].gt_index.tolist() == [0, 0, 2]
    assert kept[0].boxes.tolist() == [[0, 0, 10, 10], [5, 5, 9, 9], [20, 20, 40, 40]]
    assert len(kept[1].boxes) == 0


def test_head_selects_foreground_then_visible():
    head = _head()
    targets = [{"keypoints": torch.tensor([[[5.0, 5.0, 2], [0, 0, 0], [0, 0, 0]]])}]
    samples = [_proposals([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], [0, 0, 0], [0, 1, -1])]
    (kept,) = head.select_instances(samples, targets, num_classes=1)  # class 1 = background
    assert kept.gt_classes.tolist() == [0]


def _zero_logit_loss(normalizer):
    """Zero logits on 8x8 heatmaps: each valid keypoint's cross-entropy is log(64)."""
    logits = torch.zeros(3, 2, 8, 8, requires_grad=True)
    instances = [_proposals([[0, 0, 8, 8], [0, 0, 8, 8]], [0, 1]), _proposals([[0, 0, 8, 8]], [0])]
    targets = [
        {"keypoints": torch.tensor([[[1.0, 1, 2], [2, 2, 2]], [[3.0, 3, 2], [0, 0, 0]]])},
        {"keypoints": torch.tensor([[[9.0, 1, 2], [4, 4, 1]]])},  # the first lies outside
    ]
    return keypoint_rcnn_loss(logits, instances, targets, normalizer), logits


def test_loss_normalised_by_visible_keypoints():
    loss, logits = _zero_logit_loss(None)
    # 4 valid keypoints (2 + 1 in image 0, 1 in image 1): sum 4 log 64 / 4
    assert loss.item() == pytest.approx(math.log(64))
    loss.backward()
    assert logits.grad[0, 0].flatten()[1 * 8 + 1] < 0  # the target cell of (1, 1) is pulled up


def test_loss_normalised_by_a_fixed_number_per_image():
    head = _head(loss_normalizer=10.0, loss_weight=2.0)
    logits = torch.zeros(3, 3, 8, 8)
    instances = [_proposals([[0, 0, 8, 8]], [0]), _proposals([[0, 0, 8, 8]] * 2, [0, 0])]
    targets = [
        {"keypoints": torch.tensor([[[1.0, 1, 2], [2, 2, 2], [0, 0, 0]]])},
        {"keypoints": torch.tensor([[[3.0, 3, 2], [0, 0, 0], [0, 0, 0]]])},
    ]
    # 2 + 2 valid keypoints, normaliser 10 x 2 images, weight 2
    expected = 2.0 * 4 * math.log(64) / 20
    assert head.losses(logits, instances, targets)["loss_keypoint"].item() == pytest.approx(
        expected
    )
    visible = _head(loss_weight=2.0).losses(logits, instances, targets)["loss_keypoint"]
    assert visible.item() == pytest.approx(2.0 * math.log(64))


def test_detectron2_sampled_normaliser():
    # NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS False: 17 keypoints x 512 proposals x 0.25 foreground
    assert sampled_keypoints_normalizer(17, 512, 0.25) == 2176.0


def test_bad_normaliser_is_refused():
    with pytest.raises(ValueError, match="loss_normalizer"):
        _head(loss_normalizer="count")
    with pytest.raises(ValueError, match="loss_normalizer"):
        _head(loss_normalizer=0.0)


def test_empty_batch_trains_with_zero_loss_and_predicts_nothing():
    head = _head()
    features = {"p": torch.randn(2, 4, 16, 16)}
    empty = [_proposals([], []), _proposals([], [])]
    targets = [{"keypoints": torch.zeros(0, 3, 3)}, {"keypoints": torch.zeros(0, 3, 3)}]
    loss = head.forward_train(features, empty, targets, num_classes=1)["loss_keypoint"]
    assert loss.item() == 0.0
    loss.backward()
    assert head.score_lowres.weight.grad is not None
    assert head.score_lowres.weight.grad.abs().sum() == 0

    detections = [{"boxes": torch.zeros(0, 4)}, {"boxes": torch.tensor([[1.0, 2.0, 9.0, 12.0]])}]
    with torch.no_grad():
        head.forward_predict(features, detections)
    assert detections[0]["keypoints"].shape == (0, 3, 3)
    assert detections[1]["keypoints"].shape == (1, 3, 3)
    assert (detections[1]["keypoints"][..., 2] > 0).all()


def test_no_valid_keypoint_is_a_zero_loss():
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    instances = [_proposals([[0, 0, 8, 8]], [0])]
    targets = [{"keypoints": torch.tensor([[[20.0, 20, 2], [1, 1, 0]]])}]
    loss = keypoint_rcnn_loss(logits, instances, targets, None)
    assert loss.item() == 0.0 and loss.requires_grad


def test_layers_and_names_follow_detectron2():
    head = KRCNNConvDeconvUpsampleHead(["p2"], ROIPooler(14, [0.25], 0), 256, 17)
    names = [k for k in head.state_dict()]
    assert names[:2] == ["conv_fcn1.weight", "conv_fcn1.bias"] and "conv_fcn8.bias" in names
    assert head.score_lowres.weight.shape == (512, 17, 4, 4)
    assert all(not p.detach().any() for n, p in head.named_parameters() if "bias" in n)
    out = _head().layers(torch.randn(5, 4, 2, 2))
    assert out.shape == (5, 3, 8, 8)


def test_keypoint_count_must_match_the_targets():
    head = _head()
    instances = [_proposals([[0, 0, 8, 8]], [0])]
    targets = [{"keypoints": torch.zeros(1, 17, 3)}]
    with pytest.raises(ValueError, match="needs \\[N, 3, 3\\]"):
        head.select_instances(instances, targets, num_classes=1)
