"""A two-process DDP run (CPU, gloo) of a tiny Faster R-CNN on a tiny shapes dataset: the ranks
train on different images, synchronised BatchNorm is swapped in (and out) by the plugin, and the
validation metrics gathered over the ranks equal a single-process validation of the same weights
(5 val images: an odd count, so any padding of the ranks' shards would change the numbers).

Also the tiny model and data the other Lightning-loop tests in this directory use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DistributedSampler

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.data import CocoDataModule
from detzoo.data.samplers import InferenceSampler
from detzoo.data.synthetic import write_shapes_dataset
from detzoo.heads.anchors import AnchorGenerator
from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers
from detzoo.heads.mask_head import MaskRCNNConvUpsampleHead
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_heads import StandardROIHeads
from detzoo.heads.rpn import RPN, RPNHead
from detzoo.models.faster_rcnn import FPN_ROI_LEVELS, FPN_RPN_LEVELS, FasterRCNN

REPO = Path(__file__).resolve().parents[2]
NUM_TRAIN, NUM_VAL = 8, 5


def tiny_rcnn_parts(num_classes: int = 7, with_mask: bool = False) -> dict:
    """``backbone``, ``rpn`` and ``roi_heads`` of :func:`tiny_faster_rcnn`; ``with_mask`` adds a
    mask branch (14x14 pooling, one 16-channel conv, 28x28 masks) for a Mask R-CNN."""
    resnet = ResNet(18, norm="BN", freeze_at=0, stem_out_channels=16, res2_out_channels=16)
    backbone = FPN(resnet, out_channels=32, top_block=LastLevelMaxPool())
    strides = [backbone.output_shape()[f].stride for f in FPN_RPN_LEVELS]
    anchors = AnchorGenerator([[16], [32], [64], [128], [256]], [[0.5, 1.0, 2.0]], strides)
    rpn = RPN(
        FPN_RPN_LEVELS,
        RPNHead(32, 3),
        anchors,
        batch_size_per_image=64,
        pre_nms_topk=(200, 1000),
        post_nms_topk=(100, 1000),
    )
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    mask_head = (
        MaskRCNNConvUpsampleHead(
            FPN_ROI_LEVELS,
            ROIPooler(14, scales, sampling_ratio=0),
            32,
            num_classes,
            num_conv=1,
            conv_dim=16,
        )
        if with_mask
        else None
    )
    roi_heads = StandardROIHeads(
        FPN_ROI_LEVELS,
        ROIPooler(7, scales, sampling_ratio=0),
        ConvFCHead((32, 7, 7), fc_dims=(64, 64)),
        FastRCNNOutputLayers(64, num_classes),
        mask_head=mask_head,
        batch_size_per_image=64,
    )
    return {"backbone": backbone, "rpn": rpn, "roi_heads": roi_heads}


def tiny_faster_rcnn(num_classes: int = 7, **kwargs) -> FasterRCNN:
    """Faster R-CNN on a quarter-width ResNet-18 + 32-channel FPN with BatchNorm (so sync BN and
    running statistics are exercised), anchors 16-256 px, few training proposals and ROIs and a
    64-d box head: a few hundred ms per step of two ~100 px images. Test-time proposals are
    Detectron2's 1000, so that even an untrained model scores some AP with ``score_thresh=0``.
    ``kwargs`` go to :class:`FasterRCNN`."""
    return FasterRCNN(num_classes=num_classes, **tiny_rcnn_parts(num_classes), **kwargs)


def write_tiny_shapes(root: Path, num_train: int = NUM_TRAIN, num_val: int = NUM_VAL) -> Path:
    """A shapes dataset of 64-128 px images (half a second to write)."""
    return write_shapes_dataset(
        root, num_train, num_val, min_size=64, max_size=128, workers=1, progress=False
    )


def tiny_shapes_datamodule(root: Path, **kwargs) -> CocoDataModule:
    """The COCO data module over :func:`write_tiny_shapes`' files, short side 96 px unless
    ``kwargs`` say otherwise."""
    options = {
        "batch_size": 2,
        "num_workers": 0,
        "train_min_size": (96,),
        "train_max_size": 128,
        "test_min_size": 96,
        "test_max_size": 128,
        **kwargs,
    }
    return CocoDataModule(
        root,
        "train/instances.json",
        "val/instances.json",
        train_images="train/images",
        val_images="val/images",
        **options,
    )


def quiet_trainer(**kwargs) -> L.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar or summary, unless asked."""
    options = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **kwargs,
    }
    return L.Trainer(**options)


