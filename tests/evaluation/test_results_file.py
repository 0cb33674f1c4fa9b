"""Results files (Detectron2's ``coco_instances_results.json``, LVIS's, COCO panoptic's): written
with the dataset's own category ids, re-scored by pycocotools to the numbers detzoo's evaluators
report, written once by rank 0 under DDP, and written by validate/test when the model has a
``results_dir``."""

import contextlib
import io
import json
import math
import socket
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detzoo.data import CocoDetection, CocoKeypoints, LvisDetection, build_test_transforms
from detzoo.evaluation import (
    CocoEvaluator,
    CocoResultsWriter,
    KeypointEvaluator,
    PanopticResultsWriter,
)
from detzoo.evaluation.coco import COCO_STAT_KEYS
from detzoo.evaluation.results_file import (
    COCO_RESULTS_FILE,
    LVIS_RESULTS_FILE,
    category_ids_by_label,
)
from detzoo.lightning_cli import DetzooCLI

from ..data.test_lvis import _write_lvis
from ..data.tiny_coco import write_image
from ..models.test_evaluation_steps import _dataset_with_objects, _evaluate, _Oracle
from ..models.test_panoptic_fpn import _panoptic
from ..models.test_training_steps import _faster_rcnn_fpn
from . import scenes
from . import test_keypoints as keypoint_scene

CATEGORY_IDS = (3, 7, 11)  # the dataset's ids of labels 0, 1, 2: not contiguous, as in COCO
KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# a detection of label 2 (category 11, no ground truth) added to image 1 of the scene
EXTRA_DET = (1, 2, 0.5, np.pad(np.ones((20, 30), np.uint8), ((90, 18), (60, 38))))
SHAPES_RECIPE = Path(__file__).resolve().parents[2] / "zoo_configs/shapes/faster_rcnn_R18_FPN.yaml"


# ---- the scene as a dataset on disk, its predictions, and the records expected of them --------
def _write_scene_json(root: Path) -> Path:
    """scenes' ground truth as a COCO instances json with the category ids 3, 7, 11."""
    content = scenes.coco_gt_json()  # category id = label + 1
    for annotation in content["annotations"]:
        annotation["category_id"] = CATEGORY_IDS[annotation["category_id"] - 1]
    names = [*scenes.CLASS_NAMES, "wide"]
    content["categories"] = [{"id": c, "name": n} for c, n in zip(CATEGORY_IDS, names)]
    for image in content["images"]:
        image["file_name"] = f"{image['id']}.png"
    path = root / "instances.json"
    path.write_text(json.dumps(content))
    return path


def _predictions() -> list[dict[str, torch.Tensor]]:
    preds = scenes.predictions()
    image, label, score, mask = EXTRA_DET
    pred = preds[image]
    pred["boxes"] = torch.cat([pred["boxes"], torch.tensor([[60.0, 90.0, 90.0, 110.0]])])
    pred["scores"] = torch.cat([pred["scores"], torch.tensor([score])])
    pred["labels"] = torch.cat([pred["labels"], torch.tensor([label])])
    pred["masks"] = torch.cat([pred["masks"], torch.from_numpy(mask)[None].bool()])
    return preds


def _expected_records() -> list[dict]:
    """Detectron2's records of the scene's detections, built one mask at a time as it does."""
    records = []
    for image, label, score, mask in sorted([*scenes.DETS, EXTRA_DET], key=lambda d: d[0]):
        ys, xs = np.nonzero(mask)
        rle = mask_util.encode(np.array(mask[:, :, None], order="F", dtype="uint8"))[0]
        rle["counts"] = rle["counts"].decode("utf-8")
        records.append(
            {
                "image_id": image,
                "category_id": CATEGORY_IDS[label],
                "bbox": [
                    float(xs.min()),
                    float(ys.min()),
                    float(np.ptp(xs) + 1),
                    float(np.ptp(ys) + 1),
                ],
                "score": float(np.float32(score)),
                "segmentation": rle,
            }
        )
    return records


def _write_scene_results(tmp_path: Path) -> tuple[Path, Path]:
    gt_json = _write_scene_json(tmp_path)
    dataset = CocoDetection(tmp_path, gt_json)
    category_ids = category_ids_by_label(dataset.thing_dataset_id_to_contiguous_id)
    assert category_ids == list(CATEGORY_IDS)
    writer = CocoResultsWriter(tmp_path / "out" / COCO_RESULTS_FILE, category_ids)
    preds, targets = _predictions(), scenes.targets()
    writer.update(preds[:2], targets[:2])
    writer.update(preds[2:], targets[2:])
    assert writer.compute() == {}
    return gt_json, tmp_path / "out" / COCO_RESULTS_FILE


