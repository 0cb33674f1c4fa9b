"""``detzoo fit|validate|test|predict`` (LightningCLI): every zoo config builds its model and data
module, command-line overrides reach them, and a tiny fit runs end to end through ``detzoo``."""

from pathlib import Path

import pytest
import torch

from detzoo.callbacks import ReuseFreedMemory, TrainingProgress
from detzoo.cli import main
from detzoo.data import ShapesDataModule
from detzoo.lightning_cli import DetzooCLI, model_arguments
from detzoo.models import DetectionModel, FasterRCNN
from detzoo.models.base import CHECKPOINT_CLASS_PATH_KEY

CONFIGS = Path(__file__).resolve().parents[1] / "zoo_configs"
SHAPES_RECIPE = CONFIGS / "shapes" / "faster_rcnn_R18_FPN.yaml"


@pytest.mark.parametrize(
    "config",
    sorted(p for p in CONFIGS.rglob("*.yaml") if p.name != "index.yaml"),  # the index is no config
    ids=lambda p: str(p.relative_to(CONFIGS)),
)
def test_every_zoo_config_builds(config, tmp_path, monkeypatch):
    # logging configs are given after a model's
    base = ["--config", str(SHAPES_RECIPE)] if config.parent.name == "logging" else []
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [*base, "--config", str(config), "--data.root", str(tmp_path)]
    cli = DetzooCLI(args, run=False)
    assert isinstance(cli.model, DetectionModel)
    assert cli.model.hparams  # rebuildable from a checkpoint


def test_the_wandb_config_adds_the_logger_and_overlay_callback_to_a_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["--config", str(SHAPES_RECIPE), "--config", str(CONFIGS / "logging" / "wandb.yaml")]
    args += ["--data.root", str(tmp_path), "--trainer.logger.init_args.name", "run-7"]
    cli = DetzooCLI(args, run=False)
    logger = cli.trainer.logger
    assert type(logger).__name__ == "WandbLogger"
    assert logger._wandb_init["project"] == "detzoo" and logger._wandb_init["name"] == "run-7"
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    assert "PredictionImages" in names and "WandbPredictionImages" in names  # added, not replaced


def test_overrides_reach_model_and_data(tmp_path):
    cli = DetzooCLI(
        [
            "--config",
            str(SHAPES_RECIPE),
            "--data.root",
            str(tmp_path),
            "--data.batch_size",
            "3",
            "--model.score_thresh",
            "0.25",
        ],
        run=False,
    )
    assert isinstance(cli.model, FasterRCNN) and isinstance(cli.datamodule, ShapesDataModule)
    assert cli.datamodule.batch_size == 3 and cli.datamodule.root == tmp_path
    assert cli.model.roi_heads.box_predictor.score_thresh == 0.25


def test_a_config_typo_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        DetzooCLI(["--config", str(SHAPES_RECIPE), "--model.num_clases", "3"], run=False)
    assert "num_clases" in capsys.readouterr().err