class RecordImages(L.Callback):
    """Writes, per rank, the image ids of its training and validation batches and how many
    NaiveSyncBatchNorm layers the model had while fitting, to ``<out>/rank<r>.json``."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.record: dict = {"train_ids": [], "val_ids": []}

    def on_train_start(self, trainer, pl_module) -> None:
        from detzoo.layers import NaiveSyncBatchNorm

        self.record["sync_bn_while_fitting"] = sum(
            isinstance(m, NaiveSyncBatchNorm) for m in pl_module.modules()
        )
        self.record["world_size"] = trainer.world_size

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.record["train_ids"] += [int(t["image_id"]) for t in batch[1]]

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *args) -> None:
        self.record["val_ids"] += [int(t["image_id"]) for t in batch[1]]

    def on_fit_end(self, trainer, pl_module) -> None:
        path = self.out / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.record))


_DDP_SCRIPT = """
import json, sys
from pathlib import Path

sys.path.insert(0, {repo!r})
import lightning as L
import torch

from detzoo.layers import DetzooSyncBatchNorm, NaiveSyncBatchNorm
from tests.models.test_ddp import RecordImages, quiet_trainer, tiny_faster_rcnn
from tests.models.test_ddp import tiny_shapes_datamodule

data, out = Path(sys.argv[1]), Path(sys.argv[2])
L.seed_everything(0)
model = tiny_faster_rcnn(score_thresh=0.0)
trainer = quiet_trainer(
    devices=2,
    strategy="ddp",
    use_distributed_sampler=False,  # detzoo's samplers shard by rank themselves
    plugins=[DetzooSyncBatchNorm()],
    max_steps=2,
    val_check_interval=2,
    check_val_every_n_epoch=None,
    callbacks=[RecordImages(out)],
)
# no aspect-ratio grouping: 2 full batches per rank (grouping may leave part-batches)
trainer.fit(model, datamodule=tiny_shapes_datamodule(data, aspect_ratio_grouping=False))
left = sum(isinstance(m, NaiveSyncBatchNorm) for m in model.modules())
if trainer.global_rank == 0:
    torch.save(model.state_dict(), out / "weights.pt")
    metrics = {{k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}}
    (out / "metrics.json").write_text(json.dumps({{"metrics": metrics, "sync_bn_after": left}}))
"""


@pytest.mark.slow
def test_two_process_ddp_shards_training_and_evaluates_each_image_once(tmp_path):
    data = write_tiny_shapes(tmp_path / "shapes")
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT.format(repo=str(REPO))))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script), str(data), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    saved = json.loads((out / "metrics.json").read_text())

    # (a) training: each rank its own images, together the whole set once
    assert [r["world_size"] for r in ranks] == [2, 2]
    train = [r["train_ids"] for r in ranks]
    assert len(train[0]) == len(train[1]) == NUM_TRAIN // 2
    assert not set(train[0]) & set(train[1])
    assert sorted(train[0] + train[1]) == list(range(1, NUM_TRAIN + 1))
    # sync BN while fitting (all 20 BatchNorms of the ResNet-18), plain BN again afterwards
    assert [r["sync_bn_while_fitting"] for r in ranks] == [20, 20]
    assert saved["sync_bn_after"] == 0

    # (b) validation: contiguous, unpadded shards (3 + 2 images), every image once
    val = [r["val_ids"] for r in ranks]
    assert val == [[1, 2, 3], [4, 5]]

    # the gathered metrics are those of one process validating the same weights
    model = tiny_faster_rcnn(score_thresh=0.0)
    model.load_state_dict(torch.load(out / "weights.pt"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each DDP rank ran (Lightning gives each CPU rank 1 of 2 cores)
    try:
        expected = quiet_trainer().validate(
            model, datamodule=tiny_shapes_datamodule(data), verbose=False
        )[0]
    finally:
        torch.set_num_threads(threads)
    got = saved["metrics"]
    assert set(got) == set(expected)
    assert expected["val/bbox/AP50"] > 0  # a number that duplicated images would change
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_inference_sampler_shards_contiguously_without_padding():
    assert [list(InferenceSampler(5, rank=r, world_size=2)) for r in range(2)] == [
        [0, 1, 2],
        [3, 4],
    ]
    assert [list(InferenceSampler(2, rank=r, world_size=3)) for r in range(3)] == [[0], [1], []]
    assert list(InferenceSampler(4)) == [0, 1, 2, 3]  # one process: everything, in order
    # a DistributedSampler only so that Lightning never swaps in its padding one
    assert isinstance(InferenceSampler(3), DistributedSampler)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        InferenceSampler(3, rank=2, world_size=2)
