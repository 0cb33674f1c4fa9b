"""Panoptic FPN and Semantic FPN as LightningModules: joint losses with Detectron2's weights,
predictions (semantic logits, panoptic segments) at the output size, test-time thresholds, and a
short Lightning run of the shapes recipe whose validation reports AP, mIoU and PQ."""

import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.config import build, spec_of
from detzoo.heads.semantic_fpn import SemSegFPNHead
from detzoo.models import PanopticFPN, SemanticFPN

from .recipes import fit_shapes_recipe_briefly
from .reference_metrics import assert_logged, predict_val, reference_miou
from .test_mask_rcnn import _batch, _few_rois, _resnet


def _backbone() -> FPN:
    return FPN(_resnet(), out_channels=32, top_block=LastLevelMaxPool())


def _panoptic(**kwargs) -> PanopticFPN:
    return _few_rois(PanopticFPN(_backbone(), num_classes=3, num_stuff_classes=2, **kwargs))


def _panoptic_batch():
    images, targets = _batch()
    sem = torch.full((96, 128), 1, dtype=torch.int64)
    sem[60:] = 2
    sem[12:70, 10:60] = 0  # the thing channel under the first instance
    sem[0, :] = 255
    targets[0]["sem_seg"] = sem
    targets[1]["sem_seg"] = torch.full((80, 100), 255, dtype=torch.int64)  # nothing labelled
    return images, targets


def test_losses_are_detectron2s_terms_with_the_instance_weight_on_the_roi_heads():
    images, targets = _panoptic_batch()
    runs = []
    for weight in (1.0, 2.0):
        torch.manual_seed(0)
        model = _panoptic(instance_loss_weight=weight).train()
        torch.manual_seed(1)  # the same proposal sampling in both runs
        runs.append(model(images, targets))
    one, two = runs
    assert set(one) == {
        "loss_sem_seg", "loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask",
    }  # fmt: skip
    for name in ("loss_cls", "loss_box_reg", "loss_mask"):
        torch.testing.assert_close(two[name], 2 * one[name])
    for name in ("loss_sem_seg", "loss_rpn_cls", "loss_rpn_loc"):
        torch.testing.assert_close(two[name], one[name])


def test_sem_seg_loss_weight_and_a_crowd_drop_keep_the_semantic_target():
    torch.manual_seed(0)
    model = _panoptic().train()
    model.log = lambda *a, **k: None
    assert model.sem_seg_head.loss_weight == 0.5  # Detectron2's Panoptic FPN recipes
    images, targets = _panoptic_batch()
    # 96 rows and 3 instances: the crowd drop must not mistake sem_seg for a per-instance field
    kept = model._training_target(targets[0])
    assert kept["sem_seg"].shape == (96, 128) and len(kept["boxes"]) == 2
    model.training_step((images, targets), 0).backward()
    assert model.sem_seg_head.predictor.weight.grad.abs().sum() > 0


def test_predictions_hold_semantic_logits_and_a_consistent_panoptic_segmentation():
    torch.manual_seed(0)
    model = _panoptic(stuff_area_thresh=16).eval()
    model.set_test_thresholds(score_thresh=0.0)
    images, _ = _panoptic_batch()
    sizes = [(48, 64), (160, 200)]
    with torch.no_grad():
        preds = model(images, output_sizes=sizes)
    for pred, size in zip(preds, sizes):
        assert pred["sem_seg"].shape == (3, *size) and pred["sem_seg"].dtype == torch.float32
        seg, info = pred["panoptic_seg"], pred["segments_info"]
        assert seg.shape == size and seg.dtype == torch.int32
        assert [s["id"] for s in info] == list(range(1, len(info) + 1))
        assert set(torch.unique(seg[seg > 0]).tolist()) == {s["id"] for s in info}
        argmax = pred["sem_seg"].argmax(0)
        for s in info:
            if s["isthing"]:
                k = s["instance_id"]
                assert s["category_id"] == int(pred["labels"][k])
                assert pred["masks"][k][seg == s["id"]].all()  # a segment lies in its mask
            else:
                assert s["category_id"] >= 1 and (argmax[seg == s["id"]] == s["category_id"]).all()
                assert s["area"] == int((seg == s["id"]).sum()) >= 16


def test_score_thresh_sets_the_merge_threshold_too_and_the_model_rebuilds():
    model = _panoptic()
    assert model.merge.score_thresh == 0.5 and model.roi_heads.box_predictor.score_thresh == 0.05
    model.set_test_thresholds(score_thresh=0.25)
    assert model.merge.score_thresh == 0.25 == model.roi_heads.box_predictor.score_thresh
    assert model.hparams["instances_score_thresh"] == 0.25 == model.hparams["score_thresh"]
    rebuilt = build(spec_of(model))
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(ValueError, match="must predict 3 classes"):
        PanopticFPN(_backbone(), 3, 2, sem_seg_head=SemSegFPNHead(in_channels=32, num_classes=5))


def test_semantic_fpn_trains_and_predicts_logits_at_the_output_size():
    torch.manual_seed(0)
    model = SemanticFPN(_backbone(), num_classes=3)
    model.log = lambda *a, **k: None
    images, targets = _panoptic_batch()
    model.train()
    assert set(model(images, targets)) == {"loss_sem_seg"}
    model.training_step((images, targets), 0).backward()
    model.eval()
    with torch.no_grad():
        preds = model(images, output_sizes=[(50, 60), (80, 100)])
    assert [tuple(p["sem_seg"].shape) for p in preds] == [(3, 50, 60), (3, 80, 100)]
    assert set(preds[0]) == {"sem_seg"}
    with pytest.raises(ValueError, match="Wrap the backbone in detzoo.backbones.FPN"):
        SemanticFPN(ResNet(18, out_features=["res4"]), num_classes=3)


@pytest.mark.slow
def test_shapes_recipe_fits_and_reports_ap_miou_and_pq(tmp_path, monkeypatch):
    """The shapes Panoptic FPN recipe through ``detzoo fit``: two steps on a tiny shapes set at a
    small size, then validation logs box/mask AP, mIoU and PQ. The mIoU and per-class IoUs are
    Detectron2's formula on a confusion matrix of the trained model's semantic predictions,
    built here with numpy."""
    monkeypatch.chdir(tmp_path)
    cli = fit_shapes_recipe_briefly("panoptic_fpn_R18_FPN.yaml")
    assert isinstance(cli.model, PanopticFPN)
    metrics = cli.trainer.callback_metrics
    expected = {"val/bbox/AP", "val/segm/AP", "val/sem_seg/mIoU", "val/panoptic_seg/PQ"}
    assert expected <= set(metrics)
    assert "val/panoptic_seg/PQ-sky" in metrics
    names = cli.datamodule.val_dataset.sem_seg_class_names
    assert names == ["things", "sky", "ground", "water"]
    pairs = predict_val(cli.model, cli.datamodule)
    reference = reference_miou(pairs, len(names))
    for c, name in enumerate(names):  # logged by class name
        reference[f"sem_seg/IoU-{name}"] = reference.pop(f"sem_seg/IoU-{c}")
    assert 0.0 < reference["sem_seg/mIoU"] < 1.0
    assert_logged(metrics, reference, reference)
