"""Mask head: targets cropped from bitmaps and polygons (hand-computed 28x28 crops), the loss on
crafted logits, empty batches, class-agnostic prediction, inference and Detectron2's layout."""

import math

import numpy as np
import pytest
import torch
import torchvision

import detzoo.structures.mask_crops as mask_crops
from detzoo.heads.mask_head import (
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
    mask_targets,
)
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_sampling import SampledProposals
from detzoo.structures import (
    crop_and_resize_bitmasks,
    crop_and_resize_polygons,
    rasterize_polygons_within_box,
)

# A 20x30 (w x h) rectangle covering pixels x 20..39, y 30..59 of a 100x100 image, and a box twice
# its size centred on it. ROIAlign (aligned, 2 x 3 samples per bin) of the bitmap in that box, by
# hand: bin 7 of x covers [20, 21.43): samples at x 20.36, 21.07 read 0.86 and 1 (mean >= 0.5);
# bin 6 reads 0 and 0.14; bin 20 covers [38.57, 40): 1 and 0.86; bin 21: 0.14 and 0. Rows alike
# (bins of 60/28 px): the target is True exactly on rows and columns 7..20.
RECT = (20, 30, 40, 60)
BOX = (10.0, 15.0, 50.0, 75.0)
POLYGON = [20, 30, 40, 30, 40, 60, 20, 60]


def _expected_target() -> torch.Tensor:
    target = torch.zeros(28, 28, dtype=torch.bool)
    target[7:21, 7:21] = True
    return target


def _bitmaps() -> torch.Tensor:
    masks = torch.zeros(2, 100, 100, dtype=torch.uint8)
    x0, y0, x1, y1 = RECT
    masks[1, y0:y1, x0:x1] = 1
    masks[0, :10, :10] = 1  # another instance, never selected below
    return masks


def test_bitmap_crop_is_the_hand_computed_target():
    crop = crop_and_resize_bitmasks(_bitmaps(), torch.tensor([BOX]), torch.tensor([1]), 28)
    assert crop.dtype == torch.bool and crop.shape == (1, 28, 28)
    assert torch.equal(crop[0], _expected_target())


@pytest.mark.parametrize("chunk_pixels", [1 << 24, 1], ids=["one_chunk", "mask_by_mask"])
def test_bitmap_crop_equals_detectron2s_gathered_roi_align(monkeypatch, chunk_pixels):
    """Detectron2 gathers each box's matched mask and pools mask r for box r; indexing the
    ground truth instead, in chunks of masks, gives the same crops."""
    monkeypatch.setattr(mask_crops, "CHUNK_PIXELS", chunk_pixels)
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, 60, 80, generator=g) > 0.5).to(torch.uint8)
    xy = torch.rand(6, 2, generator=g) * torch.tensor([70.0, 50.0])
    boxes = torch.cat([xy, xy + 1 + torch.rand(6, 2, generator=g) * 30], 1)
    index = torch.tensor([2, 0, 1, 1, 2, 0])
    rois = torch.cat([torch.arange(6.0)[:, None], boxes], 1)
    reference = torchvision.ops.roi_align(masks[index, None].float(), rois, 28, 1.0, 0, True)
    ours = crop_and_resize_bitmasks(masks, boxes, index, 28)
    assert torch.equal(ours, reference[:, 0] >= 0.5)


def test_polygon_is_rasterised_within_the_box():
    # The rectangle's corners map to (7, 7) and (21, 21) of the 28x28 box frame (x scaled by
    # 28/40, y by 28/60); pycocotools fills pixels 7..20: the bitmap crop's target.
    box = np.array(BOX, dtype=np.float32)
    target = rasterize_polygons_within_box([POLYGON], box, 28)
    assert target.dtype == bool and np.array_equal(target, _expected_target().numpy())
    # A triangle: rows fill from its apex down, within the box only.
    triangle = rasterize_polygons_within_box([[0, 0, 10, 0, 0, 10]], np.array([0, 0, 10, 10]), 10)
    assert triangle[0].sum() > triangle[-1].sum() and triangle[0, 0] and not triangle[-1, -1]


