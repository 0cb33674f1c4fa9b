"""The training progress bar: loss terms, learning rate, median times and ETA."""

from types import SimpleNamespace

import pytest

from detzoo.callbacks import TrainingProgress
from detzoo.callbacks import progress as progress_module
from detzoo.callbacks.progress import remaining_steps

from ..models.test_ddp import (
    quiet_trainer,
    tiny_faster_rcnn,
    tiny_shapes_datamodule,
    write_tiny_shapes,
)


def _trainer(max_steps=-1, max_epochs=None, global_step=0, batches=10, accumulate=1):
    return SimpleNamespace(
        max_steps=max_steps,
        max_epochs=max_epochs,
        global_step=global_step,
        num_training_batches=batches,
        accumulate_grad_batches=accumulate,
    )


def test_remaining_steps_to_max_steps_or_to_the_last_epoch():
    assert remaining_steps(_trainer(max_steps=600, max_epochs=-1, global_step=250)) == 350
    assert remaining_steps(_trainer(max_steps=600, global_step=700)) == 0
    # 3 epochs of 10 batches, 4 accumulated per step: ceil(10 / 4) = 3 steps per epoch
    assert remaining_steps(_trainer(max_epochs=3, global_step=2, accumulate=4)) == 7
    assert remaining_steps(_trainer(max_epochs=-1)) is None
    assert remaining_steps(_trainer(max_epochs=2, batches=float("inf"))) is None


class _Clock:
    """A perf_counter that advances one second per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


class _Shown(TrainingProgress):
    """Keeps what the bar showed after each training batch."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        self.shown.append(self.get_metrics(trainer, pl_module))


def test_the_bar_shows_loss_terms_lr_median_times_and_eta(tmp_path, monkeypatch):
    # one clock tick per hook call: a batch starts, ends (1 s later), the next starts (1 s
    # later): every iteration takes 2 s, of which 1 s waiting for data
    monkeypatch.setattr(progress_module, "time", _Clock())
    data = write_tiny_shapes(tmp_path, num_train=2, num_val=1)
    bar = _Shown(window=3)
    trainer = quiet_trainer(
        max_steps=4, max_epochs=-1, limit_val_batches=0, enable_progress_bar=True, callbacks=[bar]
    )
    model = tiny_faster_rcnn()
    trainer.fit(model, datamodule=tiny_shapes_datamodule(data, batch_size=1))
    first, second, *_, last = bar.shown
    losses = {"loss", "loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    assert losses <= first.keys() and not any(k.startswith("train/") for k in first)
    total = sum(first[k] for k in losses - {"loss"})
    assert first["loss"] == pytest.approx(total, rel=1e-5)
    assert "time" not in first  # no full iteration measured yet
    assert second["time"] == "2.000s" and second["data_time"] == "1.000s"
    assert second["eta"] == "0:00:04"  # 2 steps left at 2 s
    # the epoch boundary after step 2 is not counted as an iteration or as data time
    assert bar._iter_times.maxlen == 3 and list(bar._iter_times) == [2.0, 2.0]
    assert last["eta"] == "0:00:00"
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert last["lr"] == f"{lr:.3g}"


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window must be >= 1"):
        TrainingProgress(window=0)