def _cocoeval_stats(gt_json: Path, results, iou_type: str, sigmas=None) -> list[float]:
    """COCOeval's stats of ``results`` (a results file path or a list of records)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        ev = COCOeval(gt, gt.loadRes(results), iouType=iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.array(sigmas, np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def _without_bbox(records: list[dict]) -> list[dict]:
    """What Detectron2 re-scores masks on: without a bbox, a detection's area is its mask's."""
    return [{k: v for k, v in r.items() if k != "bbox"} for r in records]


def _assert_same(results: dict[str, float], prefix: str, names, stats: list[float]) -> None:
    for name, stat in zip(names, stats, strict=True):
        value = results[f"{prefix}/{name}"]
        if stat < 0:  # COCOeval's -1: undefined
            assert math.isnan(value), name
        else:
            assert value == pytest.approx(stat, abs=1e-9), name


# ---- the records ---------------------------------------------------------------------------
def test_records_are_detectron2s_with_the_dataset_category_ids(tmp_path):
    _, results_json = _write_scene_results(tmp_path)
    records = json.loads(results_json.read_text())
    assert records == _expected_records()
    assert {r["category_id"] for r in records} == set(CATEGORY_IDS)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_rescoring_the_file_gives_the_evaluators_numbers(tmp_path, iou_type):
    gt_json, results_json = _write_scene_results(tmp_path)
    records = json.loads(results_json.read_text())
    if iou_type == "bbox":
        stats = _cocoeval_stats(gt_json, str(results_json), "bbox")  # the file, as users load it
        expected = _cocoeval_stats(gt_json, _expected_records(), "bbox")
    else:
        stats = _cocoeval_stats(gt_json, _without_bbox(records), "segm")
        expected = _cocoeval_stats(gt_json, _without_bbox(_expected_records()), "segm")
    np.testing.assert_allclose(stats, expected, rtol=0, atol=1e-9)

    evaluator = CocoEvaluator(("bbox", "segm"))
    evaluator.update(_predictions(), scenes.targets())
    _assert_same(evaluator.compute(), iou_type, COCO_STAT_KEYS, stats)
    assert 0.2 < stats[0] < 0.9  # misses, false positives and the crowd all count


def _write_keypoint_dataset(root: Path) -> Path:
    """test_keypoints' scene as a COCO keypoints json (category id 7, integer pixel coordinates)
    with its images."""
    annotations = keypoint_scene.gt_annotations(list(range(len(keypoint_scene.GT))), 7)
    images = [
        {"id": i, "file_name": f"{i}.png", "height": 128, "width": 128}
        for i in range(len(keypoint_scene.GT))
    ]
    for image in images:
        write_image(root / image["file_name"], 128, 128)
    category = {"id": 7, "name": "figure", "keypoints": ["head", "hand", "hip", "foot"]}
    path = root / "keypoints.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [category]})
    )
    return path


def test_keypoint_results_rescore_to_the_keypoint_evaluators_numbers(tmp_path):
    """The reader adds 0.5 to the file's pixel indices and the model predicts in that frame; the
    writer takes the 0.5 off again, as Detectron2 does, so COCOeval on the file and detzoo's
    KeypointEvaluator (which compares in the reader's frame) give the same numbers."""
    gt_json = _write_keypoint_dataset(tmp_path)
    dataset = CocoKeypoints(tmp_path, gt_json, with_masks=False)
    assert dataset.keypoint_offset == 0.5
    targets = [dataset[i][1] for i in range(len(dataset))]
    preds = keypoint_scene._preds()
    for pred in preds:  # predicted in the reader's frame
        pred["keypoints"][..., :2] += 0.5
    writer = CocoResultsWriter(tmp_path / COCO_RESULTS_FILE, [7], keypoint_offset=0.5)
    writer.update(preds, targets)
    writer.compute()

    records = json.loads((tmp_path / COCO_RESULTS_FILE).read_text())
    first = keypoint_scene.PREDS[0][0][2]  # the file's frame again
    assert records[0]["keypoints"] == [float(c) for kp in first for c in kp]
    assert records[0]["category_id"] == 7
    sigmas = keypoint_scene.SIGMAS
    stats = _cocoeval_stats(gt_json, str(tmp_path / COCO_RESULTS_FILE), "keypoints", sigmas)
    evaluator = KeypointEvaluator(sigmas)
    evaluator.update(preds, targets)
    _assert_same(evaluator.compute(), "keypoints", KEYPOINT_STATS, stats)
    assert 0.1 < stats[0] < 0.9


def test_errors_name_the_label_and_the_image(tmp_path):
    writer = CocoResultsWriter(tmp_path / COCO_RESULTS_FILE, [3, 7])
    with pytest.raises(
        ValueError, match=r"image 1: predicted labels \[2\] have no dataset category"
    ):
        writer.update(_predictions()[1:2], scenes.targets()[1:2])
    target = {k: v for k, v in scenes.targets()[0].items() if k != "image_id"}
    with pytest.raises(ValueError, match="target 0 has no 'image_id'"):
        writer.update(_predictions()[:1], [target])
    with pytest.raises(ValueError, match=r"must give the labels \[0, 1\] once each"):
        category_ids_by_label({3: 0, 7: 0})


def test_without_a_category_map_labels_are_written_as_they_are(tmp_path):
    writer = CocoResultsWriter(tmp_path / "sub" / COCO_RESULTS_FILE)
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()}
    writer.update([_predictions()[1], empty], [scenes.targets()[1], {"image_id": 5}])
    writer.compute()
    records = json.loads((tmp_path / "sub" / COCO_RESULTS_FILE).read_text())
    assert [r["category_id"] for r in records] == [0, 1, 2]
    writer.reset()
    writer.compute()
    assert json.loads((tmp_path / "sub" / COCO_RESULTS_FILE).read_text()) == []


