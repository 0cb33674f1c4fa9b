"""Keypoint R-CNN as a LightningModule: a training step (crowd regions, images without objects),
predictions with keypoints at any output size, rebuilding from its spec, Detectron2's loss
normaliser option, and a short Lightning run on ``shapes`` whose validation reports keypoint AP."""

from pathlib import Path

import lightning as L
import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.config import build, spec_of
from detzoo.data import ShapesDataModule
from detzoo.data.synthetic import KEYPOINT_NAMES, KEYPOINT_OKS_SIGMAS
from detzoo.heads.keypoint_head import KRCNNConvDeconvUpsampleHead
from detzoo.heads.poolers import ROIPooler
from detzoo.lightning_cli import DetzooCLI
from detzoo.models import KeypointRCNN
from detzoo.models.faster_rcnn import FPN_ROI_LEVELS, default_roi_heads

from .reference_metrics import (
    GroundTruthDetector,
    assert_logged,
    predict_val,
    reference_coco_metrics,
)

TERMS = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_keypoint"}


def _backbone() -> FPN:
    return FPN(ResNet(18, norm="BN", freeze_at=0), out_channels=32, top_block=LastLevelMaxPool())


def _model(num_keypoints: int = 3, num_classes: int = 2, **kwargs) -> KeypointRCNN:
    """A tiny Keypoint R-CNN: ResNet-18 FPN of 32 channels, two 32-channel keypoint convs."""
    backbone = _backbone()
    pooler = ROIPooler(7, [0.25, 0.125, 0.0625, 0.03125], sampling_ratio=0)
    head = KRCNNConvDeconvUpsampleHead(
        list(FPN_ROI_LEVELS), pooler, 32, num_keypoints, conv_dims=(32, 32)
    )
    roi_heads = default_roi_heads(backbone, num_classes, smooth_l1_beta=0.5, keypoint_head=head)
    return KeypointRCNN(backbone, num_keypoints, num_classes, roi_heads=roi_heads, **kwargs)


def _batch():
    g = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, 96, 128), generator=g, dtype=torch.uint8),
        torch.rand(3, 80, 100, generator=g) * 255,
    ]
    first = {
        "boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 50.0], [0, 0, 9, 9]]),
        "labels": torch.tensor([0, 1, 0]),
        "iscrowd": torch.tensor([0, 0, 1]),  # the crowd region is dropped before training
        "keypoints": torch.tensor(
            [
                [[20.0, 20.0, 2], [40.0, 50.0, 1], [0.0, 0.0, 0]],
                [[80.0, 30.0, 2], [100.0, 40.0, 2], [110.0, 45.0, 2]],
                [[0.0, 0.0, 0], [0.0, 0.0, 0], [0.0, 0.0, 0]],
            ]
        ),
    }
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "keypoints": torch.zeros(0, 3, 3),
    }
    return images, [first, empty]


def test_training_step_and_prediction():
    torch.manual_seed(0)
    model = _model()
    model.log = lambda *a, **k: None
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == TERMS and all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_keypoint"] > 0
    model.training_step((images, targets), 0).backward()
    grad = model.roi_heads.keypoint_head.score_lowres.weight.grad
    assert grad is not None and grad.abs().sum() > 0

    model.eval()
    model.set_test_thresholds(score_thresh=0.0)
    sizes = [(192, 256), (160, 200)]  # twice each image's size
    with torch.no_grad():
        preds = model(images)
        resized = model(images, output_sizes=sizes)
    for pred, other in zip(preds, resized):
        assert pred["keypoints"].shape == (len(pred["boxes"]), 3, 3)
        assert len(pred["boxes"]) > 0
        torch.testing.assert_close(other["keypoints"][..., :2], 2 * pred["keypoints"][..., :2])
        torch.testing.assert_close(other["keypoints"][..., 2], pred["keypoints"][..., 2])


def test_rebuilds_from_its_spec():
    model = _model()
    assert model.eval_iou_types == ("bbox", "keypoints")
    rebuilt = build(spec_of(model))
    assert isinstance(rebuilt.roi_heads.keypoint_head, KRCNNConvDeconvUpsampleHead)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert rebuilt.roi_heads.box_predictor.smooth_l1_beta == 0.5


