"""``Predictor``: any image in, prediction dicts out — test-time resize, batching and devices.

A detzoo model called on images predicts for exactly the pixels it is given (DESIGN.md). This
wrapper adds what Detectron2's ``DefaultPredictor`` adds: it loads files, converts any image to
RGB uint8, resizes its short side as the model was evaluated (the data pipeline's own
:func:`~detzoo.data.build_test_transforms`, so predictions match ``detzoo validate``), runs the
model in eval mode without gradients on the model's device, and returns predictions at each
image's original size, on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from detzoo.data.image_file import read_image_file
from detzoo.data.transforms import build_test_transforms

#: a file path, an ``[H, W, 3]`` (or ``[H, W]``) RGB array, a ``[3, H, W]`` RGB tensor or a PIL image
ImageInput = str | Path | np.ndarray | torch.Tensor | Image.Image


def to_rgb_array(image: ImageInput) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB array of an image file (EXIF orientation applied, as OpenCV reads
    it), array (``[H, W, 3]`` RGB or ``[H, W]`` grey, 0–255), tensor (``[3, H, W]`` RGB) or PIL
    image."""
    if isinstance(image, (str, Path)):
        return read_image_file(str(image))  # whole, or an error naming the file
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))  # a writable copy
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be [3, H, W] RGB, got {tuple(image.shape)}")
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image array must be [H, W, 3] RGB, got {image.shape}")
        return np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8, copy=False))
    raise TypeError(
        f"cannot predict on a {type(image).__name__}; give a path, array, tensor or PIL image"
    )


class Predictor:
    """Runs a detzoo model on images of any kind and size.

    Args:
        model: a detzoo model (e.g. from :func:`detzoo.zoo.get`); put in eval mode.
        min_size, max_size: test-time shortest-edge resize in pixels (Detectron2's
            ``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``); ``min_size=None`` feeds images unresized.
        batch_size: images per forward pass.

    Calling it on a list of images returns a list of prediction dicts (``boxes`` XYXY in original
    pixels, ``scores``, ``labels``, and ``masks``/``keypoints`` where the model has them); on one
    image, one dict.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        min_size: int | None = 800,
        max_size: int = 1333,
        batch_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.min_size, self.max_size = min_size, max_size
        self.batch_size = batch_size
        self._resize = build_test_transforms(min_size, max_size) if min_size else None

    @classmethod
    def from_zoo(cls, name: str, batch_size: int = 1, **get_kwargs: Any) -> Predictor:
        """A predictor for a zoo model, resizing as its config evaluates (``get_kwargs`` go to
        :func:`detzoo.zoo.get`)."""
        from detzoo import zoo

        size = zoo.inference_size(name)
        model = zoo.get(name, **get_kwargs)
        if size is None:
            return cls(model, None, batch_size=batch_size)
        return cls(model, size[0], size[1], batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prepare(self, image: ImageInput) -> tuple[torch.Tensor, tuple[int, int]]:
        array = to_rgb_array(image)
        size = (int(array.shape[0]), int(array.shape[1]))
        if self._resize is not None:
            array = self._resize({"image": array})["image"]
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
        return tensor.to(self.device), size

    @torch.no_grad()
    def __call__(
        self, images: ImageInput | Sequence[ImageInput]
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        outputs: list[dict[str, torch.Tensor]] = []
        for start in range(0, len(items), self.batch_size):
            prepared = [self._prepare(x) for x in items[start : start + self.batch_size]]
            predictions = self.model(
                [tensor for tensor, _ in prepared], output_sizes=[size for _, size in prepared]
            )
            outputs += [to_cpu(p) for p in predictions]
        return outputs[0] if single else outputs


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (also inside dicts and lists, e.g. DensePose charts or
    panoptic ``segments_info``) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value