# ---- panoptic ------------------------------------------------------------------------------
def _panoptic_prediction() -> dict:
    panoptic = torch.zeros(6, 8, dtype=torch.int32)
    panoptic[:3] = 300  # a stuff segment whose id needs the G channel
    panoptic[4:, 2:5] = 1
    segments = [
        {"id": 1, "isthing": True, "score": 0.9, "category_id": 1, "instance_id": 0},
        {"id": 300, "isthing": False, "category_id": 2, "area": 24},
    ]
    return {"panoptic_seg": panoptic, "segments_info": segments}


def test_panoptic_pngs_and_json_in_the_coco_panoptic_format(tmp_path):
    writer = PanopticResultsWriter(tmp_path, [3, 7], [20, 21])
    prediction = _panoptic_prediction()
    writer.update([prediction], [{"image_id": 42, "file_name": "/data/val/000042.jpg"}])
    assert writer.compute() == {}

    content = json.loads((tmp_path / "predictions.json").read_text())
    assert content == {
        "annotations": [
            {
                "image_id": 42,
                "file_name": "000042.png",
                "segments_info": [
                    {"id": 1, "score": 0.9, "category_id": 7, "instance_id": 0},
                    {"id": 300, "category_id": 21, "area": 24},
                ],
            }
        ]
    }
    rgb = cv2.imread(str(tmp_path / "predictions" / "000042.png"))[..., ::-1].astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
    assert np.array_equal(ids, prediction["panoptic_seg"].numpy())

    with pytest.raises(ValueError, match="stuff channel 2 has no dataset category id"):
        PanopticResultsWriter(tmp_path, [3, 7], [20]).update(
            [prediction], [{"image_id": 42, "file_name": "a.jpg"}]
        )


# ---- DDP: rank 0 writes every image once ---------------------------------------------------
def _write_part(rank: int, world_size: int, out_dir: Path) -> None:
    """Each rank's share of the scene (uneven: rank 0 gets more), into its own folder."""
    part = slice(rank, None, world_size)
    instances = CocoResultsWriter(out_dir / f"rank{rank}" / COCO_RESULTS_FILE, CATEGORY_IDS)
    instances.update(_predictions()[part], scenes.targets()[part])
    panoptic = PanopticResultsWriter(out_dir / f"rank{rank}", [3, 7], [20, 21])
    images = [{"image_id": i, "file_name": f"{i}.jpg"} for i in range(3)][part]
    panoptic.update([_panoptic_prediction()] * len(images), images)
    for writer in (instances, panoptic):
        writer.compute()


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        _write_part(rank, 2, Path(out_dir))
    finally:
        dist.destroy_process_group()


def test_two_ranks_write_every_image_once_from_rank_zero(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp_path / "ddp")), nprocs=2, join=True)
    assert not (tmp_path / "ddp" / "rank1").exists()  # only rank 0 writes
    _write_part(0, 1, tmp_path / "one")

    def by_image(path: Path) -> list[dict]:
        return sorted(json.loads(path.read_text()), key=lambda r: (r["image_id"], -r["score"]))

    gathered = by_image(tmp_path / "ddp" / "rank0" / COCO_RESULTS_FILE)
    assert gathered == by_image(tmp_path / "one" / "rank0" / COCO_RESULTS_FILE)
    assert len(gathered) == len(scenes.DETS) + 1  # every detection of every image, once
    panoptic = json.loads((tmp_path / "ddp" / "rank0" / "predictions.json").read_text())
    assert sorted(a["image_id"] for a in panoptic["annotations"]) == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "ddp" / "rank0" / "predictions").iterdir()) == [
        "0.png",
        "1.png",
        "2.png",
    ]


