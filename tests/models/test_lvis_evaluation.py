"""A model evaluated on an LVIS dataset scores it with LVIS's federated AP (``LVISEvaluator``, as
Detectron2 picks its LVISEvaluator for LVIS datasets), on a COCO dataset with COCO AP; the LVIS
targets' negative / not-exhaustive labels reach the evaluator through a real Lightning loop."""

from types import SimpleNamespace

import pytest
import torch

from detzoo.data import CocoDetection, LvisDetection, build_test_transforms
from detzoo.evaluation import CocoEvaluator, CocoResultsWriter, LVISEvaluator
from detzoo.evaluation.results_file import LVIS_RESULTS_FILE

from ..data.tiny_coco import base_dataset, write_dataset
from ..evaluation.test_lvis import LVIS_CATEGORIES, write_federated_lvis
from .test_evaluation_steps import _evaluate, _Oracle
from .test_mask_rcnn import _fpn as _mask_rcnn_fpn
from .test_training_steps import _faster_rcnn_fpn


def _evaluators_for(model, val_dataset) -> list:
    """The model's evaluators for a validation run, from a stand-in trainer."""
    model._trainer = SimpleNamespace(
        datamodule=SimpleNamespace(val_dataset=val_dataset, test_dataset=None), testing=False
    )
    try:
        return model.build_evaluators()
    finally:
        model._trainer = None


def test_lvis_datasets_get_the_lvis_evaluator_and_coco_datasets_the_coco_one(tmp_path):
    lvis = LvisDetection(tmp_path / "coco", write_federated_lvis(tmp_path))
    model = _mask_rcnn_fpn(num_classes=3)
    model.results_dir = str(tmp_path / "results")
    evaluators = _evaluators_for(model, lvis)
    assert not any(isinstance(e, CocoEvaluator) for e in evaluators)
    (evaluator,) = [e for e in evaluators if isinstance(e, LVISEvaluator)]
    assert evaluator.frequencies == ["r", "c", "f"]
    assert evaluator.iou_types == ("bbox", "segm")
    assert evaluator.class_names == [c["name"] for c in LVIS_CATEGORIES]
    assert evaluator.max_dets_per_image == 300  # LVIS's, and Detectron2's LVIS configs'
    (writer,) = [e for e in evaluators if isinstance(e, CocoResultsWriter)]  # kept as it was
    assert writer.path.name == LVIS_RESULTS_FILE and writer.category_ids == [5, 9, 13]

    coco = CocoDetection(tmp_path / "images", write_dataset(tmp_path, base_dataset()))
    evaluators = _evaluators_for(_faster_rcnn_fpn(num_classes=2), coco)
    assert not any(isinstance(e, LVISEvaluator) for e in evaluators)
    (evaluator,) = [e for e in evaluators if isinstance(e, CocoEvaluator)]
    assert evaluator.class_names == ["square", "blob"]


class _FederatedOracle(_Oracle):
    """The ground truth at score 0.5, plus per image one detection far from every object at
    score 0.9: of a label image 1 neither has nor lists as negative, of image 2's not-exhaustive
    label, and of image 3's negative label."""

    EXTRA_LABELS = (2, 1, 0)

    def __call__(self, images):
        first = self.index
        detections = super().__call__(images)
        for k, detection in enumerate(detections):
            label = self.EXTRA_LABELS[first + k]
            far = torch.tensor([[50.0, 50.0, 60.0, 60.0]])  # no object there in any resized image
            detection["boxes"] = torch.cat([detection["boxes"], far])
            detection["scores"] = torch.tensor([0.5] * (len(detection["scores"])) + [0.9])
            detection["labels"] = torch.cat([detection["labels"], torch.tensor([label])])
        return detections


@pytest.mark.parametrize("stage", ["val", "test"])
def test_validation_reports_federated_ap_by_frequency(tmp_path, stage):
    dataset = LvisDetection(
        tmp_path / "coco",
        write_federated_lvis(tmp_path),
        transforms=build_test_transforms(64, 200),
    )
    model = _faster_rcnn_fpn(num_classes=3)
    model.detect = _FederatedOracle(dataset)
    metrics = _evaluate(model, dataset, stage)
    # label 0 (rare): a false positive above its true positive (image 3 lists it as negative):
    # AP 1/2; label 1 (common): the detection in image 2, where it is not exhaustive, is
    # ignored: AP 1; label 2 (frequent): image 1 says nothing of it, its detection is dropped:
    # AP 1. COCO AP would count all three as false positives (AP 1/2 each).
    expected = {"APr": 1 / 2, "APc": 1.0, "APf": 1.0, "AP": 5 / 6, "AP-blob": 1.0}
    assert {k: metrics[f"{stage}/bbox/{k}"] for k in expected} == pytest.approx(expected)