def test_detectron2_defaults_and_normaliser_option():
    model = KeypointRCNN(_backbone(), normalize_loss_by_visible_keypoints=False)
    head = model.roi_heads.keypoint_head
    assert model.num_classes == 1 and head.num_keypoints == 17
    assert head.pooler.output_size == (14, 14) and len(head.conv_names) == 8
    assert model.proposal_generator.post_nms_topk == (1500, 1000)
    assert model.roi_heads.box_predictor.smooth_l1_beta == 0.5
    # NUM_KEYPOINTS x ROI_HEADS.BATCH_SIZE_PER_IMAGE x POSITIVE_FRACTION
    assert head.loss_normalizer == 17 * 512 * 0.25


def test_needs_fpn_and_a_matching_keypoint_head():
    with pytest.raises(ValueError, match="FPN backbone"):
        KeypointRCNN(ResNet(18, out_features=["res4"]))
    with pytest.raises(ValueError, match="num_keypoints is 5 but the keypoint head predicts 3"):
        roi_heads = _model().roi_heads
        KeypointRCNN(_backbone(), num_keypoints=5, num_classes=2, roi_heads=roi_heads)


@pytest.mark.slow
def test_lightning_fit_on_shapes_reports_keypoint_ap(tmp_path):
    """Two training steps and a validation on a tiny shapes keypoint set: the logged box and
    keypoint AP and AR are pycocotools' COCOeval of the trained model's predictions against the
    val json, keypoints scored with the figure's 13 OKS sigmas. Two steps in, keypoint AP is 0;
    so the validation is run again on the ground truth with keypoints moved by 2 px, whose
    keypoint AP lies strictly between 0 and 1 and depends on the sigmas."""
    torch.manual_seed(0)
    data = ShapesDataModule(
        tmp_path / "shapes",
        num_train=4,
        num_val=2,
        task="keypoints",
        batch_size=2,
        num_workers=0,
        train_min_size=[160],
        train_max_size=320,
        test_min_size=160,
        test_max_size=320,
    )
    # every detection kept, so that keypoint AP is a number even before training
    model = _model(num_keypoints=len(KEYPOINT_NAMES), num_classes=1, score_thresh=0.0)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    assert data.val_dataset.keypoint_oks_sigmas == list(KEYPOINT_OKS_SIGMAS)
    metrics = trainer.callback_metrics
    pairs = predict_val(model, data)
    assert all(len(pred["boxes"]) for pred, _ in pairs)
    for iou_type, sigmas in (("bbox", None), ("keypoints", KEYPOINT_OKS_SIGMAS)):
        reference = reference_coco_metrics(pairs, data.val_dataset, iou_type, oks_sigmas=sigmas)
        assert_logged(metrics, reference, reference)  # every COCOeval stat

    detector = GroundTruthDetector(data.val_dataset, shift=2.0)
    model.detect = detector
    results = trainer.validate(model, datamodule=data, verbose=False)[0]
    detector.index = 0
    pairs = predict_val(model, data)
    reference = reference_coco_metrics(pairs, data.val_dataset, "keypoints", KEYPOINT_OKS_SIGMAS)
    assert 0.0 < reference["keypoints/AP"] < 1.0 and reference["keypoints/AP50"] == 1.0
    assert_logged(results, reference, reference)
    wider = reference_coco_metrics(
        pairs, data.val_dataset, "keypoints", [2 * s for s in KEYPOINT_OKS_SIGMAS]
    )
    assert wider["keypoints/AP"] > reference["keypoints/AP"]  # the sigmas matter
    box_reference = reference_coco_metrics(pairs, data.val_dataset, "bbox")
    assert box_reference["bbox/AP"] == 1.0
    assert_logged(results, box_reference, box_reference)


def test_shapes_recipe_evaluates_with_the_figure_sigmas(tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "zoo_configs/shapes/keypoint_rcnn_R18_FPN.yaml"
    cli = DetzooCLI(["--config", str(recipe), "--data.root", str(tmp_path)], run=False)
    assert isinstance(cli.model, KeypointRCNN) and cli.model.num_keypoints == len(KEYPOINT_NAMES)
    assert list(cli.datamodule.keypoint_oks_sigmas) == list(KEYPOINT_OKS_SIGMAS)
    assert cli.datamodule.min_keypoints_per_image == 1
