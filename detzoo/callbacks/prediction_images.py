"""Drawing a model's predictions on validation images, saved as one PNG grid per evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torchvision.io import write_png
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks, make_grid

from detzoo.structures.densepose import densepose_to_box_iuv, draw_densepose

# one colour per label (cycled): Tableau's 10 categorical colours
_PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


def draw_predictions(
    image: torch.Tensor,
    prediction: dict[str, torch.Tensor],
    class_names: Sequence[str] | None = None,
    score_thresh: float = 0.5,
) -> torch.Tensor:
    """``image`` uint8 ``[3, H, W]`` RGB with the prediction's boxes (labelled ``name score``)
    and masks (if any) of score >= ``score_thresh`` drawn on it, over the stuff segments of a
    panoptic prediction (grey shades) and under the DensePose charts (part colours and U/V
    isolines) of a DensePose prediction; returns uint8 ``[3, H, W]``."""
    keep = prediction["scores"] >= score_thresh
    image = image.to(torch.uint8).cpu()
    if "segments_info" in prediction:
        image = _draw_stuff(image, prediction["panoptic_seg"].cpu(), prediction["segments_info"])
    colors = [_PALETTE[int(label) % len(_PALETTE)] for label in prediction["labels"][keep]]
    if not colors:
        return image
    if "densepose" in prediction:
        charts = {k: v[keep].cpu() for k, v in prediction["densepose"].items()}
        image = draw_densepose(image, densepose_to_box_iuv(charts, prediction["boxes"][keep].cpu()))
    elif "masks" in prediction:
        masks = prediction["masks"][keep].cpu().bool()
        image = draw_segmentation_masks(image, masks, alpha=0.4, colors=colors)
    labels = [
        f"{class_names[int(label)] if class_names else int(label)} {float(score):.2f}"
        for label, score in zip(prediction["labels"][keep], prediction["scores"][keep])
    ]
    return draw_bounding_boxes(image, prediction["boxes"][keep].cpu(), labels, colors, width=2)


def _draw_stuff(
    image: torch.Tensor, panoptic: torch.Tensor, segments: Sequence[dict]
) -> torch.Tensor:
    """The stuff segments of a panoptic segmentation (int ``[H, W]`` ids) blended in grey shades."""
    stuff = [s for s in segments if not s["isthing"]]
    if not stuff:
        return image
    masks = torch.stack([panoptic == s["id"] for s in stuff])
    shades = [(g, g, g) for g in (64 + 48 * (s["category_id"] % 4) for s in stuff)]
    return draw_segmentation_masks(image, masks, alpha=0.5, colors=shades)


class PredictionImages(L.Callback):
    """After each validation run, draws the model's predictions on the first ``num_images``
    validation images and writes them as one grid, ``<log_dir>/predictions/step_<N>.png`` (or
    under ``out_dir``), the latest also as ``predictions.png``.

    Args:
        num_images: how many validation images to draw.
        score_thresh: draw detections scoring at least this.
        out_dir: where to write; default: the trainer's log directory.
    """

    def __init__(
        self, num_images: int = 8, score_thresh: float = 0.5, out_dir: str | None = None
    ) -> None:
        self.num_images = num_images
        self.score_thresh = score_thresh
        self.out_dir = out_dir
        self.last_path: Path | None = None

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        dataset = getattr(trainer.datamodule, "val_dataset", None)
        if dataset is None or len(dataset) == 0:
            return
        class_names = getattr(dataset, "class_names", None)
        drawn = []
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            for index in range(min(self.num_images, len(dataset))):
                image, _ = dataset[index]
                (prediction,) = pl_module([image.to(pl_module.device)])
                drawn.append(draw_predictions(image, prediction, class_names, self.score_thresh))
        pl_module.train(was_training)
        size = max(max(d.shape[1:]) for d in drawn)
        padded = [
            torch.nn.functional.pad(d, (0, size - d.shape[2], 0, size - d.shape[1])) for d in drawn
        ]
        grid = make_grid(torch.stack(padded), nrow=4, padding=4)
        out = Path(self.out_dir or trainer.log_dir or trainer.default_root_dir)
        (out / "predictions").mkdir(parents=True, exist_ok=True)
        path = out / "predictions" / f"step_{trainer.global_step}.png"
        write_png(grid, str(path))
        write_png(grid, str(out / "predictions.png"))
        self.last_path = path
