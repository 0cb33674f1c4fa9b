"""Training curve of a shapes recipe: COCO AP on shapes val against training wall time.

Runs ``detzoo fit`` on a recipe with a callback that records, at every validation, the training
step and the seconds spent training so far (validation time excluded), and prints the curve as a
markdown table for RESULTS.md::

    python benchmarks/train_shapes.py zoo_configs/shapes/faster_rcnn_R18_FPN.yaml \
        [--metric val/bbox/AP] [--budget-minutes 15] [-- any detzoo fit overrides]

With ``--budget-minutes``, training stops after the first step that ends past that many training
minutes, and the model is evaluated there: the score "within N minutes" is measured, not
interpolated between validations.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L

from detzoo.lightning_cli import DetzooCLI


class TrainingClock(L.Callback):
    """Seconds of training (not validation) at each validation, with the validation metrics."""

    def __init__(self, metric: str, budget_minutes: float | None = None) -> None:
        self.metric = metric
        self.budget_minutes = budget_minutes
        self.curve: list[dict] = []
        self._trained = 0.0
        self._since: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.budget_minutes is None or self._since is None:
            return
        trained = self._trained + time.perf_counter() - self._since
        if trained >= 60 * self.budget_minutes:
            self._trained, self._since = trained, None
            trainer.should_stop = True

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._since is not None:
            self._trained += time.perf_counter() - self._since
            self._since = None

    def on_validation_end(self, trainer, pl_module) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.curve.append(
            {"step": trainer.global_step, "train_minutes": self._trained / 60, **metrics}
        )
        print(json.dumps(self.curve[-1]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--metric", default="val/bbox/AP")
    parser.add_argument("--out", default="train_curve.json", help="where to write the curve")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        help="stop training after this many training minutes and evaluate there",
    )
    parser.add_argument(
        "--ckpt-path",
        help="resume this run's checkpoint (minutes then count from the resumption)",
    )
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="after --: detzoo fit args")
    args = parser.parse_args()
    overrides = [a for a in args.overrides if a != "--"]
    cli = DetzooCLI(["--config", args.config, *overrides], run=False)
    clock = TrainingClock(args.metric, args.budget_minutes)
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=args.ckpt_path)
    if not clock.curve or clock.curve[-1]["step"] != cli.trainer.global_step:
        cli.trainer.validate(cli.model, datamodule=cli.datamodule)
    Path(args.out).write_text(json.dumps(clock.curve, indent=1))
    keys = [k for k in clock.curve[-1] if k.startswith("val/") and "-" not in k]
    print("| step | training minutes | " + " | ".join(keys) + " |")
    print("| ---: | ---: |" + " ---: |" * len(keys))
    for point in clock.curve:
        values = " | ".join(f"{100 * point.get(k, float('nan')):.1f}" for k in keys)
        print(f"| {point['step']} | {point['train_minutes']:.1f} | {values} |")


if __name__ == "__main__":
    main()
