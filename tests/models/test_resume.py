"""Reproducibility of a Lightning run of a tiny Faster R-CNN on CPU: two runs seeded alike end
with identical weights, and training two epochs in one go equals one epoch, then one more resumed
from its last checkpoint (weights, optimizer, schedule, loop position and random states restored).

Resuming is exact at an epoch boundary of epoch-based training (``max_epochs``). It is not with
iteration-based training (``max_steps``, as the zoo recipes train): Lightning 2.x then treats an
end-of-epoch checkpoint as taken mid-epoch and runs one batch of the next epoch under the old
epoch's number (Lightning issue #19617), and resumes a mid-epoch checkpoint by restarting the
epoch's data from its first batch (the training DataLoader has no ``state_dict``).
"""

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from detzoo.models.base import CHECKPOINT_RNG_KEY

from .test_ddp import quiet_trainer, tiny_faster_rcnn, tiny_shapes_datamodule, write_tiny_shapes

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