@pytest.mark.slow
def test_detzoo_fit_runs_the_shapes_recipe(tmp_path, monkeypatch, capsys):
    """Make a small shapes dataset, train two steps, evaluate and draw predictions."""
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "fit",
            "--config",
            str(SHAPES_RECIPE),
            "--data.root",
            "shapes",
            "--data.num_train",
            "4",
            "--data.num_val",
            "2",
            "--data.num_workers",
            "0",
            "--trainer.max_steps",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert code == 0
    assert (tmp_path / "shapes" / "val" / "instances.json").is_file()
    (log_dir,) = (tmp_path / "lightning_logs").iterdir()
    assert (log_dir / "predictions.png").is_file() and (log_dir / "config.yaml").is_file()
    (checkpoint,) = (log_dir / "checkpoints").glob("*.ckpt")
    # the checkpoint evaluates through the CLI, its recorded model configured from the checkpoint
    # (a 5-class model although the recipe says 7: the checkpoint's hyper-parameters win)
    model = torch.load(checkpoint, weights_only=True)
    model["hyper_parameters"]["num_classes"] = 5
    model["hyper_parameters"]["roi_heads"]["init_args"]["box_predictor"]["init_args"][
        "num_classes"
    ] = 5
    for key in ("cls_score.weight", "cls_score.bias", "bbox_pred.weight", "bbox_pred.bias"):
        name = f"roi_heads.box_predictor.{key}"
        rows = 6 if key.startswith("cls") else 20
        model["state_dict"][name] = model["state_dict"][name][:rows]
    torch.save(model, tmp_path / "five.ckpt")
    validate = ["validate", "--config", str(SHAPES_RECIPE), "--data.root", "shapes"]
    validate += ["--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]
    validate += ["--trainer.logger", "false", "--ckpt_path", str(tmp_path / "five.ckpt")]
    assert main(validate) == 0
    assert "val/bbox/AP" in capsys.readouterr().out


def test_shapes_data_module_keeps_its_sizes_under_lightning_cli(tmp_path):
    """LightningCLI passes every argument, defaults included: a config that names no sizes must
    get shapes' defaults (short side 448 at test time), not COCO's 800."""
    config = tmp_path / "recipe.yaml"
    text = SHAPES_RECIPE.read_text()
    kept = [
        line for line in text.splitlines() if not line.strip().startswith(("train_m", "test_m"))
    ]
    config.write_text("\n".join(kept))
    cli = DetzooCLI(["--config", str(config), "--data.root", str(tmp_path)], run=False)
    (test_resize,) = cli.datamodule.test_transforms.augmentations
    assert (list(test_resize.lengths), test_resize.max_size) == ([448], 853)
    (train_resize, *_) = cli.datamodule.train_transforms.augmentations
    assert list(train_resize.lengths) == [384, 416, 448, 480, 512]


def test_the_training_progress_bar_is_the_default_unless_turned_off(tmp_path):
    base = ["--config", str(SHAPES_RECIPE), "--data.root", str(tmp_path)]
    cli = DetzooCLI(base, run=False)
    assert isinstance(cli.trainer.progress_bar_callback, TrainingProgress)
    cli = DetzooCLI([*base, "--trainer.enable_progress_bar", "false"], run=False)
    assert cli.trainer.progress_bar_callback is None
    own = ["--trainer.callbacks+", "lightning.pytorch.callbacks.TQDMProgressBar"]
    cli = DetzooCLI([*base, *own], run=False)
    assert type(cli.trainer.progress_bar_callback).__name__ == "TQDMProgressBar"


def test_every_trainer_reuses_freed_cpu_memory_once(tmp_path):
    base = ["--config", str(SHAPES_RECIPE), "--data.root", str(tmp_path)]
    for extra in ([], ["--trainer.callbacks+", "detzoo.callbacks.ReuseFreedMemory"]):
        cli = DetzooCLI([*base, *extra], run=False)
        reuse = [c for c in cli.trainer.callbacks if isinstance(c, ReuseFreedMemory)]
        assert len(reuse) == 1


def test_model_arguments_are_the_model_options_with_their_values():
    tokens = ["--config", "r.yaml", "--model.init_args.score_thresh", "0.3", "--data.root", "d"]
    tokens += ["--model.init_args.pixel_mean=[1,2,3]", "--modelx", "1", "--model", "FasterRCNN"]
    tokens += ["--trainer.max_steps", "-1"]
    assert model_arguments(tokens) == [
        "--model.init_args.score_thresh",
        "0.3",
        "--model.init_args.pixel_mean=[1,2,3]",
        "--model",
        "FasterRCNN",
    ]


def test_command_line_model_arguments_override_the_checkpoints(tmp_path, monkeypatch):
    """With --ckpt_path the recorded hyper-parameters replace the config file's, and the
    command line's --model arguments replace both."""
    base = ["--config", str(SHAPES_RECIPE), "--data.root", str(tmp_path)]
    model = DetzooCLI(base, run=False).model
    hparams = dict(model.hparams)
    hparams["nms_thresh"] = 0.6  # the recipe says 0.5
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": hparams,
        CHECKPOINT_CLASS_PATH_KEY: "detzoo.models.FasterRCNN",
    }
    torch.save(checkpoint, tmp_path / "run.ckpt")
    monkeypatch.setattr(DetzooCLI, "_run_subcommand", lambda self, subcommand: None)
    validate = ["validate", *base, "--ckpt_path", str(tmp_path / "run.ckpt")]
    cli = DetzooCLI(validate)
    assert (cli.model.hparams["nms_thresh"], cli.model.hparams["score_thresh"]) == (0.6, 0.05)
    cli = DetzooCLI([*validate, "--model.init_args.score_thresh", "0.3"])
    assert (cli.model.hparams["nms_thresh"], cli.model.hparams["score_thresh"]) == (0.6, 0.3)
    assert cli.model.roi_heads.box_predictor.score_thresh == 0.3
