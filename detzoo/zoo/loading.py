"""Loading checkpoint weights into a built model: strictly, or for fine-tuning on new classes.

Strict means every weight of the file is used, none of the model's is missing and every shape
matches (:func:`detzoo.zoo.detectron2.check_compatible` lists all problems at once). For
fine-tuning with another ``num_classes``, the class-specific predictor layers are the tensors whose
shape differs from the checkpoint's only in the first (output) dimension — the class dimension of
a box classifier ``[K + 1, D]``, a class-specific box regressor ``[4K, D]``, RetinaNet's
classification conv ``[A·K, C, 3, 3]``, a mask predictor ``[K, C, 1, 1]`` — found by shape alone,
so every model's predictors qualify without declaring them. Those keep the freshly built model's
initialisation; everything else must load, but for the training state a model declares a file may
lack (:func:`detzoo.zoo.detectron2.optional_state_keys`: RetinaNet's running loss normaliser, absent
from Detectron2's files and from detzoo's written before it was saved), which keeps its value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import torch
from torch import nn

from detzoo.zoo.checkpoints import CheckpointFile
from detzoo.zoo.detectron2 import check_compatible, optional_state_keys, rename
from detzoo.zoo.imagenet import is_c2_imagenet, is_torchvision_imagenet

log = logging.getLogger("detzoo.zoo")

#: BatchNorm's ``num_batches_tracked`` counters (regex on state-dict keys)
COUNTER = r"num_batches_tracked$"


def to_model_names(model: nn.Module, checkpoint: CheckpointFile) -> dict[str, torch.Tensor]:
    """The checkpoint's weights under the model's parameter names (Detectron2 files go through
    the model's ``DETECTRON2_RENAMES``; detzoo and Lightning files already use them)."""
    weights = checkpoint.weights
    if checkpoint.format == "detectron2":
        return rename(weights, getattr(model, "DETECTRON2_RENAMES", ()))
    return {k: v for k, v in weights.items() if not re.search(COUNTER, k)}


def class_specific_keys(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys present in both whose shapes differ only in dimension 0 (the class dimension)."""
    expected = model.state_dict()
    keys = []
    for name, value in weights.items():
        target = expected.get(name)
        if target is None or value.shape == target.shape:
            continue
        if value.dim() == target.dim() >= 1 and value.shape[1:] == target.shape[1:]:
            keys.append(name)
    return keys


def load_weights(
    model: nn.Module, checkpoint: CheckpointFile, source: str, new_classes: bool = False
) -> list[str]:
    """Loads a checkpoint into ``model``.

    Args:
        model: the built model (its state dict's names and shapes are the reference).
        checkpoint: from :func:`detzoo.zoo.checkpoints.read_weights`.
        source: names the file in messages.
        new_classes: the model was built for another number of classes than the checkpoint's:
            skip the class-specific predictor layers (see the module docstring) instead of
            failing on them, and log one line naming them.

    Returns:
        The keys that were not loaded (empty unless ``new_classes``).

    Raises:
        CheckpointMismatchError: missing, unexpected or (other) misshapen keys, all listed.
        ValueError: the file is an ImageNet backbone checkpoint, not a detector's.
    """
    if is_c2_imagenet(checkpoint.weights) or is_torchvision_imagenet(checkpoint.weights):
        raise ValueError(
            f"{source} is an ImageNet backbone checkpoint, not a {type(model).__name__} one; "
            f"initialise the backbone from it with the detzoo.callbacks.BackboneWeights callback "
            f"(or detzoo.zoo.imagenet.load_imagenet_backbone) instead"
        )
    weights = to_model_names(model, checkpoint)
    skipped = class_specific_keys(model, weights) if new_classes else []
    # BatchNorm's batch counters are never read (momentum 0.1) and no checkpoint format carries
    # them (to_model_names drops them): a model with BatchNorm keeps its own
    skip = [f"^{re.escape(k)}$" for k in skipped] + [COUNTER]
    check_compatible(model, weights, source, skip=skip)
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in weights.items() if k not in skipped}
    state.update({k: expected[k] for k in optional_state_keys(model, weights)})
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not re.search(COUNTER, k)]
    if sorted(missing) != sorted(skipped) or result.unexpected_keys:
        raise RuntimeError(  # check_compatible passed, so this is a bug, not a user error
            f"loading {source}: missing {result.missing_keys}, unexpected {result.unexpected_keys}"
        )
    if skipped:
        log.info(
            "%s: %d class-specific tensors re-initialised for %s classes, not loaded from %s: %s",
            type(model).__name__,
            len(skipped),
            getattr(model, "num_classes", "the new"),
            source,
            ", ".join(skipped),
        )
    return skipped
