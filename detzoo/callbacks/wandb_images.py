"""Predictions and ground truth on validation images, logged to Weights & Biases as overlays.

W&B draws the boxes and masks itself (``wandb.Image(image, boxes=..., masks=...)``), so in its
UI each class, the predictions and the ground truth can be toggled and the predictions filtered by
score; nothing is drawn into the pixels (for PNG files with the detections drawn in, see
:class:`~detzoo.callbacks.PredictionImages`). Add the callback next to a ``WandbLogger``::

    trainer:
      logger:
        class_path: lightning.pytorch.loggers.WandbLogger
        init_args: {project: detzoo}
      callbacks:
        - class_path: detzoo.callbacks.WandbPredictionImages
          init_args: {num_images: 8, every_n_val_epochs: 1}

wandb itself is only imported by the logger (it stays an optional dependency of detzoo).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

#: W&B stores an overlay mask as an 8-bit PNG of class ids through a signed cast
#: (``astype(np.int8)``), so ids above 127 do not survive: masks are logged for at most
#: 126 classes (id 0 is the background)
_MAX_MASK_CLASSES = 126


def wandb_boxes(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    canvas_size: tuple[int, int],
    class_names: Sequence[str],
    scores: torch.Tensor | None = None,
    crowd: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """W&B ``box_data`` of XYXY pixel ``boxes`` on an image of ``canvas_size`` ``(H, W)``:
    positions relative to the image (W&B's default domain), the class id, and a caption
    ``name score`` (``scores`` also as a W&B score, which its UI filters on) or ``name (crowd)``
    for crowd regions."""
    height, width = canvas_size
    out = []
    for i, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist())):
        x0, y0, x1, y1 = box
        label = int(label)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        entry: dict[str, Any] = {
            "position": {
                "minX": min(max(x0 / width, 0.0), 1.0),
                "minY": min(max(y0 / height, 0.0), 1.0),
                "maxX": min(max(x1 / width, 0.0), 1.0),
                "maxY": min(max(y1 / height, 0.0), 1.0),
            },
            "class_id": label,
            "box_caption": name,
        }
        if scores is not None:
            score = float(scores[i])
            entry["scores"] = {"score": score}
            entry["box_caption"] = f"{name} {score:.2f}"
        elif crowd is not None and int(crowd[i]):
            entry["box_caption"] = f"{name} (crowd)"
        out.append(entry)
    return out


def semantic_mask(
    masks: torch.Tensor,
    labels: torch.Tensor,
    image_size: tuple[int, int],
    canvas_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """uint8 map of class ids + 1 (0: background) from instance ``masks`` ``[N, h, w]``, painted
    in order (later instances on top): resized to ``image_size`` when another size, then padded
    at the bottom and right to ``canvas_size`` (default: ``image_size``)."""
    canvas = torch.zeros(canvas_size or image_size, dtype=torch.uint8)
    if len(masks) == 0:
        return canvas.numpy()
    masks = masks.cpu()
    if tuple(masks.shape[-2:]) != tuple(image_size):
        masks = torch.nn.functional.interpolate(
            masks[None].float(), size=image_size, mode="nearest"
        )[0]
    height, width = image_size
    region = canvas[:height, :width]
    for mask, label in zip(masks.bool(), labels.tolist()):
        region[mask] = int(label) + 1
    return canvas.numpy()


class WandbPredictionImages(L.Callback):
    """Every ``every_n_val_epochs`` validation runs, logs the first ``num_images`` validation
    images to W&B under ``key`` with two overlays each: ``predictions`` (boxes scoring at least
    ``score_thresh``, captioned ``class score``) and ``ground_truth`` (the annotated boxes), plus
    the same two as masks when the model predicts masks. Class names come from the validation
    dataset's ``class_names``. Images are logged at the resolution the model saw them, padded at
    the bottom and right to the largest of them (W&B shows a group of images at one size).

    Needs a :class:`~lightning.pytorch.loggers.WandbLogger` among the trainer's loggers (a
    ``MisconfigurationException`` at setup otherwise).

    Args:
        num_images: how many validation images (always the same ones, the first of the set).
        every_n_val_epochs: log on every n-th validation run (the sanity check does not count).
        score_thresh: log predictions scoring at least this.
        key: the W&B key of the images.
    """

    def __init__(
        self,
        num_images: int = 8,
        every_n_val_epochs: int = 1,
        score_thresh: float = 0.5,
        key: str = "val/predictions",
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if every_n_val_epochs < 1:
            raise ValueError(f"every_n_val_epochs must be >= 1, got {every_n_val_epochs}")
        self.num_images = num_images
        self.every_n_val_epochs = every_n_val_epochs
        self.score_thresh = score_thresh
        self.key = key
        self.val_runs = 0
        self.logged_steps: list[int] = []

    @staticmethod
    def _logger(trainer: L.Trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage in ("fit", "validate") and self._logger(trainer) is None:
            found = ", ".join(type(lg).__name__ for lg in trainer.loggers) or "no logger"
            raise MisconfigurationException(
                f"WandbPredictionImages logs to Weights & Biases and needs a WandbLogger, but the "
                f"trainer has {found}: pass Trainer(logger=WandbLogger(...)) (on the command line: "
                f"--trainer.logger WandbLogger), or use detzoo.callbacks.PredictionImages for PNGs"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"val_runs": self.val_runs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.val_runs = state_dict.get("val_runs", 0)

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.val_runs += 1
        if self.val_runs % self.every_n_val_epochs:
            return
        logger = self._logger(trainer)
        dataset = getattr(trainer.datamodule, "val_dataset", None)
        if dataset is None:
            dataset = getattr(trainer.val_dataloaders, "dataset", None)
        if logger is None or dataset is None or len(dataset) == 0:
            return
        class_names = list(getattr(dataset, "class_names", None) or [])
        num_classes = getattr(pl_module, "num_classes", None) or len(class_names)
        if len(class_names) < num_classes:
            class_names += [f"class_{i}" for i in range(len(class_names), num_classes)]
        samples = []
        modes = [(module, module.training) for module in pl_module.modules()]
        pl_module.eval()
        try:
            with torch.no_grad():
                for index in range(min(self.num_images, len(dataset))):
                    image, target = dataset[index]
                    (prediction,) = pl_module([image.to(pl_module.device)])
                    samples.append((image.cpu(), prediction, target))
        finally:  # each module back in its mode (some may be kept in eval mode on purpose)
            for module, training in modes:
                module.training = training
        # one size for all (W&B shows a group of images at the first one's size): pad the
        # bottom and right, and place the overlays on that canvas
        canvas = (
            max(image.shape[1] for image, _, _ in samples),
            max(image.shape[2] for image, _, _ in samples),
        )
        images, boxes, masks, captions = [], [], [], []
        for index, (image, prediction, target) in enumerate(samples):
            overlay = self.overlays(image, prediction, target, class_names, canvas)
            pad = (0, canvas[1] - image.shape[2], 0, canvas[0] - image.shape[1])
            images.append(torch.nn.functional.pad(image, pad))
            boxes.append(overlay["boxes"])
            masks.append(overlay.get("masks"))
            name = target.get("file_name")
            captions.append(Path(name).name if name else f"val image {index}")
        extra: dict[str, list] = {"boxes": boxes, "caption": captions}
        if any(m is not None for m in masks):
            extra["masks"] = masks
        logger.log_image(self.key, images, step=trainer.global_step, **extra)
        self.logged_steps.append(trainer.global_step)

    def overlays(
        self,
        image: torch.Tensor,
        prediction: Mapping[str, torch.Tensor],
        target: Mapping[str, Any],
        class_names: Sequence[str],
        canvas_size: tuple[int, int] | None = None,
    ) -> dict[str, dict]:
        """``{"boxes": ..., "masks": ...}`` arguments of ``wandb.Image`` for one image: the
        prediction (at the image's size) as ``predictions`` and the target (in its ``orig_size``
        frame, as evaluation datasets give it) as ``ground_truth``, placed on an image padded at
        the bottom and right to ``canvas_size`` (default: the image's size)."""
        size = (int(image.shape[-2]), int(image.shape[-1]))
        canvas = canvas_size or size
        gt_size = tuple(int(v) for v in target.get("orig_size", size))
        box_labels = dict(enumerate(class_names))
        keep = prediction["scores"] >= self.score_thresh
        order = torch.argsort(prediction["scores"][keep])  # the best painted last, on top
        pred_labels = prediction["labels"][keep][order].cpu()
        gt_boxes = target.get("boxes", torch.zeros(0, 4)).float().cpu()
        gt_boxes = gt_boxes * gt_boxes.new_tensor(
            [size[1] / gt_size[1], size[0] / gt_size[0]] * 2
        )  # into the image's frame
        gt_labels = target.get("labels", torch.zeros(0, dtype=torch.int64)).cpu()
        out: dict[str, dict] = {
            "boxes": {
                "predictions": {
                    "box_data": wandb_boxes(
                        prediction["boxes"][keep][order].cpu(),
                        pred_labels,
                        canvas,
                        class_names,
                        scores=prediction["scores"][keep][order].cpu(),
                    ),
                    "class_labels": box_labels,
                },
                "ground_truth": {
                    "box_data": wandb_boxes(
                        gt_boxes, gt_labels, canvas, class_names, crowd=target.get("iscrowd")
                    ),
                    "class_labels": box_labels,
                },
            }
        }
        if "masks" in prediction and len(class_names) <= _MAX_MASK_CLASSES:
            mask_labels = {0: "background", **{i + 1: n for i, n in enumerate(class_names)}}
            pred_masks = prediction["masks"][keep][order]
            out["masks"] = {
                "predictions": {
                    "mask_data": semantic_mask(pred_masks, pred_labels, size, canvas),
                    "class_labels": mask_labels,
                }
            }
            gt_masks = target.get("masks")
            if gt_masks is not None:
                # large instances first, so that small ones stay visible on top
                order = torch.argsort(gt_masks.flatten(1).sum(1), descending=True)
                out["masks"]["ground_truth"] = {
                    "mask_data": semantic_mask(gt_masks[order], gt_labels[order], size, canvas),
                    "class_labels": mask_labels,
                }
        return out
