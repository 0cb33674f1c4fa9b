"""CascadeRCNN as a model: every stage's loss terms (and the mask loss) on tiny images, images without
objects, predictions with masks, test-time settings on every stage, rebuilding from its
hyper-parameters, and (slow) a few training steps and an evaluation through Lightning."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.config import build
from detzoo.data import collate_detection
from detzoo.heads.mask_head import MaskRCNNConvUpsampleHead
from detzoo.heads.poolers import ROIPooler
from detzoo.models import CascadeRCNN
from detzoo.models.cascade_rcnn import default_cascade_roi_heads

BOX_TERMS = {f"{t}_stage{k}" for t in ("loss_cls", "loss_box_reg") for k in range(3)}
RPN_TERMS = {"loss_rpn_cls", "loss_rpn_loc"}


def _cascade(mask_on: bool = True, num_classes: int = 3) -> CascadeRCNN:
    """Detectron2's cascade stages on a small FPN, with 64-d box FCs and a small mask head (the
    default 1024-d FCs and 256-channel mask convs would take most of the test's time)."""
    backbone = FPN(
        ResNet(18, norm="BN", freeze_at=0), out_channels=32, top_block=LastLevelMaxPool()
    )
    mask_head = None
    if mask_on:
        pooler = ROIPooler(14, [1 / 4, 1 / 8, 1 / 16, 1 / 32], sampling_ratio=0)
        levels = ["p2", "p3", "p4", "p5"]
        mask_head = MaskRCNNConvUpsampleHead(levels, pooler, 32, num_classes, 1, conv_dim=16)
    return CascadeRCNN(
        backbone,
        num_classes,
        roi_heads=default_cascade_roi_heads(backbone, num_classes, mask_head, fc_dim=64),
        detections_per_image=20,
        input_format="RGB",
        pixel_std=(58.0, 57.0, 57.0),
    )


def _samples() -> list[tuple[torch.Tensor, dict]]:
    """Two tiny images with rectangles (one with two objects, one empty)."""
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 96, 128), generator=g, dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 50.0]])
    masks = torch.zeros(2, 96, 128, dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1:x2] = 1
        image[:, y1:y2, x1:x2] = 200
    objects = {"boxes": boxes, "labels": torch.tensor([0, 2]), "masks": masks}
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 80, 100, dtype=torch.uint8),
    }
    blank = torch.randint(0, 256, (3, 80, 100), generator=g, dtype=torch.uint8)
    return [(image, objects), (blank, empty)]


def test_training_losses_of_every_stage_and_the_mask_head():
    torch.manual_seed(0)
    model = _cascade().train()
    images, targets = collate_detection(_samples())
    losses = model(images, targets)
    assert set(losses) == RPN_TERMS | BOX_TERMS | {"loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for k in range(3):
        grad = model.roi_heads.box_predictor[k].cls_score.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    assert model.roi_heads.mask_head.predictor.weight.grad.abs().sum() > 0


def test_without_mask_head_only_boxes_are_trained_and_evaluated():
    model = _cascade(mask_on=False).train()
    images, targets = collate_detection(_samples())
    assert set(model(images, targets)) == RPN_TERMS | BOX_TERMS
    assert model.eval_iou_types == ("bbox",)


def test_mask_on_adds_detectron2s_mask_head_and_mask_evaluation():
    backbone = FPN(ResNet(18, norm="BN"), out_channels=32, top_block=LastLevelMaxPool())
    model = CascadeRCNN(backbone, num_classes=3, mask_on=True)
    assert model.eval_iou_types == ("bbox", "segm")
    mask_head = model.roi_heads.mask_head
    assert isinstance(mask_head, MaskRCNNConvUpsampleHead) and len(mask_head.convs) == 4
    assert mask_head.predictor.out_channels == 3
    with pytest.raises(ValueError, match="no mask_head"):
        CascadeRCNN(backbone, 3, mask_on=True, roi_heads=_cascade(mask_on=False).roi_heads)


def test_predictions_have_boxes_and_masks_at_image_size():
    model = _cascade().eval()
    images, _ = collate_detection(_samples())
    with torch.no_grad():
        preds = model(images)
    for pred, image in zip(preds, images):
        n = len(pred["boxes"])
        assert pred["scores"].shape == (n,) and pred["labels"].dtype == torch.int64
        assert pred["masks"].shape == (n, *image.shape[1:]) and pred["masks"].dtype == torch.bool
        assert n <= 20


def test_test_time_settings_reach_every_stage():
    model = _cascade()
    model.set_test_thresholds(score_thresh=0.3, detections_per_image=7)
    for predictor in model.roi_heads.box_predictor:
        assert predictor.score_thresh == 0.3 and predictor.detections_per_image == 7
    assert model.hparams["score_thresh"] == 0.3


def test_rebuilds_from_its_hyperparameters():
    model = _cascade()
    rebuilt = build({"class_path": "detzoo.models.CascadeRCNN", "init_args": dict(model.hparams)})
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert rebuilt.roi_heads.box_predictor[2].box_coder.weights == (30.0, 30.0, 15.0, 15.0)
    assert rebuilt.proposal_generator.post_nms_topk == (2000, 1000)


def test_a_c4_backbone_is_refused():
    with pytest.raises(ValueError, match="FPN backbone"):
        CascadeRCNN(ResNet(18, norm="BN", out_features=["res4"]), num_classes=3)


@pytest.mark.slow
def test_lightning_trains_and_evaluates_boxes_and_masks():
    torch.manual_seed(0)
    model = _cascade()
    samples = _samples()
    image, target = samples[0]
    val = [(image, {**target, "orig_size": tuple(image.shape[1:])})]
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(samples, batch_size=2, collate_fn=collate_detection))
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train/loss_cls_stage2"])
    loader = DataLoader(val, batch_size=1, collate_fn=collate_detection)
    results = trainer.validate(model, loader, verbose=False)[0]
    assert {"val/bbox/AP", "val/segm/AP"} <= set(results)
