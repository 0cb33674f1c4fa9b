"""Running a zoo recipe briefly through ``detzoo fit``, as the models' slow smoke tests do."""

from pathlib import Path

from detzoo.lightning_cli import DetzooCLI

SHAPES_RECIPES = Path(__file__).resolve().parents[2] / "zoo_configs" / "shapes"


def fit_shapes_recipe_briefly(recipe: str, num_train: int = 4) -> DetzooCLI:
    """``detzoo fit --config zoo_configs/shapes/<recipe>`` for two steps on a tiny shapes set
    (``num_train`` train and 2 val images, short side 160, no worker processes) written under the
    current directory, then one validation; returns the CLI (model, trainer, data module)."""
    return DetzooCLI(
        [
            "fit",
            "--config",
            str(SHAPES_RECIPES / recipe),
            "--data.root",
            "shapes",
            "--data.num_train",
            str(num_train),
            "--data.num_val",
            "2",
            "--data.num_workers",
            "0",
            "--data.train_min_size",
            "[160]",
            "--data.test_min_size",
            "160",
            "--trainer.max_steps",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
