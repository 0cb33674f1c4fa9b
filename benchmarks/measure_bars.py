"""Measure the shapes training bars of ``tests/models/test_shapes_training.py``: each recipe
trained exactly as its bar trains it, for several seeds, and the same model untrained (evaluated
before its first step). Prints one line per run; the bars are set from these (RESULTS.md).

    python benchmarks/measure_bars.py faster_rcnn_R18_FPN.yaml [--seeds 0 1 2] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detzoo.data import ShapesDataModule  # noqa: E402
from tests.models.test_shapes_training import (  # noqa: E402
    BARS,
    NUM_TRAIN,
    NUM_VAL,
    bar_cli,
)


def _metrics(trainer, keys) -> dict[str, float]:
    return {
        k: round(float(trainer.callback_metrics[k]), 4)
        for k in keys
        if k in trainer.callback_metrics
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", help="file names in zoo_configs/shapes with a bar")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=None, help="shapes dataset (made if missing)")
    parser.add_argument("--extra-keys", nargs="*", default=[], help="more metrics to print")
    parser.add_argument("--steps", type=int, default=None, help="instead of the bar's steps")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp()) / "shapes"
    ShapesDataModule(root=root, num_train=NUM_TRAIN, num_val=NUM_VAL).prepare_data()
    os.chdir(tempfile.mkdtemp())  # lightning_logs of the runs go to a scratch folder
    for recipe in args.recipes:
        bar = BARS.get(recipe)
        steps = args.steps or bar.steps
        keys = [*(bar.minimum if bar else ()), *args.extra_keys]
        cli = bar_cli(recipe, root, steps, seed=args.seeds[0])
        cli.trainer.validate(cli.model, datamodule=cli.datamodule)
        print(f"{recipe} untrained: {_metrics(cli.trainer, keys)}", flush=True)
        for seed in args.seeds:
            start = time.perf_counter()
            cli = bar_cli(recipe, root, steps, seed=seed)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            minutes = (time.perf_counter() - start) / 60
            print(
                f"{recipe} seed {seed} ({steps} steps, {minutes:.1f} min): "
                f"{_metrics(cli.trainer, keys)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
