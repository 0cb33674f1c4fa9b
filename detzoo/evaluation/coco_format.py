"""detzoo's per-image dicts as COCO json records, and COCOeval run on them with either backend.

The records are what Detectron2's ``instances_to_coco_json`` writes and what pycocotools'
``COCO.loadRes`` reads: ``bbox`` XYWH in pixels, ``score``, ``category_id``, ``segmentation``
as RLE with ``counts`` a str, ``keypoints`` flat ``[x, y, score] * K``.
"""

import contextlib
import io
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pycocotools.mask as mask_util
from torch import Tensor

Backend = Literal["pycocotools", "faster_coco_eval"]

# COCOeval's thresholds (pycocotools ``Params.setDetParams``), float64 as COCOeval builds them.
# torchmetrics' defaults are float32 ``torch.linspace`` values (0.07 -> 0.07000000029): where a
# recall lands exactly on a threshold, the precision lookup then skips that point and AP differs
# from COCOeval's.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_RECALL_THRESHOLDS = np.linspace(
    0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True
)


def to_numpy(value: Tensor | np.ndarray | Sequence) -> np.ndarray:
    """A detached CPU numpy array of ``value``."""
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def xyxy_to_xywh(boxes: Tensor | np.ndarray) -> np.ndarray:
    """float64 ``[N, 4]`` XYWH from ``[N, 4]`` (or ``[4N]``) XYXY boxes, in pixels."""
    boxes = to_numpy(boxes).astype(np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def encode_masks(masks: Tensor | np.ndarray) -> list[dict]:
    """COCO RLEs (``counts`` a str, json-ready) of binary masks ``[N, H, W]``."""
    masks = to_numpy(masks)
    if len(masks) == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("utf-8")
    return rles


def prediction_records(
    prediction: dict[str, Any],
    image_id: int,
    category_ids: Sequence[int] | None = None,
    fields: Sequence[str] = ("segmentation", "keypoints"),
) -> list[dict]:
    """COCO result records of one image's prediction dict.

    Args:
        prediction: ``boxes`` ``[N, 4]`` XYXY pixels, ``scores`` ``[N]``, ``labels`` int ``[N]``
            (contiguous), optional ``masks`` ``[N, H, W]`` (or their RLEs under ``rles``) and
            ``keypoints`` ``[N, K, 3]`` (x, y, score).
        image_id: the record's ``image_id``.
        category_ids: ``category_ids[label]`` is the dataset's category id of a contiguous
            label; ``None`` keeps the labels.
        fields: which of ``"segmentation"`` and ``"keypoints"`` to write when present.
    """
    labels = to_numpy(prediction["labels"]).astype(np.int64).tolist()
    if category_ids is not None:
        unknown = sorted({label for label in labels if not 0 <= label < len(category_ids)})
        if unknown:
            raise ValueError(
                f"image {image_id}: predicted labels {unknown} have no dataset category id "
                f"(the dataset has {len(category_ids)} classes); the model's num_classes must "
                "match the evaluated dataset"
            )
        labels = [int(category_ids[label]) for label in labels]
    boxes = xyxy_to_xywh(prediction["boxes"]).tolist()
    scores = to_numpy(prediction["scores"]).astype(np.float32).tolist()
    records = [
        {"image_id": image_id, "category_id": label, "bbox": box, "score": score}
        for label, box, score in zip(labels, boxes, scores)
    ]
    if "segmentation" in fields and ("rles" in prediction or "masks" in prediction):
        rles = prediction["rles"] if "rles" in prediction else encode_masks(prediction["masks"])
        for record, rle in zip(records, rles):
            record["segmentation"] = rle
    if "keypoints" in fields and "keypoints" in prediction:
        keypoints = to_numpy(prediction["keypoints"]).astype(np.float32).reshape(len(records), -1)
        for record, flat in zip(records, keypoints.tolist()):
            record["keypoints"] = flat
    return records


def run_cocoeval(
    ground_truth: dict,
    results: list[dict],
    iou_type: Literal["bbox", "segm", "keypoints"],
    backend: Backend = "pycocotools",
    oks_sigmas: np.ndarray | None = None,
) -> Any:
    """COCOeval of ``results`` against the COCO-format ``ground_truth`` dict, accumulated and
    summarised (``.stats``, ``.eval["precision"]`` ``[T, R, K, A, M]``), with COCOeval's own
    float64 thresholds. As Detectron2 does, ``bbox`` is dropped from ``segm`` results so that a
    detection's area is its mask's."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    elif backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval
        except ImportError as error:
            raise ImportError(
                "backend='faster_coco_eval' needs the faster-coco-eval package: "
                "pip install 'detzoo[fast-eval]'"
            ) from error
    else:
        raise ValueError(f"backend must be 'pycocotools' or 'faster_coco_eval', got {backend!r}")
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):  # both backends print progress
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list; no detection at all is AP 0 where GT exists
            coco_dt = COCO()
            coco_dt.dataset = {**ground_truth, "annotations": []}
            coco_dt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        coco_eval.params.iouThrs = COCO_IOU_THRESHOLDS.copy()
        coco_eval.params.recThrs = COCO_RECALL_THRESHOLDS.copy()
        if oks_sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.asarray(oks_sigmas, np.float64)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval
