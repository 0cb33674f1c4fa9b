"""The shapes recipes learn: a short run of each (a few hundred images, from scratch) must reach a
COCO AP on shapes val well above what an untrained model scores (0.0), at a safe fraction of what
it reached when measured (see each bar's comment), so that CI catches a regression in any part of
training — data, losses, target encoding, sampling, solver, evaluation.
"""

from pathlib import Path
from typing import NamedTuple

import pytest

from detzoo.data import ShapesDataModule
from detzoo.lightning_cli import DetzooCLI

RECIPES = Path(__file__).resolve().parents[2] / "zoo_configs" / "shapes"


class Bar(NamedTuple):
    """Lowest acceptable values of validation metrics after ``steps`` steps of the recipe's batch
    (800 images: 200 steps of 4 or 400 of 2; a cosine schedule over those steps, 50 of them
    warm-up) on 400 shapes train images, evaluated on 100 val images."""

    steps: int
    minimum: dict[str, float]


BARS = {
    # measured 2026-11-30 with 128 ROIs per image, 200 steps of 4: 0.053; the recipe now samples
    # 512 and takes steps of 2 images, both of which learn faster per image
    "faster_rcnn_R18_FPN.yaml": Bar(400, {"val/bbox/AP": 0.02}),
    # measured 2026-11-30: box AP 0.046, mask AP 0.024 (~7.5 minutes); also the bar of Mask
    # R-CNN's mask branch (mask targets, head, loss, pasting, segm evaluation are shared)
    "cascade_mask_rcnn_R18_FPN.yaml": Bar(150, {"val/bbox/AP": 0.015, "val/segm/AP": 0.008}),
    # measured 2026-11-30: keypoint AP 0.034 with the figure's OKS sigmas (~7 minutes)
    "keypoint_rcnn_R18_FPN.yaml": Bar(150, {"val/keypoints/AP": 0.01}),
    # measured 2026-12-01: PQ 0.228 (things ~0: stuff and the merge), mIoU 0.816 (~13 minutes
    # beside another bar)
    "panoptic_fpn_R18_FPN.yaml": Bar(200, {"val/panoptic_seg/PQ": 0.1, "val/sem_seg/mIoU": 0.4}),
    # measured 2026-12-02: box AP on the figure 0.075 (~3 minutes on a 0.9 s/step machine); the
    # DensePose AP is ~0 this early (charts score only once boxes are good), so the bar holds the
    # box branch trained beside the chart losses
    "densepose_rcnn_R18_FPN.yaml": Bar(150, {"val/bbox/AP": 0.025}),
    # measured 2026-12-02 with 2 head convs and focal gamma 1: box AP 0.056 (~2 minutes at
    # 0.27 s/step; 0.042 with 4 convs and gamma 2)
    "retinanet_R18_FPN.yaml": Bar(400, {"val/bbox/AP": 0.02}),
}


NUM_TRAIN, NUM_VAL = 400, 100


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    """One shapes dataset (400 train, 100 val images) for every bar: generating it takes ~45 s."""
    root = tmp_path_factory.mktemp("shapes")
    ShapesDataModule(root=root, num_train=NUM_TRAIN, num_val=NUM_VAL).prepare_data()
    return root


def bar_cli(recipe: str, root: Path, steps: int, seed: int = 0) -> DetzooCLI:
    """The recipe's LightningCLI (not run) as its bar trains it: ``steps`` steps on ``root``'s
    shapes (NUM_TRAIN/NUM_VAL), cosine over them with 50 warm-up, one evaluation at the end.
    ``benchmarks/measure_bars.py`` measures the bars with it."""
    return DetzooCLI(
        [
            "--config",
            str(RECIPES / recipe),
            "--seed_everything",
            str(seed),
            "--data.root",
            str(root),
            "--data.num_train",
            str(NUM_TRAIN),
            "--data.num_val",
            str(NUM_VAL),
            "--model.solver.init_args.max_iters",
            str(steps),
            "--model.solver.init_args.warmup_iters",
            "50",
            "--trainer.max_steps",
            str(steps),
            "--trainer.val_check_interval",
            str(steps),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.callbacks",
            "[]",
        ],
        run=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(BARS))
def test_short_shapes_run_reaches_the_bar(recipe, shapes_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bar = BARS[recipe]
    # the same model untrained (the recipe's seed, evaluated before any step) is below every bar:
    # a bar an untrained model meets would prove nothing
    untrained_cli = bar_cli(recipe, shapes_root, bar.steps)
    untrained = untrained_cli.trainer.validate(
        untrained_cli.model, datamodule=untrained_cli.datamodule, verbose=False
    )[0]
    met = {k: untrained[k] for k in bar.minimum if untrained[k] >= bar.minimum[k]}
    assert not met, f"{recipe} untrained already meets the bars {bar.minimum}: {met}"

    cli = bar_cli(recipe, shapes_root, bar.steps)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    reached = {k: float(cli.trainer.callback_metrics[k]) for k in bar.minimum}
    low = {k: v for k, v in reached.items() if v < bar.minimum[k]}
    assert not low, f"{recipe} after {bar.steps} steps: {reached}, below the bars {bar.minimum}"
