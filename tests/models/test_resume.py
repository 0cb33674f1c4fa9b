"""Reproducibility of a Lightning run of a tiny Faster R-CNN on CPU: two runs seeded alike end
with identical weights, and training in one go equals training up to a checkpoint, then resuming
from it (weights, optimizer, schedule, loop position, random states and the position in the
training data restored) — at an epoch boundary of epoch-based training (``max_epochs``), and in the
middle of an epoch or at its end with iteration-based training (``max_steps``, as the zoo recipes
train). The same holds for a tiny RetinaNet, whose running loss normaliser (the EMA of the
foreground-anchor count) is training state a checkpoint must carry, and a tiny Mask R-CNN.
"""

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from detzoo.backbones import FPN, LastLevelP6P7, ResNet
from detzoo.models import MaskRCNN, RetinaNet
from detzoo.models.base import CHECKPOINT_RNG_KEY
from detzoo.zoo import load_checkpoint

from .test_ddp import (
    quiet_trainer,
    tiny_faster_rcnn,
    tiny_rcnn_parts,
    tiny_shapes_datamodule,
    write_tiny_shapes,
)

#: 2 training images, one per batch
STEPS_PER_EPOCH = 2


def _fit(data: Path, epochs: int, ckpt_dir: Path | None = None, ckpt_path=None) -> dict:
    """A run seeded with 0 to the end of epoch ``epochs`` (resumed from ``ckpt_path`` when
    given, saving ``last.ckpt`` into ``ckpt_dir`` when given); its final weights."""
    L.seed_everything(0)
    model = tiny_faster_rcnn()
    callbacks = [ModelCheckpoint(dirpath=ckpt_dir, save_last=True)] if ckpt_dir else []
    trainer = quiet_trainer(
        max_epochs=epochs,
        limit_val_batches=0,
        enable_checkpointing=ckpt_dir is not None,
        callbacks=callbacks,
        deterministic=True,
    )
    datamodule = tiny_shapes_datamodule(data, batch_size=1)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    assert trainer.global_step == epochs * STEPS_PER_EPOCH
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_shapes(tmp_path_factory.mktemp("shapes"), num_train=2, num_val=1)


@pytest.fixture(scope="module")
def straight(data) -> dict:
    """Two epochs in one go."""
    return _fit(data, 2)


def test_two_seeded_runs_give_identical_weights(data, straight):
    _assert_same(_fit(data, 2), straight)


@pytest.mark.slow
def test_resuming_from_the_last_checkpoint_gives_the_same_weights(data, straight, tmp_path):
    first = _fit(data, 1, ckpt_dir=tmp_path)
    last = tmp_path / "last.ckpt"
    assert CHECKPOINT_RNG_KEY in torch.load(last, weights_only=True)
    with pytest.raises(AssertionError):
        _assert_same(first, straight)  # one epoch alone is not the end result
    _assert_same(_fit(data, 2, ckpt_path=last), straight)


class _RecordBatches(L.Callback):
    """The (global step, image ids, image checksum) of every training batch."""

    def __init__(self) -> None:
        self.batches: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        images, targets = batch
        checksum = [float((im.float() * torch.arange(im.shape[-1])).sum()) for im in images]
        self.batches.append((trainer.global_step, [t["image_id"] for t in targets], checksum))


def _fit_steps(
    data: Path, steps: int, ckpt_dir: Path | None = None, ckpt_path=None, build=tiny_faster_rcnn
):
    """A run of the model ``build()`` makes, seeded with 0, to global step ``steps``
    (``max_steps``; 3 one-image batches per epoch, random flips), resumed from ``ckpt_path`` when
    given, saving ``last.ckpt`` at its last step into ``ckpt_dir`` when given; its final state
    dict and the batches it trained on."""
    L.seed_everything(0)
    model = build()
    record = _RecordBatches()
    callbacks = [record]
    if ckpt_dir is not None:
        callbacks.append(
            ModelCheckpoint(dirpath=ckpt_dir, save_last=True, every_n_train_steps=steps)
        )
    trainer = quiet_trainer(
        max_steps=steps,
        max_epochs=-1,
        limit_val_batches=0,
        enable_checkpointing=ckpt_dir is not None,
        callbacks=callbacks,
        deterministic=True,
    )
    datamodule = tiny_shapes_datamodule(data, batch_size=1, train_min_size=(80, 96, 112))
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    assert trainer.global_step == steps
    return {k: v.clone() for k, v in model.state_dict().items()}, record.batches


@pytest.fixture(scope="module")
def three_images(tmp_path_factory) -> Path:
    return write_tiny_shapes(tmp_path_factory.mktemp("shapes3"), num_train=3, num_val=1)


