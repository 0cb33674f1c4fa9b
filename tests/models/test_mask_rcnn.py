"""Mask R-CNN as a LightningModule: training steps (FPN and C4, bitmaps and polygons, crowd regions,
images without objects), predictions with image-size bool masks, rebuilding from its spec, and a
short Lightning run on ``shapes`` whose validation reports mask AP."""

import lightning as L
import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.config import build, spec_of
from detzoo.heads.mask_head import MaskRCNNConvUpsampleHead
from detzoo.models import MaskRCNN
from detzoo.models.postprocess import rescale_detections

from .recipes import fit_shapes_recipe_briefly
from .reference_metrics import (
    GroundTruthDetector,
    assert_logged,
    predict_val,
    reference_coco_metrics,
)

TERMS = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}


def _few_rois(model: MaskRCNN) -> MaskRCNN:
    """Fewer proposals, ROI samples and detections than Detectron2's (1000 / 512 / 100), to keep
    these tests fast on a CPU (the heads run on every ROI)."""
    model.proposal_generator.post_nms_topk = (64, 64)
    model.roi_heads.batch_size_per_image = 64
    model.set_test_thresholds(detections_per_image=20)
    return model


def _resnet(**kwargs) -> ResNet:
    """A quarter-width ResNet-18 (res5: 128 channels)."""
    return ResNet(18, norm="BN", freeze_at=0, stem_out_channels=16, res2_out_channels=16, **kwargs)


def _fpn(num_classes: int = 3) -> MaskRCNN:
    backbone = FPN(_resnet(), out_channels=32, top_block=LastLevelMaxPool())
    return _few_rois(MaskRCNN(backbone, num_classes=num_classes))


def _c4() -> MaskRCNN:
    return _few_rois(MaskRCNN(_resnet(out_features=["res4"]), num_classes=3))


def _batch(polygons: bool = False):
    g = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, 96, 128), generator=g, dtype=torch.uint8),
        torch.rand(3, 80, 100, generator=g) * 255,
    ]
    masks = torch.zeros(3, 96, 128, dtype=torch.uint8)
    masks[0, 12:70, 10:60] = 1
    masks[1, 20:50, 70:120] = 1
    masks[2, 0:40, 0:40] = 1
    first = {
        "boxes": torch.tensor(
            [[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 50.0], [0, 0, 40, 40]]
        ),
        "labels": torch.tensor([0, 2, 1]),
        "iscrowd": torch.tensor([0, 0, 1]),  # the crowd region is dropped before training
        "masks": masks,
    }
    if polygons:
        first["polygons"] = [
            [[10, 12, 60, 12, 60, 70, 10, 70]],
            [[70, 20, 120, 20, 95, 50]],
            [[0, 0, 40, 0, 40, 40]],
        ]
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 80, 100, dtype=torch.uint8),
    }
    return images, [first, empty]


@pytest.mark.parametrize("build_model", [_fpn, _c4], ids=["fpn", "c4"])
def test_training_step_and_prediction(build_model):
    torch.manual_seed(0)
    model = build_model()
    model.log = lambda *a, **k: None
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == TERMS and all(torch.isfinite(v) for v in losses.values())
    model.training_step((images, targets), 0).backward()
    deconv = model.roi_heads.mask_head.deconv.weight.grad
    assert deconv is not None and deconv.abs().sum() > 0

    model.eval()
    sizes = [(48, 64), (160, 200)]
    with torch.no_grad():
        preds = model(images)
        resized = model(images, output_sizes=sizes)
    for pred, image, other, size in zip(preds, images, resized, sizes):
        n = len(pred["boxes"])
        assert pred["masks"].dtype == torch.bool and pred["masks"].shape == (n, *image.shape[1:])
        assert other["masks"].shape == (len(other["boxes"]), *size)


def test_c4_mask_head_reads_the_res5_features():
    model = _c4()
    head = model.roi_heads.mask_head
    assert head.pooler is None and head.layers(torch.randn(2, 128, 7, 7)).shape == (2, 3, 14, 14)
    assert not any(k.startswith("mask_fcn") for k in head.state_dict())


