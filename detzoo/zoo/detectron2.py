"""Detectron2 checkpoints → detzoo state dicts.

detzoo's module names mirror Detectron2's (``backbone.bottom_up.res2.0.conv1.norm.weight``,
``proposal_generator.rpn_head.conv.weight``, ``roi_heads.box_predictor.cls_score.weight``, ...), so
a Detectron2 model-zoo checkpoint converts by reading it safely, applying the few renames a
model declares (``DETECTRON2_RENAMES``: ``(regex, replacement)`` pairs) and checking strictly that
every weight is used, none is missing and every shape matches. The one exception is training state a
model declares a checkpoint may lack (``OPTIONAL_STATE_KEYS``: regexes on its state-dict keys, e.g.
RetinaNet's running loss normaliser, which Detectron2 keeps outside its state dict): absent from a
file, it keeps the model's own value; present, it must fit and is loaded like any other tensor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detzoo.zoo.safe_pickle import load_arrays_pickle


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model (missing, unexpected or misshapen keys)."""


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The raw ``{name: tensor}`` weights of a Detectron2 ``.pkl`` (model zoo, read with the
    arrays-only unpickler) or ``.pth`` (``torch.load(weights_only=True)``) checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".pkl":
        data = load_arrays_pickle(path)
    else:
        data = torch_load_weights_only(path)
    return weights_of(data, str(path))


def torch_load_weights_only(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, with an error that says what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path} could not be read as a weights-only torch checkpoint ({err}); detzoo never "
            f"unpickles arbitrary objects. Save the state dict alone (torch.save(model.state_dict()))"
            f" or use detzoo.zoo.save_weights"
        ) from err


def weights_of(data: object, source: str) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` weights in a loaded checkpoint: its ``"model"`` entry (Detectron2's
    layout) or the mapping itself; numpy arrays become tensors."""
    if isinstance(data, Mapping) and "model" in data:
        data = data["model"]
    if not isinstance(data, Mapping):
        raise CheckpointMismatchError(
            f"{source} holds a {type(data).__name__}, not a dict of weights"
        )
    out = {}
    for name, value in data.items():
        if isinstance(value, np.ndarray):
            # ascontiguousarray makes 0-d arrays 1-d: keep the shape (scalar buffers)
            value = torch.from_numpy(np.ascontiguousarray(value).reshape(value.shape))
        if not isinstance(value, torch.Tensor):
            raise CheckpointMismatchError(
                f"{source}: entry {name!r} is a {type(value).__name__}, not an array"
            )
        out[str(name)] = value
    return out


def rename(
    weights: Mapping[str, torch.Tensor], renames: Sequence[tuple[str, str]]
) -> dict[str, torch.Tensor]:
    """Applies ``(regex, replacement)`` renames in order to every key; drops Detectron2's
    ``num_batches_tracked`` counters (detzoo's frozen/sync norms have none)."""
    out = {}
    for name, value in weights.items():
        if name.endswith("num_batches_tracked"):
            continue
        new = name
        for pattern, repl in renames:
            new = re.sub(pattern, repl, new)
        if new in out:
            raise CheckpointMismatchError(
                f"two checkpoint keys map to {new!r} (the second is {name!r})"
            )
        out[new] = value
    return out


def optional_state_keys(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> list[str]:
    """The model's state-dict keys that ``weights`` lacks and the model declares a checkpoint may
    lack (its ``OPTIONAL_STATE_KEYS`` regexes): they keep the model's own values."""
    patterns = [re.compile(p) for p in getattr(model, "OPTIONAL_STATE_KEYS", ())]
    return [
        k for k in model.state_dict() if k not in weights and any(p.search(k) for p in patterns)
    ]


def check_compatible(
    model: nn.Module, weights: Mapping[str, torch.Tensor], source: str, skip: Sequence[str] = ()
) -> None:
    """Raises :class:`CheckpointMismatchError` listing every missing, unexpected or misshapen key
    (keys matching a regex in ``skip`` are not required; the model's optional state, see
    :func:`optional_state_keys`, may be absent)."""
    expected = model.state_dict()
    skipped = [re.compile(p) for p in skip]
    optional = set(optional_state_keys(model, weights))

    def is_skipped(key: str) -> bool:
        return any(p.search(key) for p in skipped)

    missing = [k for k in expected if k not in weights and not is_skipped(k) and k not in optional]
    unexpected = [k for k in weights if k not in expected and not is_skipped(k)]
    misshapen = [
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in weights
        if k in expected
        and tuple(weights[k].shape) != tuple(expected[k].shape)
        and not is_skipped(k)
    ]
    if missing or unexpected or misshapen:
        parts = []
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", misshapen),
        ):
            if keys:
                shown = ", ".join(keys[:10]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 10 else ""
                )
                parts.append(f"{title}: {shown}")
        raise CheckpointMismatchError(
            f"{source} does not fit {type(model).__name__}: "
            + "; ".join(parts)
            + ". Is it the checkpoint of this architecture (depth, FPN/C4, heads, num_classes)?"
        )


def load_detectron2_weights(model: nn.Module, path: str | Path) -> None:
    """Loads a Detectron2 checkpoint into ``model`` strictly (every weight used, none missing but
    the model's optional state, which keeps its values)."""
    weights = rename(read_checkpoint(path), getattr(model, "DETECTRON2_RENAMES", ()))
    check_compatible(model, weights, str(path))
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in weights.items()}
    state.update({k: expected[k] for k in optional_state_keys(model, weights)})
    model.load_state_dict(state, strict=True)
