"""Reference values for the metrics a model's Lightning validation logs, computed apart from
detzoo's evaluators: the model predicts the validation images again (after ``fit``), and
pycocotools' ``COCOeval`` scores those predictions against the validation annotation json, as
Detectron2's ``COCOEvaluator`` does with its results file; mIoU comes from a confusion matrix built
here with numpy, by Detectron2's ``SemSegEvaluator`` formula.

A model test then asserts that what its run logged equals these numbers: predictions mapped back to
the original images, labels to the json's category ids, the dataset's OKS sigmas, crowd regions and
areas all have to be right for that to hold, which a range check such as ``0 <= AP <= 1`` never
tests.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detzoo.evaluation.coco import COCO_STAT_KEYS
from detzoo.evaluation.keypoints import KEYPOINT_STAT_KEYS
from detzoo.structures import crop_and_resize_bitmasks

#: COCOeval.stats names, in its order (Detectron2's key names)
COCO_STATS = {"bbox": COCO_STAT_KEYS, "segm": COCO_STAT_KEYS, "keypoints": KEYPOINT_STAT_KEYS}


class GroundTruthDetector:
    """A ``detect`` returning each validation image's ground truth as detections, in the input
    (resized) frame: boxes with score 1, keypoints moved by ``shift`` original pixels (score 1),
    and as mask probabilities ``[D, 1, 28, 28]`` the ground-truth masks cropped to the boxes (what
    a perfect mask head would predict, up to resampling). The images come in dataset order; set
    :attr:`index` back to 0 before each pass over them."""

    def __init__(self, dataset, shift: float = 0.0) -> None:
        self.dataset, self.shift, self.index = dataset, shift, 0

    def __call__(self, images) -> list[dict]:
        detections = []
        for height, width in images.image_sizes:
            _, target = self.dataset[self.index]
            self.index += 1
            keep = target["iscrowd"] == 0
            orig_h, orig_w = target["orig_size"]
            scale = torch.tensor([width / orig_w, height / orig_h])
            boxes = target["boxes"][keep]
            n = len(boxes)
            detection = {
                "boxes": boxes * scale.repeat(2),
                "scores": torch.ones(n),
                "labels": target["labels"][keep],
            }
            if "keypoints" in target:
                keypoints = target["keypoints"][keep].clone()
                keypoints[..., :2] = (keypoints[..., :2] + self.shift) * scale
                keypoints[..., 2] = 1.0
                detection["keypoints"] = keypoints
            if "masks" in target:
                crops = crop_and_resize_bitmasks(target["masks"][keep], boxes, torch.arange(n), 28)
                detection["masks"] = crops[:, None].float()
            detections.append(detection)
        return detections


def predict_val(model, datamodule) -> list[tuple[dict, dict]]:
    """``(prediction, target)`` for every validation image, predicted as validation does (at the
    image's original size), the model in eval mode without gradients."""
    model.eval()
    pairs = []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            pairs += list(zip(model.predict_step(batch, 0), batch[1]))
    return pairs


def _coco_results(
    pairs, category_ids: list[int], iou_type: str, keypoint_offset: float = 0.0
) -> list[dict]:
    results = []
    for pred, target in pairs:
        image_id = int(target["image_id"])
        boxes = pred["boxes"].double().numpy()
        for i, (box, score, label) in enumerate(
            zip(boxes, pred["scores"].tolist(), pred["labels"].tolist())
        ):
            result = {"image_id": image_id, "category_id": category_ids[label], "score": score}
            if iou_type == "segm":
                # no "bbox": pycocotools would take the box area as the detection's area (and
                # Detectron2 drops it for mask AP for that reason)
                mask = np.asfortranarray(pred["masks"][i].numpy().astype(np.uint8))
                rle = mask_util.encode(mask)
                rle["counts"] = rle["counts"].decode("ascii")
                result["segmentation"] = rle
            else:
                x0, y0, x1, y1 = box.tolist()
                result["bbox"] = [x0, y0, x1 - x0, y1 - y0]
            if iou_type == "keypoints":
                # Detectron2's instances_to_coco_json: back from the model's continuous frame to
                # the json's pixel indices (the reader added keypoint_offset to the labels)
                keypoints = pred["keypoints"][i].double().clone()
                keypoints[:, :2] -= keypoint_offset
                result["keypoints"] = keypoints.flatten().tolist()
            results.append(result)
    return results


def reference_coco_metrics(pairs, dataset, iou_type: str, oks_sigmas=None) -> dict[str, float]:
    """``{"<iou_type>/AP": ..., ...}``: COCOeval's stats for the predictions of ``pairs`` (from
    :func:`predict_val`) against ``dataset``'s annotation json (a :class:`CocoDetection`: its
    ``categories`` in label order; predicted keypoints moved back by its ``keypoint_offset``, as
    Detectron2 writes them), ``nan`` where COCOeval gives -1."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(dataset.annotation_json)
        category_ids = [c["id"] for c in dataset.categories]
        offset = getattr(dataset, "keypoint_offset", 0.0)
        results = _coco_results(pairs, category_ids, iou_type, offset)
        assert results, "no predictions to score"
        evaluation = COCOeval(gt, gt.loadRes(results), iou_type)
        if oks_sigmas is not None:
            evaluation.params.kpt_oks_sigmas = np.asarray(oks_sigmas, dtype=np.float64)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {
        f"{iou_type}/{name}": float(value) if value >= 0 else math.nan
        for name, value in zip(COCO_STATS[iou_type], evaluation.stats)
    }


def reference_miou(pairs, num_classes: int, ignore_index: int = 255) -> dict[str, float]:
    """Detectron2's ``SemSegEvaluator`` mIoU and per-class IoU (``"sem_seg/IoU-<c>"``, by class
    index) of the argmax of each prediction's ``sem_seg`` logits against the target's
    ``sem_seg`` (``ignore_index`` pixels left out); classes without ground truth are nan and
    left out of the mean."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)  # [prediction, ground truth]
    for pred, target in pairs:
        predicted = pred["sem_seg"].argmax(dim=0).numpy().ravel()
        truth = target["sem_seg"].numpy().ravel()
        assert predicted.shape == truth.shape
        kept = truth != ignore_index
        np.add.at(conf, (predicted[kept], truth[kept]), 1)
    tp = np.diag(conf).astype(np.float64)
    pos_gt = conf.sum(axis=0).astype(np.float64)
    pos_pred = conf.sum(axis=1).astype(np.float64)
    valid = pos_gt > 0
    iou = np.full(num_classes, np.nan)
    iou[valid] = tp[valid] / (pos_gt + pos_pred - tp)[valid]
    out = {"sem_seg/mIoU": float(np.mean(iou[valid]))}
    out.update({f"sem_seg/IoU-{c}": float(iou[c]) for c in range(num_classes)})
    return out


def assert_logged(metrics, reference: dict[str, float], keys) -> None:
    """The logged ``val/<key>`` of every key equals the reference (float32 logging: 1e-6),
    nan where the reference is nan."""
    for key in keys:
        logged = float(metrics[f"val/{key}"])
        expected = reference[key]
        if math.isnan(expected):
            assert math.isnan(logged), key
        else:
            assert logged == pytest.approx(expected, abs=1e-6), key