@pytest.mark.parametrize("stop", [2, 3, 4], ids=["mid-epoch", "end-of-epoch", "second-epoch"])
def test_resuming_iteration_based_training_anywhere_in_an_epoch(three_images, stop, tmp_path):
    total = 6  # two epochs of 3 batches
    weights, batches = _fit_steps(three_images, total)
    assert len({tuple(b[1]) for b in batches[:3]}) == 3  # a permutation per epoch
    _fit_steps(three_images, stop, ckpt_dir=tmp_path)
    resumed, resumed_batches = _fit_steps(three_images, total, ckpt_path=tmp_path / "last.ckpt")
    assert resumed_batches == batches[stop:]  # the same images, augmented alike, in order
    _assert_same(resumed, weights)


def tiny_retinanet(num_classes: int = 7) -> RetinaNet:
    """RetinaNet on the quarter-width ResNet-18 of :func:`tiny_faster_rcnn` (BatchNorm), a
    32-channel FPN with P6/P7 from res5 and Detectron2's default anchors (32-512 px)."""
    resnet = ResNet(
        18,
        norm="BN",
        freeze_at=0,
        stem_out_channels=16,
        res2_out_channels=16,
        out_features=["res3", "res4", "res5"],
    )
    fpn = FPN(resnet, ["res3", "res4", "res5"], 32, top_block=LastLevelP6P7(128, 32))
    return RetinaNet(fpn, num_classes)


def tiny_mask_rcnn(num_classes: int = 7) -> MaskRCNN:
    """:func:`tiny_faster_rcnn` with a mask branch."""
    return MaskRCNN(num_classes=num_classes, **tiny_rcnn_parts(num_classes, with_mask=True))


@pytest.mark.parametrize("build", [tiny_retinanet, tiny_mask_rcnn], ids=["retinanet", "mask_rcnn"])
def test_resuming_retinanet_and_mask_rcnn_gives_the_same_weights(three_images, build, tmp_path):
    """4 steps in one go equal 2 steps, a checkpoint, and 2 more steps resumed from it: every
    parameter and buffer alike (RetinaNet's loss normaliser included)."""
    total, stop = 4, 2
    weights, batches = _fit_steps(three_images, total, build=build)
    first, _ = _fit_steps(three_images, stop, ckpt_dir=tmp_path, build=build)
    with pytest.raises(AssertionError):
        _assert_same(first, weights)  # two steps alone are not the end result
    resumed, resumed_batches = _fit_steps(
        three_images, total, ckpt_path=tmp_path / "last.ckpt", build=build
    )
    assert resumed_batches == batches[stop:]
    _assert_same(resumed, weights)
    if build is tiny_retinanet:
        # the normaliser moved off its initial 100 and is in the state the checkpoint carries
        state = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]
        torch.testing.assert_close(
            state["outputs.loss_normalizer"], first["outputs.loss_normalizer"], rtol=0, atol=0
        )
        assert float(first["outputs.loss_normalizer"]) != 100.0
        assert float(weights["outputs.loss_normalizer"]) != float(first["outputs.loss_normalizer"])


def test_a_retinanet_checkpoint_without_its_normaliser_still_resumes_and_loads(
    three_images, tmp_path
):
    """A Lightning checkpoint written before the normaliser was saved resumes (Lightning's strict
    load would refuse it) and loads for prediction, the normaliser restarting at 100 as it did then.
    The foreground counts of the steps after the checkpoint depend on the anchors and boxes only,
    so the resumed run's normaliser is the uninterrupted run's with the checkpoint's value swapped
    for 100: ``0.9 ** steps`` times their difference apart."""
    key = "outputs.loss_normalizer"
    total, stop = 4, 2
    weights, _ = _fit_steps(three_images, total, build=tiny_retinanet)
    first, _ = _fit_steps(three_images, stop, ckpt_dir=tmp_path, build=tiny_retinanet)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    del checkpoint["state_dict"][key]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    resumed, _ = _fit_steps(three_images, total, ckpt_path=old, build=tiny_retinanet)
    expected = weights[key] - 0.9 ** (total - stop) * (first[key] - 100.0)
    torch.testing.assert_close(resumed[key], expected)
    assert float(resumed[key]) != float(weights[key])

    for loaded in (RetinaNet.load_from_checkpoint(old, map_location="cpu"), load_checkpoint(old)):
        assert float(loaded.outputs.loss_normalizer) == 100.0
        state = loaded.state_dict()
        for name, value in checkpoint["state_dict"].items():
            if not name.endswith("num_batches_tracked"):  # never read; zoo loading skips them
                torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)