def test_polygon_targets_train_and_drop_crowds_with_their_boxes():
    torch.manual_seed(0)
    model = _fpn().train()
    images, targets = _batch(polygons=True)
    kept = model._training_target(targets[0])
    assert len(kept["polygons"]) == len(kept["boxes"]) == 2
    assert kept["polygons"][1] == targets[0]["polygons"][1]
    losses = model(images, targets)
    assert torch.isfinite(losses["loss_mask"])


def test_postprocess_pastes_masks_at_the_rescaled_boxes():
    probs = torch.zeros(2, 1, 4, 4)
    probs[0] = 1.0
    probs[1, 0, :, :2] = 1.0  # left half
    detection = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 10.0, 20.0, 20.0]]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([0, 1]),
        "masks": probs,
    }
    out = rescale_detections(detection, (20, 20), (40, 40))
    masks = out["masks"]
    assert masks.dtype == torch.bool and masks.shape == (2, 40, 40)
    # boxes scaled by 2: (0, 0, 20, 20) and (20, 20, 40, 40); bilinear sampling with zero
    # padding fades only the corners (0.6 x 0.6 < 0.5)
    assert masks[0, 1:19, 1:19].all() and not masks[0, 20:].any() and not masks[0, :, 20:].any()
    assert masks[1, 21:39, 21:29].all() and not masks[1, :, 30:].any() and not masks[1, :20].any()


def test_rebuilds_from_its_spec_and_checks_its_mask_head():
    model = _fpn()
    assert model.eval_iou_types == ("bbox", "segm")
    rebuilt = build(spec_of(model))
    assert isinstance(rebuilt.roi_heads.mask_head, MaskRCNNConvUpsampleHead)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    agnostic = MaskRCNN(ResNet(18, out_features=["res4"]), 3, cls_agnostic_mask=True)
    assert agnostic.roi_heads.mask_head.predictor.out_channels == 1
    with pytest.raises(ValueError, match="mask head predicts 5"):
        head = MaskRCNNConvUpsampleHead([], None, 128, 5, num_conv=0)
        roi_heads = _c4().roi_heads
        roi_heads.mask_head = head
        MaskRCNN(ResNet(18, out_features=["res4"]), 3, roi_heads=roi_heads)


@pytest.mark.slow
def test_shapes_recipe_fits_and_reports_mask_ap(tmp_path, monkeypatch):
    """The shapes Mask R-CNN recipe through ``detzoo fit``: two steps on a tiny shapes set at a
    small size, then validation logs box and mask AP and AR: pycocotools' COCOeval of the trained
    model's predictions against the val json. Two steps in, mask AP is 0; so the validation is run
    again on the ground truth, its masks cropped to 28x28 and pasted back by the model as its own
    mask probabilities would be: box AP 1, mask AP50 1, and mask AP as COCOeval scores the
    resampled masks."""
    monkeypatch.chdir(tmp_path)
    cli = fit_shapes_recipe_briefly("mask_rcnn_R18_FPN.yaml")
    assert isinstance(cli.model, MaskRCNN)
    metrics = cli.trainer.callback_metrics
    pairs = predict_val(cli.model, cli.datamodule)
    assert any(len(pred["boxes"]) for pred, _ in pairs)
    for iou_type in ("bbox", "segm"):
        reference = reference_coco_metrics(pairs, cli.datamodule.val_dataset, iou_type)
        assert_logged(metrics, reference, reference)  # every COCOeval stat

    model, datamodule = cli.model, cli.datamodule
    model.detect = detector = GroundTruthDetector(datamodule.val_dataset)
    # a Trainer without the recipe's callbacks (which draw predictions: more detect calls)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    results = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    detector.index = 0
    pairs = predict_val(model, datamodule)
    box = reference_coco_metrics(pairs, datamodule.val_dataset, "bbox")
    mask = reference_coco_metrics(pairs, datamodule.val_dataset, "segm")
    assert box["bbox/AP"] == 1.0 and mask["segm/AP50"] == 1.0 and 0.5 < mask["segm/AP"] < 1.0
    assert_logged(results, {**box, **mask}, {**box, **mask})
