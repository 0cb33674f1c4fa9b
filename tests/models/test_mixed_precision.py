"""``Trainer(precision="bf16-mixed")`` on CPU: a tiny Faster R-CNN trains a few steps under
autocast (the backbone really runs in bfloat16) with finite float32 losses, validates (its box AP
is COCOeval's of the bf16 predictions), and predicts float32 detections."""

from pathlib import Path

import pytest
import torch

from .reference_metrics import assert_logged, reference_coco_metrics
from .test_ddp import quiet_trainer, tiny_faster_rcnn, tiny_shapes_datamodule, write_tiny_shapes


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_shapes(tmp_path_factory.mktemp("shapes"), num_train=4, num_val=2)


def test_bf16_mixed_trains_validates_and_predicts_float32(data):
    torch.manual_seed(0)
    model = tiny_faster_rcnn(score_thresh=0.0)  # keep every detection: outputs are non-empty
    seen: dict[str, list] = {"losses": [], "autocast": [], "features": []}
    compute_losses = model.compute_losses

    def recording_compute_losses(images, targets):
        seen["autocast"].append(torch.is_autocast_enabled("cpu"))
        losses = compute_losses(images, targets)
        seen["losses"].append({k: v.detach() for k, v in losses.items()})
        return losses

    model.compute_losses = recording_compute_losses
    model.backbone.register_forward_hook(
        lambda module, inputs, outputs: seen["features"].append(outputs["p2"].dtype)
    )
    trainer = quiet_trainer(
        precision="bf16-mixed",
        max_steps=2,
        val_check_interval=2,
        check_val_every_n_epoch=None,
    )
    datamodule = tiny_shapes_datamodule(data)
    trainer.fit(model, datamodule=datamodule)
    logged = dict(trainer.callback_metrics)  # predict starts afresh

    assert len(seen["losses"]) == 2 and all(seen["autocast"])
    assert set(seen["features"]) == {torch.bfloat16}  # training and validation ran in bf16
    for losses in seen["losses"]:
        assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
        for name, value in losses.items():
            assert value.dtype == torch.float32, name
            assert torch.isfinite(value), name
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32

    predictions = [p for batch in trainer.predict(model, datamodule=datamodule) for p in batch]
    assert len(predictions) == 2
    # predict ran on the validation images, in order, under the same bf16 autocast: the logged
    # validation box AP is COCOeval's of these detections against the val json
    dataset = datamodule.val_dataset
    pairs = [(p, dataset[i][1]) for i, p in enumerate(predictions)]
    reference = reference_coco_metrics(pairs, dataset, "bbox")
    assert reference["bbox/AP50"] > 0
    assert_logged(logged, reference, reference)
    for prediction in predictions:
        assert len(prediction["boxes"]) > 0
        # decoded and scored in float32, as Detectron2 does (bf16 boxes are off by pixels)
        assert prediction["boxes"].dtype == torch.float32
        assert prediction["scores"].dtype == torch.float32
        assert prediction["labels"].dtype == torch.int64
        assert torch.isfinite(prediction["boxes"]).all()