def test_polygon_crops_follow_the_index():
    polygons = [[[0, 0, 5, 0, 5, 5]], [POLYGON, [90, 90, 95, 90, 95, 95]]]
    boxes = torch.tensor([BOX, BOX])
    crops = crop_and_resize_polygons(polygons, boxes, torch.tensor([1, 0]), 28)
    assert torch.equal(crops[0], _expected_target())
    assert not crops[1].any()  # instance 0 lies outside the box
    with pytest.raises(ValueError, match="coordinates"):
        rasterize_polygons_within_box([[0, 0, 5, 0]], np.array(BOX), 28)


def _instances(gt_classes, gt_index, boxes=(BOX,)) -> SampledProposals:
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    classes, index = (torch.tensor(v, dtype=torch.int64) for v in (gt_classes, gt_index))
    return SampledProposals(boxes, classes, boxes.clone(), index)


def test_targets_prefer_polygons_and_need_masks():
    inst = [_instances([0], [1]), _instances([], [], boxes=())]
    from_masks = mask_targets(inst, [{"masks": _bitmaps()}, {}], 28)
    from_polygons = mask_targets(inst, [{"polygons": [[], [POLYGON]], "masks": None}, {}], 28)
    assert torch.equal(from_masks, _expected_target()[None])
    assert torch.equal(from_polygons, _expected_target()[None])
    with pytest.raises(ValueError, match="no 'masks'"):
        mask_targets(inst, [{"boxes": torch.zeros(1, 4)}, {}], 28)


def test_loss_on_crafted_logits():
    # Only each instance's ground-truth-class channel counts; the others hold 100 (they would
    # dominate the loss if read). Selected logits are 0 (BCE ln 2 per pixel) except one pixel of
    # instance 0 at ln 3 (sigmoid 0.75) with target 1 (BCE ln 4/3).
    logits = torch.full((2, 3, 2, 2), 100.0)
    logits[0, 2] = 0.0
    logits[0, 2, 0, 0] = math.log(3.0)
    logits[1, 0] = 0.0
    gt_masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    gt_masks[0, 0, 0] = True
    loss = mask_rcnn_loss(logits, torch.tensor([2, 0]), gt_masks)
    expected = (7 * math.log(2.0) + math.log(4.0 / 3.0)) / 8
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_class_agnostic_loss_and_inference_read_the_only_channel():
    logits = torch.zeros(2, 1, 2, 2)
    logits[1] = 2.0
    gt = torch.ones(2, 2, 2, dtype=torch.bool)
    loss = mask_rcnn_loss(logits, torch.tensor([5, 7]), gt)
    expected = (-math.log(0.5) - math.log(torch.sigmoid(torch.tensor(2.0)).item())) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    probs = mask_rcnn_inference(logits, torch.tensor([5, 7]))
    assert probs.shape == (2, 1, 2, 2) and torch.allclose(probs, logits.sigmoid())
    head = MaskRCNNConvUpsampleHead([], None, 8, num_classes=5, num_conv=1, cls_agnostic_mask=True)
    assert head.predictor.out_channels == 1
    assert head.layers(torch.randn(3, 8, 7, 7)).shape == (3, 1, 14, 14)


def test_inference_takes_each_detections_class():
    logits = torch.arange(3 * 4 * 1.0).view(1, 3, 2, 2).repeat(2, 1, 1, 1) - 5
    probs = mask_rcnn_inference(logits, torch.tensor([2, 0]))
    assert torch.equal(probs[0, 0], logits[0, 2].sigmoid())
    assert torch.equal(probs[1, 0], logits[1, 0].sigmoid())


def _fpn_head(num_classes=3, **kwargs) -> MaskRCNNConvUpsampleHead:
    pooler = ROIPooler(14, [1 / 4, 1 / 8], sampling_ratio=0)
    return MaskRCNNConvUpsampleHead(["p2", "p3"], pooler, 16, num_classes, conv_dim=8, **kwargs)


