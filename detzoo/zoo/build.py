"""Building a zoo model (and its data module) from a LightningCLI config, the way ``detzoo fit`` does.

The ``model`` and ``data`` sections of a zoo YAML are parsed and instantiated by jsonargparse with
Lightning's argument parser, exactly as :class:`detzoo.lightning_cli.DetzooCLI` would, so a config
that trains with ``detzoo fit`` builds the same model here — without a trainer.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser

from detzoo.models.base import DetectionModel


def _instantiate(section: str, base: type, value: Mapping[str, Any], source: str) -> Any:
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(base, section, subclass_mode=True)
    try:
        namespace = parser.parse_object({section: copy.deepcopy(dict(value))})
    except Exception as err:  # jsonargparse's ArgumentError, with the offending key in the text
        raise ValueError(f"{source}: the {section!r} section does not parse: {err}") from err
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return instantiate(namespace)[section]


def with_num_classes(spec: Any, old: int, new: int) -> Any:
    """A copy of a config section with every ``num_classes: old`` (the model's and those of its
    class-specific heads, e.g. a box predictor given explicitly) set to ``new``; other class
    counts (e.g. a panoptic model's stuff classes) differ from ``old`` and are left alone."""
    if isinstance(spec, Mapping):
        return {
            k: (new if k == "num_classes" and v == old else with_num_classes(v, old, new))
            for k, v in spec.items()
        }
    if isinstance(spec, list):
        return [with_num_classes(v, old, new) for v in spec]
    return spec


def model_num_classes(config: Mapping[str, Any]) -> int | None:
    """The ``num_classes`` the config gives the model, if any."""
    model = config.get("model") or {}
    return (model.get("init_args") or {}).get("num_classes")


def build_model(
    config: Mapping[str, Any], num_classes: int | None = None, source: str = "config"
) -> DetectionModel:
    """The model of a LightningCLI config (its ``model`` section), randomly initialised.

    Args:
        config: the parsed YAML (``model: {class_path, init_args}``, other sections ignored).
        num_classes: replaces the config's class count everywhere it appears (see
            :func:`with_num_classes`); ``None`` keeps it.
        source: names the config in error messages.
    """
    if "model" not in config:
        raise ValueError(f"{source} has no 'model' section")
    section = config["model"]
    if num_classes is not None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = model_num_classes(config)
        if old is None:
            raise ValueError(f"{source}: the model has no num_classes to change")
        section = with_num_classes(section, old, num_classes)
    model = _instantiate("model", DetectionModel, section, source)
    if not isinstance(model, DetectionModel):
        raise ValueError(f"{source}: the model is a {type(model).__name__}, not a DetectionModel")
    return model


def build_datamodule(config: Mapping[str, Any], source: str = "config") -> L.LightningDataModule:
    """The data module of a LightningCLI config (its ``data`` section); touches no files (data
    modules read their datasets in ``setup``)."""
    if "data" not in config:
        raise ValueError(f"{source} has no 'data' section")
    return _instantiate("data", L.LightningDataModule, config["data"], source)


def inference_resize(config: Mapping[str, Any], source: str = "config") -> tuple[int, int] | None:
    """``(min_size, max_size)`` of the config's test-time shortest-edge resize (its data module's
    ``test_transforms``), or ``None`` when the config says none."""
    from detzoo.data.transforms import ResizeShortestEdge

    if "data" not in config:
        return None
    transforms = getattr(build_datamodule(config, source), "test_transforms", None)
    for step in getattr(transforms, "augmentations", ()):
        if isinstance(step, ResizeShortestEdge):
            return step.lengths[0], step.max_size
    return None