# ---- wiring: validate/test, LVIS, the model's evaluators and the command line ---------------
@pytest.mark.parametrize("stage", ["val", "test"])
def test_validate_and_test_write_the_results_file(tmp_path, stage):
    dataset = _dataset_with_objects(tmp_path)  # category ids 5 and 9, resized for evaluation
    model = _faster_rcnn_fpn(num_classes=2)
    model.detect = _Oracle(dataset)  # the ground truth, in the resized frame
    model.results_dir = str(tmp_path / "results")
    metrics = _evaluate(model, dataset, stage)

    results_json = tmp_path / "results" / COCO_RESULTS_FILE
    records = json.loads(results_json.read_text())
    assert {r["category_id"] for r in records} == {5, 9}
    assert sorted(r["image_id"] for r in records) == [1, 2, 2]
    stats = _cocoeval_stats(Path(dataset.annotation_json), str(results_json), "bbox")
    assert stats[0] == pytest.approx(metrics[f"{stage}/bbox/AP"]) == pytest.approx(1.0)


def test_lvis_datasets_get_the_lvis_results_file(tmp_path):
    dataset = LvisDetection(
        tmp_path / "coco", _write_lvis(tmp_path), transforms=build_test_transforms(64, 200)
    )
    model = _faster_rcnn_fpn(num_classes=2)
    model.detect = _Oracle(dataset)
    model.results_dir = str(tmp_path / "results")
    _evaluate(model, dataset, "val")
    records = json.loads((tmp_path / "results" / LVIS_RESULTS_FILE).read_text())
    assert [(r["image_id"], r["category_id"]) for r in records] == [(1, 5)]
    assert not (tmp_path / "results" / COCO_RESULTS_FILE).exists()


def _evaluators_for(model, val_dataset, test_dataset=None, testing: bool = False) -> list:
    """The model's evaluators for a validation (or test) run, from a stand-in trainer."""
    datamodule = SimpleNamespace(val_dataset=val_dataset, test_dataset=test_dataset)
    model._trainer = SimpleNamespace(datamodule=datamodule, testing=testing)
    try:
        return model.build_evaluators()
    finally:
        model._trainer = None


def test_the_model_adds_writers_only_with_a_results_dir(tmp_path):
    keypoints = SimpleNamespace(thing_dataset_id_to_contiguous_id={3: 0, 7: 1}, keypoint_offset=0.5)
    model = _faster_rcnn_fpn(num_classes=2)
    assert not any(isinstance(e, CocoResultsWriter) for e in _evaluators_for(model, keypoints))
    model.results_dir = str(tmp_path)
    (writer,) = [e for e in _evaluators_for(model, keypoints) if isinstance(e, CocoResultsWriter)]
    assert writer.path == tmp_path / COCO_RESULTS_FILE
    assert writer.category_ids == [3, 7] and writer.keypoint_offset == 0.5

    panoptic = SimpleNamespace(
        thing_dataset_id_to_contiguous_id={3: 0, 7: 1, 9: 2},
        stuff_dataset_id_to_contiguous_id={20: 1, 21: 2},
    )
    model = _panoptic()
    model.results_dir = str(tmp_path)
    evaluators = _evaluators_for(model, panoptic)
    (writer,) = [e for e in evaluators if isinstance(e, PanopticResultsWriter)]
    assert writer.output_dir == tmp_path
    assert writer.thing_category_ids == [3, 7, 9] and writer.stuff_category_ids == [20, 21]
    assert any(isinstance(e, CocoResultsWriter) for e in evaluators)  # instances too


def test_a_test_run_writes_the_test_datasets_category_ids(tmp_path):
    val = SimpleNamespace(thing_dataset_id_to_contiguous_id={3: 0, 7: 1})
    test = SimpleNamespace(thing_dataset_id_to_contiguous_id={5: 0, 9: 1})
    model = _faster_rcnn_fpn(num_classes=2)
    model.results_dir = str(tmp_path)
    for testing, category_ids in ((False, [3, 7]), (True, [5, 9])):
        evaluators = _evaluators_for(model, val, test, testing)
        (writer,) = [e for e in evaluators if isinstance(e, CocoResultsWriter)]
        assert writer.category_ids == category_ids


def test_the_command_line_sets_the_results_dir(tmp_path):
    args = ["--config", str(SHAPES_RECIPE), "--data.root", str(tmp_path)]
    assert DetzooCLI(args, run=False).model.results_dir is None
    cli = DetzooCLI([*args, "--results_dir", str(tmp_path / "out")], run=False)
    assert cli.model.results_dir == str(tmp_path / "out")
    assert "results_dir" not in cli.model.hparams  # a run setting, not recorded in checkpoints
