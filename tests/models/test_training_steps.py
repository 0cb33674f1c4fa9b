"""One optimisation step of each detector on tiny images: every loss term present and finite, a
non-zero gradient for every trainable parameter and none for the frozen stem and res2; images
without objects train too; eval returns DESIGN.md prediction dicts."""

import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, LastLevelP6P7, ResNet
from detzoo.models.faster_rcnn import FasterRCNN
from detzoo.models.retinanet import RetinaNet


def _faster_rcnn_fpn(num_classes: int = 3, freeze_at: int = 0):
    return FasterRCNN(
        FPN(
            ResNet(18, norm="BN", freeze_at=freeze_at),
            out_channels=32,
            top_block=LastLevelMaxPool(),
        ),
        num_classes=num_classes,
    )


def _faster_rcnn_c4(freeze_at: int = 0):
    return FasterRCNN(
        ResNet(18, norm="BN", freeze_at=freeze_at, out_features=["res4"]), num_classes=3
    )


def _retinanet(freeze_at: int = 0):
    resnet = ResNet(18, norm="BN", freeze_at=freeze_at, out_features=["res3", "res4", "res5"])
    fpn = FPN(
        resnet,
        in_features=["res3", "res4", "res5"],
        out_channels=32,
        top_block=LastLevelP6P7(512, 32),
    )
    return RetinaNet(fpn, num_classes=3)


MODELS = {
    "faster_rcnn_fpn": (
        _faster_rcnn_fpn,
        {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"},
    ),
    "faster_rcnn_c4": (
        _faster_rcnn_c4,
        {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"},
    ),
    "retinanet": (_retinanet, {"loss_cls", "loss_box_reg"}),
}


def _batch():
    g = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, 96, 128), generator=g, dtype=torch.uint8),
        torch.rand(3, 80, 100, generator=g) * 255,
    ]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 50.0]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an empty image
    ]
    return images, targets


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_step_and_prediction(name):
    torch.manual_seed(0)
    build, terms = MODELS[name]
    model = build(freeze_at=2)  # Detectron2's default: the stem and res2 frozen
    model.log = lambda *a, **k: None
    model.train()
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == terms
    assert all(torch.isfinite(v) for v in losses.values())
    total = model.training_step((images, targets), 0)
    total.backward()
    resnet = getattr(model.backbone, "bottom_up", model.backbone)
    frozen_ids = {id(p) for stage in (resnet.stem, resnet.res2) for p in stage.parameters()}
    frozen = [n for n, p in model.named_parameters() if id(p) in frozen_ids]
    trainable = [n for n, p in model.named_parameters() if id(p) not in frozen_ids]
    assert frozen and trainable
    params = dict(model.named_parameters())
    assert not any(params[n].requires_grad for n in frozen)
    assert all(params[n].requires_grad for n in trainable)
    # the frozen stages get no gradient at all; every other parameter (backbone, FPN, RPN, box
    # head and predictor, RetinaNet's head) a non-zero, finite one
    assert [n for n in frozen if params[n].grad is not None] == []
    no_grad = [n for n in trainable if params[n].grad is None or not params[n].grad.any()]
    assert no_grad == []
    assert all(torch.isfinite(params[n].grad).all() for n in trainable)

    model.eval()
    with torch.no_grad():
        preds = model(images)
    assert len(preds) == 2
    for pred, image in zip(preds, images):
        n = len(pred["boxes"])
        assert (
            pred["boxes"].shape == (n, 4)
            and pred["scores"].shape == (n,)
            and pred["labels"].dtype == torch.int64
        )
        assert n <= 100
        if n:
            assert (pred["boxes"][:, 2] <= image.shape[2]).all() and (
                pred["boxes"][:, 3] <= image.shape[1]
            ).all()
            assert (pred["labels"] >= 0).all() and (pred["labels"] < 3).all()


def test_score_threshold_is_settable():
    model = _faster_rcnn_fpn()
    model.set_test_thresholds(score_thresh=0.3)
    assert model.roi_heads.box_predictor.score_thresh == 0.3
    assert model.hparams["score_thresh"] == 0.3
    with pytest.raises(ValueError, match="no test-time setting"):
        model.set_test_thresholds(mask_thresh=0.5)


def test_retinanet_settings_reach_its_outputs():
    from detzoo.heads.retinanet import RetinaNetOutputs

    model = _retinanet()
    assert model.outputs.smooth_l1_beta == 0.1 and model.outputs.score_thresh == 0.05
    resnet = ResNet(18, norm="BN", out_features=["res3", "res4", "res5"])
    fpn = FPN(resnet, ["res3", "res4", "res5"], 32, top_block=LastLevelP6P7(512, 32))
    given = RetinaNet(
        fpn,
        num_classes=3,
        outputs=RetinaNetOutputs(3, score_thresh=0.9),
        score_thresh=0.2,
        smooth_l1_beta=0.0,  # only for the default outputs
    )
    assert given.outputs.score_thresh == 0.2 and given.outputs.smooth_l1_beta == 0.1
    fresh = RetinaNet(
        FPN(resnet, ["res3", "res4", "res5"], 32, top_block=LastLevelP6P7(512, 32)),
        3,
        smooth_l1_beta=0.0,
    )
    assert fresh.outputs.smooth_l1_beta == 0.0
