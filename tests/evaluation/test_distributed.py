"""Two gloo ranks, each updating with part of the images, compute what one process computes on all."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detzoo.evaluation import CocoEvaluator, KeypointEvaluator, LVISEvaluator, SemSegEvaluator
from detzoo.evaluation.distributed import all_gather_list

from . import scenes
from .test_keypoints import SIGMAS, _preds, _targets
from .test_lvis import FREQUENCIES
from .test_lvis import _scene as _lvis_scene
from .test_panoptic import _evaluator as _panoptic_evaluator
from .test_panoptic import _image as _panoptic_image
from .test_semantic import NAMES as SEM_NAMES
from .test_semantic import _batch as _sem_seg_batch

WORLD_SIZE = 2


def _evaluate(rank: int, world_size: int) -> dict[str, float]:
    """Every evaluator, fed the images ``rank::world_size`` (uneven: rank 0 gets more COCO images)."""
    part = slice(rank, None, world_size)
    coco = CocoEvaluator(("bbox", "segm"), class_names=scenes.CLASS_NAMES)
    coco.update(scenes.predictions()[part], scenes.targets()[part])
    keypoints = KeypointEvaluator(SIGMAS)
    keypoints.update(_preds()[part], _targets()[part])
    sem_seg = SemSegEvaluator(5, class_names=SEM_NAMES)
    sem_seg.update(*(x[part] for x in _sem_seg_batch(as_logits=False)))
    panoptic = _panoptic_evaluator()
    pred, target = _panoptic_image()
    panoptic.update([pred, pred][part], [target, target][part])
    lvis = LVISEvaluator(FREQUENCIES, iou_types=("bbox", "segm"))
    lvis.update(*(x[part] for x in _lvis_scene()))
    return {
        **coco.compute(),
        **keypoints.compute(),
        **sem_seg.compute(),
        **panoptic.compute(),
        **{f"lvis_{k}": v for k, v in lvis.compute().items()},
    }


def _worker(rank: int, port: int, out_path: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        results = _evaluate(rank, WORLD_SIZE)
        gathered = all_gather_list([rank])
        if rank == 0:
            torch.save({"results": results, "gathered": gathered}, out_path)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_equal_one_process(tmp_path):
    out_path = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(_free_port(), out_path), nprocs=WORLD_SIZE, join=True)
    saved = torch.load(out_path)
    assert saved["gathered"] == [0, 1]
    expected = _evaluate(0, 1)
    assert set(saved["results"]) == set(expected)
    for key, value in expected.items():
        assert saved["results"][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
    # the split matters: one rank's images alone give different numbers
    one_rank = _evaluate(0, 2)
    for key in ("bbox/AP", "keypoints/AP", "sem_seg/mIoU", "lvis_bbox/AP"):
        assert one_rank[key] != pytest.approx(expected[key]), key
