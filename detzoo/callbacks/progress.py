"""A training progress bar that shows what Detectron2's training log shows: the loss terms, the
learning rate, data and iteration times and the run's ETA."""

from __future__ import annotations

import datetime
import statistics
import time
from collections import deque
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

#: prefix under which detzoo models log their training losses (``train/loss_cls``, ...)
TRAIN_PREFIX = "train/"


class TrainingProgress(TQDMProgressBar):
    """Lightning's tqdm progress bar, its postfix extended with, after each training batch:

    - every loss term the model logs under ``train/`` (``loss``, ``loss_cls``, ``loss_box_reg``,
      ...; the latest step's values), named without the prefix;
    - ``lr``: the learning rate of the first optimizer's first parameter group;
    - ``time`` and ``data_time``: the median, over the last ``window`` training batches, of the
      seconds from one batch's start to the next one's and of the seconds spent waiting for the
      batch (from the end of the previous batch to the start of this one), as Detectron2 logs
      them; the wait across a validation run or an epoch boundary is not counted;
    - ``eta``: the rest of the run (``H:MM:SS``) at the median ``time`` per batch: the optimizer
      steps left to ``max_steps``, or to the end of ``max_epochs`` when only that is set
      (validation time not included).

    ``detzoo fit`` uses it unless the configuration turns the progress bar off or brings its own.
    The metrics table of each evaluation is printed by the model itself.

    Args:
        refresh_rate: update the bar every this many batches.
        window: number of recent batches the times are medians over.
        **kwargs: :class:`~lightning.pytorch.callbacks.TQDMProgressBar`'s other arguments.
    """

    def __init__(self, refresh_rate: int = 1, window: int = 20, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._iter_times: deque[float] = deque(maxlen=window)
        self._data_times: deque[float] = deque(maxlen=window)
        self._last_start: float | None = None
        self._last_end: float | None = None

    def _forget_last_batch(self, *_: Any) -> None:
        self._last_start = self._last_end = None

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._forget_last_batch()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._forget_last_batch()

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.perf_counter()
        if self._last_start is not None:
            self._iter_times.append(now - self._last_start)
        if self._last_end is not None:
            self._data_times.append(now - self._last_end)
        self._last_start = now

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._last_end = time.perf_counter()
        super().on_train_batch_end(trainer, *args)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        for name, value in trainer.callback_metrics.items():
            if name.startswith(TRAIN_PREFIX):
                items.pop(name, None)
                items[name[len(TRAIN_PREFIX) :]] = float(value)
        if trainer.optimizers:
            items["lr"] = f"{trainer.optimizers[0].param_groups[0]['lr']:.3g}"
        if self._iter_times:
            seconds = statistics.median(self._iter_times)
            items["time"] = f"{seconds:.3f}s"
            remaining = remaining_steps(trainer)
            if remaining is not None:
                items["eta"] = str(datetime.timedelta(seconds=round(seconds * remaining)))
        if self._data_times:
            items["data_time"] = f"{statistics.median(self._data_times):.3f}s"
        return items


def remaining_steps(trainer: L.Trainer) -> int | None:
    """Optimizer steps left in the run: to ``max_steps`` when set, else to the end of
    ``max_epochs`` (its batches per epoch over ``accumulate_grad_batches``); None when neither
    bounds the run or the epoch length is unknown."""
    if trainer.max_steps is not None and trainer.max_steps >= 0:
        return max(trainer.max_steps - trainer.global_step, 0)
    batches = trainer.num_training_batches
    if trainer.max_epochs is None or trainer.max_epochs < 0 or batches == float("inf"):
        return None
    steps_per_epoch = -(-int(batches) // trainer.accumulate_grad_batches)
    return max(trainer.max_epochs * steps_per_epoch - trainer.global_step, 0)