def test_layout_and_initialisation_follow_detectron2():
    torch.manual_seed(0)
    head = MaskRCNNConvUpsampleHead(["p2"], ROIPooler(14, [0.25], 0), 256, 80)
    names = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert names == {
        **{f"mask_fcn{k}.weight": (256, 256, 3, 3) for k in range(1, 5)},
        **{f"mask_fcn{k}.bias": (256,) for k in range(1, 5)},
        "deconv.weight": (256, 256, 2, 2),
        "deconv.bias": (256,),
        "predictor.weight": (80, 256, 1, 1),
        "predictor.bias": (80,),
    }
    assert head.predictor.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert all(not getattr(head, n).bias.any() for n in ("mask_fcn1", "deconv", "predictor"))
    # MSRA fill: std sqrt(2 / fan_out) = sqrt(2 / (256 * 9))
    assert head.mask_fcn1.weight.std().item() == pytest.approx((2 / 2304) ** 0.5, rel=0.05)
    normed = MaskRCNNConvUpsampleHead([], None, 16, 3, num_conv=1, conv_dim=32, conv_norm="GN")
    assert normed.mask_fcn1.bias is None and isinstance(normed.mask_fcn1.norm, torch.nn.GroupNorm)


def test_training_and_prediction_through_the_branch():
    torch.manual_seed(0)
    head = _fpn_head()
    features = {"p2": torch.randn(2, 16, 25, 25), "p3": torch.randn(2, 16, 13, 13)}
    samples = [
        SampledProposals(
            torch.tensor([BOX, [0.0, 0.0, 30.0, 30.0], [5.0, 5.0, 60.0, 90.0]]),
            torch.tensor([1, 3, 2]),  # the second is background (K = 3)
            torch.zeros(3, 4),
            torch.tensor([1, 0, 1]),
        ),
        _instances([], [], boxes=()),
    ]
    targets = [{"masks": _bitmaps()}, {"masks": torch.zeros(0, 100, 100, dtype=torch.uint8)}]
    losses = head.forward_train(features, samples, targets, num_classes=3)
    assert set(losses) == {"loss_mask"} and losses["loss_mask"].item() == pytest.approx(
        math.log(2.0), abs=1e-2
    )  # tiny predictor weights: logits ~ 0
    losses["loss_mask"].backward()
    assert head.predictor.weight.grad.abs().sum() > 0

    detections = [
        {"boxes": torch.tensor([BOX, BOX]), "labels": torch.tensor([2, 0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    with torch.no_grad():
        head.forward_predict(features, detections)
    assert detections[0]["masks"].shape == (2, 1, 28, 28)
    assert detections[1]["masks"].shape == (0, 1, 28, 28)
    assert ((detections[0]["masks"] > 0) & (detections[0]["masks"] < 1)).all()


def test_empty_batch_gives_zero_loss_and_zero_gradients():
    head = _fpn_head()
    features = {"p2": torch.randn(1, 16, 25, 25), "p3": torch.randn(1, 16, 13, 13)}
    empty = [_instances([], [], boxes=())]
    losses = head.forward_train(features, empty, [{"masks": torch.zeros(0, 100, 100)}], 3)
    assert losses["loss_mask"].item() == 0.0
    losses["loss_mask"].backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and not p.grad.any(), name


def test_a_branch_without_pooler_needs_features_from_its_roi_heads():
    head = MaskRCNNConvUpsampleHead([], None, 8, 3, num_conv=0)
    with pytest.raises(RuntimeError, match="no pooler"):
        head.forward_predict({}, [{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1).long()}])
    detections = [{"boxes": torch.zeros(2, 4), "labels": torch.tensor([0, 2])}]
    head.predict_on(torch.randn(2, 8, 7, 7), detections)
    assert detections[0]["masks"].shape == (2, 1, 14, 14)
