"""validation_step/test_step: predictions made on resized images are mapped back to each image's
original size and scored against the original annotations, through a real Lightning loop."""

import lightning as L
import pytest
import torch

from detzoo.data import CocoDetection, DetectionDataModule, build_test_transforms
from detzoo.models.faster_rcnn import FasterRCNN

from ..data.tiny_coco import base_dataset, write_dataset
from .test_training_steps import _faster_rcnn_fpn


def _dataset_with_objects(root):
    dataset = base_dataset()
    dataset["annotations"] += [
        # image 2 (50x30) gets two squares; image 1 already has one plus a crowd blob
        {"id": 20, "image_id": 2, "category_id": 5, "bbox": [2, 3, 12, 14], "iscrowd": 0,
         "area": 168.0, "segmentation": [[2, 3, 14, 3, 14, 17, 2, 17]]},
        {"id": 21, "image_id": 2, "category_id": 9, "bbox": [14, 20, 12, 25], "iscrowd": 0,
         "area": 300.0, "segmentation": [[14, 20, 26, 20, 26, 45, 14, 45]]},
    ]  # fmt: skip
    path = write_dataset(root, dataset)
    # the shortest side becomes 64: every image is upscaled by a different, non-integer factor
    return CocoDetection(root / "images", path, transforms=build_test_transforms(64, 200))


class _Oracle:
    """A ``detect`` returning the ground truth of each image in the input (resized) frame, with
    its boxes shifted by ``shift`` original pixels."""

    def __init__(self, dataset, shift: float = 0.0):
        self.dataset, self.shift, self.index = dataset, shift, 0

    def __call__(self, images):
        detections = []
        for height, width in images.image_sizes:
            record = self.dataset.records[self.index]
            self.index += 1
            things = [a for a in record["annotations"] if not a["iscrowd"]]
            boxes = torch.tensor([a["bbox"] for a in things], dtype=torch.float32).reshape(-1, 4)
            boxes = boxes + self.shift
            scale = torch.tensor([width / record["width"], height / record["height"]] * 2)
            detections.append(
                {
                    "boxes": boxes * scale,
                    "scores": torch.ones(len(things)),
                    "labels": torch.tensor([a["label"] for a in things], dtype=torch.int64),
                }
            )
        return detections


def _evaluate(model: FasterRCNN, dataset, stage: str) -> dict:
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    datamodule = DetectionDataModule(val_dataset=dataset, test_dataset=dataset, num_workers=0)
    run = trainer.validate if stage == "val" else trainer.test
    return run(model, datamodule=datamodule, verbose=False)[0]


@pytest.mark.parametrize("stage", ["val", "test"])
def test_perfect_predictions_score_ap_one_at_original_size(tmp_path, stage):
    dataset = _dataset_with_objects(tmp_path)
    model = _faster_rcnn_fpn(num_classes=2)
    model.detect = _Oracle(dataset)
    results = _evaluate(model, dataset, stage)
    assert results[f"{stage}/bbox/AP"] == pytest.approx(1.0)
    assert results[f"{stage}/bbox/AP-square"] == pytest.approx(1.0)


def test_shifted_predictions_lose_strict_ap_only(tmp_path):
    dataset = _dataset_with_objects(tmp_path)
    model = _faster_rcnn_fpn(num_classes=2)
    # 2 px on boxes 12-25 px wide: IoU 0.56-0.64 for every object
    model.detect = _Oracle(dataset, shift=2.0)
    results = _evaluate(model, dataset, "val")
    assert results["val/bbox/AP50"] == pytest.approx(1.0)
    assert results["val/bbox/AP75"] == pytest.approx(0.0)


def test_targets_in_the_resized_frame_are_refused(tmp_path):
    dataset = _dataset_with_objects(tmp_path)
    dataset.transforms = build_test_transforms(64, 200, map_targets=True)
    model = _faster_rcnn_fpn(num_classes=2)
    model.detect = _Oracle(dataset)
    with pytest.raises(ValueError, match="original image frame"):
        _evaluate(model, dataset, "val")
