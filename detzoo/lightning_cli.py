"""``detzoo fit|validate|test|predict``: Lightning's ``LightningCLI`` over detzoo's models and data.

A zoo config is a LightningCLI YAML (``model``/``data``/``trainer`` sections with ``class_path`` and
``init_args``; see ``zoo_configs/``). Any detzoo model (a :class:`~detzoo.models.DetectionModel`
subclass) and any ``LightningDataModule`` can be named in it, and every value can be overridden on
the command line (``--trainer.max_epochs 3``, ``--data.root datasets/shapes``). The model brings its
own optimiser and schedule (its ``solver``), so ``--optimizer``/``--lr_scheduler`` are not offered.

With ``--ckpt_path``, the model is configured from the checkpoint's recorded hyper-parameters
(they override the config file's, as in Lightning), and then from the ``--model...`` arguments
typed on the command line, which override both: ``detzoo validate --config recipe.yaml --ckpt_path
run.ckpt --model.init_args.instances_score_thresh 0.5`` evaluates the checkpoint with that merge
threshold.

``--results_dir DIR`` has each validation/test run write its predictions into ``DIR`` as
Detectron2's results files (``coco_instances_results.json``, ...; see
:attr:`~detzoo.models.DetectionModel.results_dir`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from detzoo.callbacks.memory_reuse import ReuseFreedMemory
from detzoo.callbacks.progress import TrainingProgress
from detzoo.models.base import CHECKPOINT_CLASS_PATH_KEY, DetectionModel

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class DetzooCLI(LightningCLI):
    """LightningCLI for detzoo models; the config of each run is saved beside its logs, and the
    progress bar is :class:`~detzoo.callbacks.TrainingProgress` (loss terms, learning rate, times,
    ETA) unless the config turns the bar off or names its own, and every trainer gets
    :class:`~detzoo.callbacks.ReuseFreedMemory` (faster CPU steps). ``--results_dir`` sets the
    model's :attr:`~detzoo.models.DetectionModel.results_dir`.

    Args:
        args: command-line arguments (``sys.argv[1:]`` when None): a subcommand first when
            ``run``, none otherwise (``run=False`` only builds ``model``, ``datamodule``, ``trainer``).
        run: run the subcommand.
    """

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        with warnings.catch_warnings():
            # args are given on purpose (after detzoo's own dispatch), not by mistake
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            self._init(args, run)

    def _init(self, args: Sequence[str] | None, run: bool) -> None:
        super().__init__(
            model_class=DetectionModel,
            subclass_mode_model=True,
            datamodule_class=L.LightningDataModule,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            args=list(args) if args is not None else None,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Adds ``--results_dir``: a run setting (like the trainer's ``default_root_dir``), so it
        is not a model init argument and checkpoints do not record it."""
        parser.add_argument(
            "--results_dir",
            type=str | None,
            default=None,
            help="folder to write each evaluation's predictions into as Detectron2's results "
            "files (coco_instances_results.json, lvis_instances_results.json, panoptic "
            "predictions.json + PNGs); default: none written",
        )

    def instantiate_classes(self) -> None:
        """Instantiates as LightningCLI does, then gives the model ``--results_dir``."""
        super().instantiate_classes()
        self.model.results_dir = self._get(self.config_init, "results_dir")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse as LightningCLI does, remembering the command-line tokens (for
        :meth:`_parse_ckpt_path`)."""
        tokens = sys.argv[1:] if args is None else args
        self._command_line = list(tokens) if isinstance(tokens, (list, tuple)) else []
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Configure the model from ``--ckpt_path``'s recorded hyper-parameters, then from the
        command line's ``--model...`` arguments (they win over the checkpoint's)."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        self._configure_from_checkpoint(subcommand, ckpt_path)
        tokens = self._command_line
        if subcommand in tokens:
            tokens = tokens[tokens.index(subcommand) + 1 :]
        overrides = model_arguments(tokens)
        if overrides:
            self.config = self.parser.parse_args([subcommand, *overrides], namespace=self.config)

    def _configure_from_checkpoint(self, subcommand: str, ckpt_path: str) -> None:
        """Lightning puts a checkpoint's hyper-parameters into the model's config as the init
        args of whatever class the config names, which fails for the nested
        ``class_path``/``init_args`` specs detzoo models record. A detzoo checkpoint names its
        class (:data:`~detzoo.models.base.CHECKPOINT_CLASS_PATH_KEY`): the model is configured as
        that class with the recorded init args (as in Lightning, they override the config's)."""
        checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        class_path = checkpoint.get(CHECKPOINT_CLASS_PATH_KEY)
        if class_path is None:  # not written by a recorded detzoo model
            super()._parse_ckpt_path()
            return
        init_args = {
            k: v
            for k, v in checkpoint.get("hyper_parameters", {}).items()
            if k not in ("_instantiator", "_class_path")
        }
        model = {"class_path": class_path, "init_args": init_args}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write(
                f"The model recorded in {ckpt_path} ({class_path}) does not configure with this "
                f"version of detzoo; load its weights into a model you build instead.\n"
            )
            raise

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> L.Trainer:
        configured = config.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        has_bar = any(isinstance(c, ProgressBar) for c in [*configured, *callbacks])
        if config.get("enable_progress_bar") is not False and not has_bar:
            callbacks = [*callbacks, TrainingProgress()]
        if not any(isinstance(c, ReuseFreedMemory) for c in [*configured, *callbacks]):
            callbacks = [*callbacks, ReuseFreedMemory()]
        return super()._instantiate_trainer(config, callbacks)


def model_arguments(tokens: Sequence[str]) -> list[str]:
    """The ``--model`` / ``--model.<key>`` options among command-line ``tokens``, each with its
    value(s) (the tokens up to the next ``--`` option), in order; e.g. ``["--data.root", "d",
    "--model.init_args.x", "1"]`` gives ``["--model.init_args.x", "1"]``."""
    kept: list[str] = []
    keep = False
    for token in tokens:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0]
            keep = name == "model" or name.startswith("model.")
        if keep:
            kept.append(token)
    return kept


def run_lightning(subcommand: str, argv: Sequence[str]) -> int:
    """Run ``detzoo <subcommand> <argv...>`` through :class:`DetzooCLI`; returns the exit code."""
    if subcommand not in SUBCOMMANDS:
        raise ValueError(f"unknown subcommand {subcommand!r}; expected one of {SUBCOMMANDS}")
    DetzooCLI([subcommand, *argv])
    return 0
