"""WandbPredictionImages: the overlay dicts it builds, the error without a WandbLogger, and a short
fit of a tiny Mask R-CNN logged to an offline W&B run (nothing touches the network) whose run log
then holds the metrics, the config and the validation images with their box and mask overlays."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.callbacks import WandbPredictionImages
from detzoo.callbacks.wandb_images import semantic_mask
from detzoo.models import MaskRCNN
from tests.models.test_ddp import (
    quiet_trainer,
    tiny_faster_rcnn,
    tiny_shapes_datamodule,
    write_tiny_shapes,
)

wandb = pytest.importorskip("wandb")


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, with every directory it writes to under ``tmp_path``; the run is finished
    (its files flushed) when the test ends."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        directory = tmp_path / name.lower()
        directory.mkdir()
        monkeypatch.setenv(name, str(directory))
    monkeypatch.chdir(tmp_path)
    yield tmp_path / "wandb_dir"
    wandb.finish()


def _prediction_and_target():
    image = torch.zeros(3, 50, 100, dtype=torch.uint8)
    masks = torch.zeros(2, 50, 100, dtype=torch.bool)
    masks[0, 10:20, 10:30] = True
    masks[1, 15:25, 20:40] = True
    prediction = {
        "boxes": torch.tensor([[10.0, 10.0, 30.0, 20.0], [20.0, 15.0, 40.0, 25.0]]),
        "scores": torch.tensor([0.9, 0.3]),
        "labels": torch.tensor([1, 0]),
        "masks": masks,
    }
    gt_masks = torch.zeros(1, 100, 200, dtype=torch.uint8)  # the original frame: twice the size
    gt_masks[0, 20:40, 20:60] = 1
    target = {
        "boxes": torch.tensor([[20.0, 20.0, 60.0, 40.0]]),
        "labels": torch.tensor([1]),
        "iscrowd": torch.tensor([0]),
        "masks": gt_masks,
        "orig_size": (100, 200),
    }
    return image, prediction, target


def test_overlays_keep_confident_predictions_in_relative_coordinates():
    image, prediction, target = _prediction_and_target()
    callback = WandbPredictionImages(score_thresh=0.5)
    overlay = callback.overlays(image, prediction, target, ["circle", "square"])
    (pred,) = overlay["boxes"]["predictions"]["box_data"]
    assert pred["class_id"] == 1 and pred["box_caption"] == "square 0.90"
    assert pred["scores"] == {"score": pytest.approx(0.9)}
    assert pred["position"] == pytest.approx({"minX": 0.1, "minY": 0.2, "maxX": 0.3, "maxY": 0.4})
    (gt,) = overlay["boxes"]["ground_truth"]["box_data"]
    assert gt["position"] == pytest.approx({"minX": 0.1, "minY": 0.2, "maxX": 0.3, "maxY": 0.4})
    assert overlay["boxes"]["predictions"]["class_labels"] == {0: "circle", 1: "square"}
    masks = overlay["masks"]
    assert masks["predictions"]["class_labels"] == {0: "background", 1: "circle", 2: "square"}
    pred_mask, gt_mask = masks["predictions"]["mask_data"], masks["ground_truth"]["mask_data"]
    assert pred_mask.shape == gt_mask.shape == (50, 100)
    assert set(pred_mask.ravel().tolist()) == {0, 2}  # the 0.3 circle is below the threshold
    assert (gt_mask[10:20, 10:30] == 2).all() and gt_mask.sum() == 2 * 10 * 20
    wandb.Image(image, **overlay)  # W&B accepts them as they are


def test_semantic_mask_paints_later_instances_on_top():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 1:3] = True
    out = semantic_mask(masks, torch.tensor([0, 4]), (4, 4))
    assert out.tolist() == [[1] * 4, [5] * 4, [5] * 4, [0] * 4]


def test_needs_a_wandb_logger(tmp_path):
    root = write_tiny_shapes(tmp_path / "shapes", num_train=2, num_val=1)
    trainer = quiet_trainer(
        logger=CSVLogger(tmp_path), callbacks=[WandbPredictionImages()], max_steps=1
    )
    with pytest.raises(MisconfigurationException, match="needs a WandbLogger.*CSVLogger"):
        trainer.fit(tiny_faster_rcnn(), datamodule=tiny_shapes_datamodule(root))


def test_overlays_on_a_padded_canvas_are_relative_to_it():
    image, prediction, target = _prediction_and_target()
    callback = WandbPredictionImages(score_thresh=0.5)
    overlay = callback.overlays(image, prediction, target, ["circle", "square"], (100, 200))
    (pred,) = overlay["boxes"]["predictions"]["box_data"]
    assert pred["position"] == pytest.approx({"minX": 0.05, "minY": 0.1, "maxX": 0.15, "maxY": 0.2})
    gt_mask = overlay["masks"]["ground_truth"]["mask_data"]
    assert gt_mask.shape == (100, 200) and (gt_mask[10:20, 10:30] == 2).all()
    assert gt_mask[50:].sum() == 0 and gt_mask[:, 100:].sum() == 0  # the padding


def read_wandb_records(path: Path) -> dict[str, dict]:
    """The config, summary and history of an offline run's ``.wandb`` file (a LevelDB-style log
    of protobuf records: a 7-byte ``:W&B`` header, 32 KiB blocks, 7-byte record headers), as
    ``{"config": {key: value}, "summary": {...}, "history": [{...}, ...], "records": [kind, ...]}``
    (later updates win; a trailing record still being written is left out).
    wandb >= 0.19 writes files/config.yaml and wandb-summary.json only when the run is synced."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    block, pos, chunks, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        if pos + 7 + length > len(data):  # still being written
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # a whole record
            chunks.append(chunk)
        elif kind == 2:  # first fragment
            pending = chunk
        elif kind == 3:  # middle fragment
            pending += chunk
        else:  # last fragment
            chunks.append(pending + chunk)
            pending = b""
    out: dict = {"config": {}, "summary": {}, "history": [], "records": []}
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        out["records"].append(kind)
        if kind in ("config", "summary"):
            for item in getattr(record, kind).update:
                key = item.key or "/".join(item.nested_key)
                out[kind][key] = json.loads(item.value_json)
        elif kind == "history":
            row = {}
            for item in record.history.item:
                row[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            out["history"].append(row)
    return out


def tiny_mask_rcnn() -> MaskRCNN:
    """Mask R-CNN on a quarter-width ResNet-18 + FPN, keeping every detection (at most 20)
    however low its score, with few proposals and ROIs: fast on ~100 px images."""
    resnet = ResNet(18, norm="BN", freeze_at=0, stem_out_channels=16, res2_out_channels=16)
    backbone = FPN(resnet, out_channels=32, top_block=LastLevelMaxPool())
    model = MaskRCNN(backbone, num_classes=7, score_thresh=0.0, detections_per_image=20)
    model.proposal_generator.post_nms_topk = (64, 64)
    model.roi_heads.batch_size_per_image = 64
    return model


@pytest.mark.slow
def test_fit_logs_metrics_config_and_overlays_offline(offline_wandb, tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    torch.manual_seed(0)
    root = write_tiny_shapes(tmp_path / "shapes", num_train=2, num_val=2)
    logger = WandbLogger(project="detzoo-test", name="tiny", save_dir=str(offline_wandb))
    callback = WandbPredictionImages(num_images=2, every_n_val_epochs=1, score_thresh=0.0)
    trainer = quiet_trainer(
        logger=logger,
        callbacks=[callback],
        max_steps=2,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        log_every_n_steps=1,
    )
    data = tiny_shapes_datamodule(root, batch_size=1)
    trainer.fit(tiny_mask_rcnn(), datamodule=data)
    assert callback.logged_steps == [2]
    files = Path(logger.experiment.dir)  # <save_dir>/wandb/offline-run-<time>-<id>/files
    wandb.finish()

    run_dir = files.parent
    assert run_dir.name.startswith("offline-run-") and run_dir.parent.parent == offline_wandb
    (log,) = run_dir.glob("run-*.wandb")
    # wandb.finish() can return before W&B's service has written the whole log: wait for its end
    deadline = time.monotonic() + 30
    while (run := read_wandb_records(log))["records"][-1:] != ["exit"]:
        assert time.monotonic() < deadline, f"{log} has no exit record: {run['records']}"
        time.sleep(0.2)
    # metrics: the losses of both steps, and the evaluation
    assert sum("train/loss" in row for row in run["history"]) == 2
    assert 0.0 <= run["summary"]["val/bbox/AP"] <= 1.0
    # config: the model's hyper-parameters
    assert run["config"]["num_classes"] == 7 and run["config"]["score_thresh"] == 0.0
    assert run["config"]["backbone"]["class_path"] == "detzoo.backbones.fpn.FPN"
    # the images, with both overlays
    assert run["summary"]["val/predictions/_type"] == "images/separated"
    assert run["summary"]["val/predictions/count"] == 2
    assert run["summary"]["val/predictions/captions"] == ["000000.jpg", "000001.jpg"]
    pngs = run["summary"]["val/predictions/filenames"]
    assert len(pngs) == 2 and all((files / png).is_file() for png in pngs)
    all_boxes = run["summary"]["val/predictions/all_boxes"]
    assert len(all_boxes) == 2 and all(set(b) == {"predictions", "ground_truth"} for b in all_boxes)
    predicted = json.loads((files / all_boxes[0]["predictions"]["path"]).read_text())["box_data"]
    annotated = json.loads((files / all_boxes[0]["ground_truth"]["path"]).read_text())["box_data"]
    assert predicted and annotated  # score_thresh 0: the untrained model's detections too
    assert all(0 <= box["position"]["minX"] <= box["position"]["maxX"] <= 1 for box in annotated)
    assert all(box["box_caption"].endswith(f"{box['scores']['score']:.2f}") for box in predicted)
    # Mask R-CNN: the masks too, as class-id maps (0: background) of the logged image's size
    all_masks = run["summary"]["val/predictions/all_masks"]
    assert len(all_masks) == 2 and all(set(m) == {"predictions", "ground_truth"} for m in all_masks)
    ground_truth = np.array(Image.open(files / all_masks[0]["ground_truth"]["path"]))
    assert ground_truth.shape == (
        run["summary"]["val/predictions/height"],
        run["summary"]["val/predictions/width"],
    )
    assert ground_truth.max() >= 1 and ground_truth.max() <= 7
