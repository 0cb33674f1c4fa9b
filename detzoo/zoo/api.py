"""``detzoo.zoo.get``: a zoo name in, a ready LightningModule out."""

from __future__ import annotations

from pathlib import Path

import torch

from detzoo.models.base import DetectionModel
from detzoo.zoo.build import build_model, inference_resize, model_num_classes
from detzoo.zoo.checkpoints import read_weights
from detzoo.zoo.download import fetch
from detzoo.zoo.index import ZooError, entry, get_config
from detzoo.zoo.loading import load_weights


def weights_path(name: str, progress: bool = True) -> Path:
    """The local, verified file of a zoo model's published weights, downloaded into the cache
    (``$DETZOO_CACHE``, default ``~/.cache/detzoo``) on first use.

    Raises:
        ZooError: the model has no published weights.
        DownloadError, ChecksumError: see :func:`detzoo.zoo.download.fetch`.
    """
    info = entry(name)
    if info.weights is None:
        raise ZooError(
            f"zoo model {name} has no published weights: use pretrained=False, or pass "
            f"weights=<a checkpoint you trained>. {info.notes or ''}".rstrip()
        )
    source = info.weights
    return fetch(source.url, sha256=source.sha256, md5_prefix=source.md5_prefix, progress=progress)


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get(
    name: str,
    pretrained: bool = True,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    score_thresh: float | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> DetectionModel:
    """A zoo model as a LightningModule, in eval mode (``Trainer.fit`` switches it to training).

    Args:
        name: a zoo name (:func:`detzoo.zoo.list_models`), e.g. ``"faster_rcnn_R50_FPN_3x"``.
        pretrained: load the published weights (downloaded once into the cache, verified).
            ``False``: randomly initialised, as the config builds it.
        weights: load this file instead: a Detectron2 ``.pkl``/``.pth``, a detzoo
            ``.safetensors`` or a Lightning ``.ckpt`` (a local path, ``file://`` or ``http(s)://``
            URL); implies ``pretrained``.
        num_classes: build the model for this many classes. When it differs from the checkpoint's,
            the class-specific predictor layers keep their fresh initialisation and every other
            weight loads (one log line lists what was skipped): fine-tuning on a new dataset.
        score_thresh: every test-time score threshold of the model (``None``: the config's).
        device: where the model goes; default CUDA when available, else the CPU.
        progress: show a progress bar while downloading.

    Raises:
        ZooError: unknown name, or ``pretrained=True`` for a model without published weights.
        CheckpointMismatchError: the weights do not fit the model (every problem listed).
    """
    info = entry(name)
    config = get_config(name)
    model = build_model(config, num_classes=num_classes, source=str(info.config))
    if weights is not None or pretrained:
        if weights is None:
            path = weights_path(name, progress)
        else:
            path = fetch(str(weights), progress=progress)
        new_classes = num_classes is not None and num_classes != model_num_classes(config)
        load_weights(model, read_weights(path), str(path), new_classes=new_classes)
    if score_thresh is not None:
        model.set_test_thresholds(score_thresh=score_thresh)
    return model.to(device if device is not None else default_device()).eval()


def inference_size(name: str) -> tuple[int, int] | None:
    """``(min_size, max_size)`` of a zoo model's test-time shortest-edge resize (what its config's
    data module evaluates at), for :class:`detzoo.Predictor`; ``None`` when it has none."""
    return inference_resize(get_config(name), source=str(entry(name).config))
