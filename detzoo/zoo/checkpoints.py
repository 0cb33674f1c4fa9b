"""Weight files in and out: Detectron2 ``.pkl``/``.pth``, detzoo safetensors, Lightning ``.ckpt``.

Nothing is unpickled blindly: ``.pkl`` files go through the arrays-only unpickler, torch files
through ``torch.load(weights_only=True)``, and detzoo's own format is safetensors. A detzoo
safetensors file carries the model's spec (``class_path`` + ``init_args``, see
:mod:`detzoo.config`) in its metadata and a Lightning checkpoint of a detzoo model carries its
class path beside its hyper-parameters, so :func:`load_checkpoint` rebuilds a model from either
file alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from detzoo.config import ConfigError, build, spec_of
from detzoo.models.base import CHECKPOINT_CLASS_PATH_KEY, DetectionModel
from detzoo.zoo.detectron2 import read_checkpoint, torch_load_weights_only, weights_of

#: safetensors metadata key holding the model spec as JSON
SPEC_METADATA_KEY = "detzoo_model"


@dataclass
class CheckpointFile:
    """What a checkpoint file holds.

    Attributes:
        weights: ``{name: tensor}`` as stored (Detectron2 names for ``"detectron2"`` files).
        format: ``"detectron2"``, ``"detzoo"`` (safetensors) or ``"lightning"`` (``.ckpt``).
        spec: the ``{"class_path", "init_args"}`` spec of the model it was saved from, when the
            file (or the LightningCLI ``config.yaml`` saved beside its run) says.
    """

    weights: dict[str, torch.Tensor]
    format: str
    spec: dict | None = None


def read_weights(path: str | Path) -> CheckpointFile:
    """Reads a checkpoint file.

    ``.safetensors`` → ``"detzoo"``; ``.ckpt`` (or any torch file with a ``state_dict``) →
    ``"lightning"``; ``.pkl`` and other torch files (``.pth``) → ``"detectron2"`` (a
    ``{"model": {...}}`` checkpoint or a bare state dict).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            raw_spec = (f.metadata() or {}).get(SPEC_METADATA_KEY)
        spec = json.loads(raw_spec) if raw_spec else None
        return CheckpointFile(load_file(str(path), device="cpu"), "detzoo", spec)
    if path.suffix == ".pkl":
        return CheckpointFile(read_checkpoint(path), "detectron2")
    data = torch_load_weights_only(path)
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        weights = weights_of(data["state_dict"], str(path))
        return CheckpointFile(weights, "lightning", _lightning_spec(data, path))
    if path.suffix == ".ckpt":
        raise ValueError(f"{path} has no 'state_dict': it is not a Lightning checkpoint")
    return CheckpointFile(weights_of(data, str(path)), "detectron2")


def _lightning_spec(data: Mapping, path: Path) -> dict | None:
    hparams = dict(data.get("hyper_parameters") or {})
    class_path = data.get(CHECKPOINT_CLASS_PATH_KEY) or hparams.pop("_class_path", None)
    if class_path:
        init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
        return {"class_path": class_path, "init_args": init_args}
    config = run_config(path)
    return dict(config["model"]) if config and "model" in config else None


def run_config(path: str | Path) -> dict | None:
    """The LightningCLI ``config.yaml`` saved beside a checkpoint's run
    (``<run>/checkpoints/x.ckpt`` → ``<run>/config.yaml``), if there is one."""
    path = Path(path)
    for candidate in (path.parent / "config.yaml", path.parent.parent / "config.yaml"):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text())
    return None


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Writes ``model``'s state dict as safetensors (with the model's spec in the metadata when it
    has one, so :func:`load_checkpoint` can rebuild it); returns the path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"detzoo weights are safetensors files: name it *.safetensors, not {path}")
    metadata = {"format": "detzoo"}
    try:
        metadata[SPEC_METADATA_KEY] = json.dumps(spec_of(model))
    except ConfigError:
        pass  # a model built from user modules: the weights alone are still useful
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_checkpoint(path: str | Path) -> DetectionModel:
    """A detzoo model rebuilt from a checkpoint file alone (detzoo safetensors or Lightning
    ``.ckpt``) with its weights loaded strictly, in eval mode on the CPU."""
    from detzoo.zoo.loading import load_weights  # loading imports this module

    checkpoint = read_weights(path)
    if checkpoint.spec is None:
        raise ValueError(
            f"{path} does not say which model it holds (no detzoo spec, class path or LightningCLI "
            f"config beside it); use detzoo.zoo.get(<zoo name>, weights={str(path)!r}) "
            f"(detzoo predict --model <zoo name> --weights {path}) or build the model yourself"
        )
    model = build(checkpoint.spec)
    if not isinstance(model, DetectionModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a detzoo model")
    load_weights(model, checkpoint, str(path))
    return model.eval()
