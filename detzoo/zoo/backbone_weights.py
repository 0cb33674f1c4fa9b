"""Initialising a detector's ResNet from ImageNet weights (Detectron2's ``MODEL.WEIGHTS=R-50.pkl``).

Understood files: Detectron2's/Detectron's MSRA and FAIR ImageNet pickles (``R-50.pkl``,
``R-101.pkl``, ``X-101-32x8d.pkl``; caffe2 names, possibly under ``"blobs"``), torchvision's
ImageNet ResNet/ResNeXt state dicts (``resnet50-*.pth``), and ResNet weights already in detzoo's
names (``stem.*``, ``res2.*``; ``.pth`` or ``.safetensors``). See :mod:`detzoo.zoo.imagenet` for
the name mapping.

The weights go into the model's one :class:`~detzoo.backbones.ResNet`; a stage the ResNet does not
have but another module of the model does — a C4 model's ``roi_heads.res5`` — is loaded there, as
Detectron2 does. Every ResNet weight must be in the file (shapes checked); stages the model has no
use for are ignored. MSRA/caffe2 weights expect BGR input and torchvision's RGB: a model whose
``input_format`` disagrees is refused, because it would train from a silently wrong start.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from detzoo.backbones.resnet import ResNet
from detzoo.zoo.detectron2 import CheckpointMismatchError, torch_load_weights_only, weights_of
from detzoo.zoo.imagenet import (
    convert_c2_imagenet,
    convert_torchvision_imagenet,
    is_c2_imagenet,
    is_torchvision_imagenet,
)
from detzoo.zoo.safe_pickle import load_arrays_pickle

_STAGES = ("stem", "res2", "res3", "res4", "res5")
# the channel order each kind of ImageNet weights was trained with
_INPUT_FORMAT = {"caffe2": "BGR", "torchvision": "RGB"}


def read_imagenet_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """An ImageNet ResNet checkpoint in detzoo ResNet names, and its kind: ``"caffe2"``,
    ``"torchvision"`` or ``"detzoo"``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet weights {path} do not exist")
    if path.suffix == ".safetensors":
        data: object = load_file(str(path), device="cpu")
    elif path.suffix == ".pkl":
        data = load_arrays_pickle(path)
        if isinstance(data, Mapping) and "blobs" in data:  # Detectron (v1) files
            data = data["blobs"]
    else:
        data = torch_load_weights_only(path)
        if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
            data = data["state_dict"]
    weights = weights_of(data, str(path))
    if is_c2_imagenet(weights):
        return convert_c2_imagenet(weights), "caffe2"
    if is_torchvision_imagenet(weights):
        return convert_torchvision_imagenet(weights), "torchvision"
    if any(k.split(".", 1)[0] in _STAGES for k in weights):
        return weights, "detzoo"
    raise CheckpointMismatchError(
        f"{path} is not an ImageNet ResNet checkpoint detzoo knows (caffe2 names like res2_0_branch2a_w, "
        f"torchvision names like layer1.0.conv1.weight, or detzoo names like res2.0.conv1.weight); "
        f"first keys: {list(weights)[:5]}"
    )


def _stage_owners(model: nn.Module) -> dict[str, str]:
    """``{stage: module path}`` for the stem and every ResNet stage in the model."""
    resnets = [(name, m) for name, m in model.named_modules() if isinstance(m, ResNet)]
    if len(resnets) != 1:
        raise ValueError(
            f"{type(model).__name__} has {len(resnets)} detzoo ResNet modules; ImageNet "
            f"initialisation needs exactly one (a timm backbone brings its own pretrained weights)"
        )
    prefix, resnet = resnets[0]
    owners = {s: f"{prefix}.{s}".lstrip(".") for s in _STAGES if hasattr(resnet, s)}
    for name, _ in model.named_modules():  # stages living elsewhere: a C4 head's res5
        stage = name.rsplit(".", 1)[-1]
        if stage in _STAGES and stage not in owners:
            owners[stage] = name
    return owners


def load_imagenet_backbone(model: nn.Module, path: str | Path) -> list[str]:
    """Loads ImageNet ResNet weights into ``model``'s ResNet (and a C4 head's ``res5``).

    Returns:
        The model keys that were loaded.

    Raises:
        ValueError: the model has no single ResNet, or its ``input_format`` does not match the
            weights' (BGR for caffe2/MSRA, RGB for torchvision).
        CheckpointMismatchError: a ResNet weight is missing from the file or misshapen.
    """
    weights, kind = read_imagenet_weights(path)
    wanted_format = _INPUT_FORMAT.get(kind)
    model_format = getattr(model, "input_format", None)
    if wanted_format and model_format and model_format != wanted_format:
        raise ValueError(
            f"{path} holds {kind} ImageNet weights, trained on {wanted_format} input, but the model "
            f"takes input_format={model_format}; set input_format: {wanted_format} (and that "
            f"network's pixel_mean/pixel_std) or use {kind} weights' counterpart"
        )
    owners = _stage_owners(model)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        stage, _, rest = key.partition(".")
        if stage in owners:
            mapped[f"{owners[stage]}.{rest}"] = value
    expected = {
        k: v
        for k, v in model.state_dict().items()
        if any(k.startswith(owner + ".") for owner in owners.values())
        and not k.endswith("num_batches_tracked")
    }
    missing = sorted(k for k in expected if k not in mapped)
    misshapen = [
        f"{k}: file {tuple(mapped[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in mapped and mapped[k].shape != v.shape
    ]
    if missing or misshapen:
        raise CheckpointMismatchError(
            f"{path} ({kind} ImageNet weights) does not fit the model's ResNet: "
            + "; ".join(
                f"{title}: {', '.join(keys[:8])}{f', ... ({len(keys)} in all)' if len(keys) > 8 else ''}"
                for title, keys in (("missing", missing), ("shape mismatch", misshapen))
                if keys
            )
            + ". Is it the checkpoint of this depth/width (R-50 vs R-101, ResNeXt groups)?"
        )
    model.load_state_dict(
        {k: v.to(expected[k].dtype) for k, v in mapped.items() if k in expected}, strict=False
    )
    return sorted(k for k in mapped if k in expected)
