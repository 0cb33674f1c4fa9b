"""The DensePose branch: Detectron2's module names, per-image predictions, empty batches, and the
branch inside a tiny DensePose R-CNN (training step and predictions)."""

import torch

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.heads.densepose_head import DensePoseChartHead, DensePoseROIHeads
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_sampling import SampledProposals
from detzoo.heads.semantic_fpn import SemSegFPNHead
from detzoo.models.densepose_rcnn import DensePoseRCNN, default_densepose_roi_heads
from detzoo.models.faster_rcnn import FPN_ROI_LEVELS
from detzoo.models.postprocess import rescale_detections

from .test_densepose_losses import _annotation

LOSSES = {"loss_densepose_U", "loss_densepose_V", "loss_densepose_I", "loss_densepose_S"}


def _tiny_head(**kwargs) -> DensePoseChartHead:
    """Decoder of 8 channels over two levels (strides 4, 8) and 2x2 pooling from its output, two
    8-channel convs: 8x8 charts."""
    decoder = SemSegFPNHead(["p2", "p3"], 4, [4, 8], num_classes=6, conv_dims=8, norm="")
    pooler = ROIPooler(2, [0.25], sampling_ratio=2, pooler_type="ROIAlign")
    return DensePoseChartHead(
        ["p2", "p3"], pooler, 6, decoder=decoder, num_stacked_convs=2, conv_dims=8, **kwargs
    )


def _features(batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "p2": torch.randn(batch, 4, 8, 8, generator=g),
        "p3": torch.randn(batch, 4, 4, 4, generator=g),
    }


def test_module_names_are_detectron2s():
    names = set(_tiny_head().state_dict())
    decoder = {"decoder.p2.0", "decoder.p3.0", "decoder.predictor"}
    convs = {"body_conv_fcn1", "body_conv_fcn2"}
    deconvs = {f"predictor.{n}_lowres" for n in ("ann_index", "index_uv", "u", "v")}
    assert names == {f"{m}.{p}" for m in decoder | convs | deconvs for p in ("weight", "bias")}
    decoder = SemSegFPNHead(FPN_ROI_LEVELS, 4, [4, 8, 16, 32], conv_dims=8, norm="")
    convs = {k.rsplit(".", 1)[0] for k in decoder.state_dict()}
    assert convs == {"p2.0", "p3.0", "p4.0", "p4.2", "p5.0", "p5.2", "p5.4", "predictor"}
    assert DensePoseROIHeads.branch_names == ("mask_head", "keypoint_head", "densepose_head")


def test_predictions_are_split_per_image():
    head = _tiny_head().eval()
    detections = [
        {"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0], [4.0, 4.0, 20.0, 28.0]])},
        {"boxes": torch.zeros(0, 4)},
    ]
    with torch.no_grad():
        head.forward_predict(_features(), detections)
    first, second = (d["densepose"] for d in detections)
    assert first["coarse_segm"].shape == (2, 2, 8, 8) and first["u"].shape == (2, 25, 8, 8)
    assert second["fine_segm"].shape == (0, 25, 8, 8)
    # each detection's charts are its own ROI's, whatever the batch
    alone = [{"boxes": detections[0]["boxes"][1:]}, {"boxes": torch.zeros(0, 4)}]
    with torch.no_grad():
        head.forward_predict(_features(), alone)
    torch.testing.assert_close(alone[0]["densepose"]["v"][0], first["v"][1])


def test_empty_training_batch_gives_zero_losses_connected_to_every_parameter():
    head = _tiny_head()
    background = SampledProposals(
        torch.tensor([[0.0, 0.0, 16.0, 16.0]]),
        torch.tensor([1]),  # class 1 = background of one class
        torch.zeros(1, 4),
        torch.tensor([0]),
    )
    losses = head.forward_train(_features(), [background, background], [{}, {}], 1)
    assert set(losses) == LOSSES and all(v.item() == 0 for v in losses.values())
    sum(losses.values()).backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and (parameter.grad == 0).all(), name


def _tiny_model() -> DensePoseRCNN:
    backbone = FPN(
        ResNet(18, norm="BN", freeze_at=0), out_channels=16, top_block=LastLevelMaxPool()
    )
    decoder = SemSegFPNHead(FPN_ROI_LEVELS, 16, [4, 8, 16, 32], num_classes=8, conv_dims=8, norm="")
    pooler = ROIPooler(4, [0.25], sampling_ratio=2, pooler_type="ROIAlign")
    head = DensePoseChartHead(
        list(FPN_ROI_LEVELS), pooler, 8, decoder=decoder, num_stacked_convs=1, conv_dims=8
    )
    roi_heads = default_densepose_roi_heads(backbone, 1, head)
    return DensePoseRCNN(backbone, 1, roi_heads=roi_heads, score_thresh=0.0)


def test_training_step_and_predictions_of_a_tiny_densepose_rcnn():
    torch.manual_seed(0)
    model = _tiny_model()
    images = [torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8), torch.rand(3, 48, 64) * 255]
    segm = torch.zeros(256, 256, dtype=torch.uint8)
    segm[64:192, 64:192] = 2
    person = _annotation(
        x=[20.0, 30.0, 40.0], y=[20.0, 30.0, 40.0], parts=[1, 24, 0],
        u=[0.2, 0.4, 0.0], v=[0.6, 0.8, 0.0], segm=segm, segm_box=[10.0, 10.0, 50.0, 50.0],
    )  # fmt: skip
    targets = [
        {
            "boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 5.0, 90.0, 40.0]]),
            "labels": torch.tensor([0, 0]),
            "densepose": [person, None],
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "densepose": []},
    ]
    model.train()
    losses = model(images, targets)
    assert LOSSES <= set(losses)
    # proposal_append_gt: the first ground-truth box is a proposal of IoU 1 with points on parts
    assert all(losses[k].item() > 0 for k in LOSSES)
    sum(losses.values()).backward()
    assert model.roi_heads.densepose_head.decoder.predictor.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model(images, output_sizes=[(128, 192), (48, 64)])
    for pred in preds:
        n = len(pred["boxes"])
        assert pred["densepose"]["coarse_segm"].shape == (n, 2, 16, 16)
        assert pred["densepose"]["u"].shape == (n, 25, 16, 16)


def test_detections_dropped_by_rescaling_drop_their_charts():
    # the second box lies beyond the 10 x 10 output image: clipped empty, it is dropped with its
    # charts (the densepose dict of per-detection tensors)
    pred = {
        "boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0], [12.0, 1.0, 15.0, 5.0]]),
        "scores": torch.tensor([0.5, 0.25]),
        "densepose": {"u": torch.arange(2.0)[:, None, None, None].expand(2, 25, 4, 4)},
    }
    out = rescale_detections(pred, (10, 10), (10, 10))
    assert out["scores"].tolist() == [0.5]
    assert out["densepose"]["u"].shape == (1, 25, 4, 4) and (out["densepose"]["u"] == 0).all()
