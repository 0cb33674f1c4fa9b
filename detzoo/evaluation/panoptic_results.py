"""COCO panoptic results: the PNGs and ``predictions.json`` that Detectron2's
``COCOPanopticEvaluator`` writes.

Each image's ``panoptic_seg`` is saved as ``predictions/<image file stem>.png`` in the COCO
panoptic encoding (segment id = R + 256 G + 256² B, 0 = void). ``predictions.json`` lists the
images under ``annotations``, each with ``image_id``, ``file_name`` (the PNG) and its
``segments_info``. The segments' ``category_id`` values are the dataset's ids; as in Detectron2,
``isthing`` is dropped and the other keys (``score``, ``instance_id``, ``area``) are kept. This is
what panopticapi's ``pq_compute(gt_json, "predictions.json", gt_folder, "predictions")`` reads.
Detectron2 puts the PNGs in a temporary folder that it deletes; here they stay next to the json,
in the folder panopticapi looks in by default.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

from detzoo.evaluation.distributed import all_gather_list, is_main_process
from detzoo.evaluation.results_file import target_image_id, write_json
from detzoo.structures.panoptic_ids import id2rgb

#: the json file, in the results folder
PANOPTIC_RESULTS_FILE = "predictions.json"
#: the folder of the PNGs, in the results folder (panopticapi's default for the json above)
PANOPTIC_PNG_DIR = "predictions"


def _png_bytes(panoptic_seg: Tensor) -> bytes:
    with io.BytesIO() as out:
        Image.fromarray(id2rgb(panoptic_seg.detach().cpu().numpy())).save(out, format="PNG")
        return out.getvalue()


def panoptic_segments_to_coco(
    segments_info: Sequence[Mapping[str, Any]],
    thing_category_ids: Sequence[int] | None,
    stuff_category_ids: Sequence[int] | None,
) -> list[dict[str, Any]]:
    """Panoptic FPN ``segments_info`` with the dataset's category ids and without ``isthing``,
    as Detectron2's ``COCOPanopticEvaluator`` writes them.

    Args:
        segments_info: Panoptic FPN's segments: ``category_id`` is the thing label when
            ``isthing``, else the semantic channel (``1 + i`` for the i-th stuff class).
        thing_category_ids: ``thing_category_ids[label]`` is a thing label's dataset id.
        stuff_category_ids: ``stuff_category_ids[i]`` is the i-th stuff class's dataset id.
            A list that is None leaves those ids as they are.
    """
    coco_segments = []
    for segment in segments_info:
        value = int(segment["category_id"])
        if segment["isthing"]:
            category_id = _category_id(thing_category_ids, value, value, "thing label")
        else:
            category_id = _category_id(stuff_category_ids, value - 1, value, "stuff channel")
        kept = {k: v for k, v in segment.items() if k != "isthing"}
        coco_segments.append({**kept, "category_id": category_id})
    return coco_segments


def _category_id(category_ids: Sequence[int] | None, index: int, value: int, name: str) -> int:
    if category_ids is None:
        return value
    if not 0 <= index < len(category_ids):
        raise ValueError(
            f"predicted {name} {value} has no dataset category id (the dataset has "
            f"{len(category_ids)} such classes); the model's classes must match the evaluated "
            f"dataset's"
        )
    return int(category_ids[index])


class PanopticResultsWriter:
    """Writes an evaluation run's panoptic predictions in the COCO panoptic format, as Detectron2's
    ``COCOPanopticEvaluator(output_dir=...)`` does (see the module docstring for the files).

    It has the evaluators' interface but computes no metric. :meth:`update` encodes each image's
    PNG. :meth:`compute` gathers every rank's images (every rank must call it), has rank 0 write
    them to ``output_dir``, and returns ``{}``.

    Args:
        output_dir: the results folder; it is created.
        thing_category_ids, stuff_category_ids: the dataset category ids of the thing labels and
            of the stuff classes (semantic channels ``1, 2, ...``), in order, as
            :func:`~detzoo.evaluation.results_file.category_ids_by_label` gives them from
            :class:`detzoo.data.CocoPanoptic`'s ``thing_dataset_id_to_contiguous_id`` and
            ``stuff_dataset_id_to_contiguous_id``; None leaves those ids as they are.

    Inputs to :meth:`update`, one dict per image: predictions with ``panoptic_seg`` int
    ``[H, W]`` (segment ids, 0 = void) and ``segments_info`` (Panoptic FPN's, with ``isthing``),
    and targets with the image's dataset ``image_id`` and ``file_name`` (its path; the PNG takes
    its stem).
    """

    def __init__(
        self,
        output_dir: str | Path,
        thing_category_ids: Sequence[int] | None = None,
        stuff_category_ids: Sequence[int] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.thing_category_ids = (
            list(thing_category_ids) if thing_category_ids is not None else None
        )
        self.stuff_category_ids = (
            list(stuff_category_ids) if stuff_category_ids is not None else None
        )
        self._images: list[tuple[dict[str, Any], bytes]] = []

    def update(
        self, preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
    ) -> None:
        """Add a batch of images; see the class docstring for the dict contents."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        for i, (pred, target) in enumerate(zip(preds, targets)):
            if "file_name" not in target:
                raise ValueError(
                    f"evaluation target {i} has no 'file_name': the panoptic PNG is named after "
                    f"the image file (detzoo's datasets set it)"
                )
            annotation = {
                "image_id": target_image_id(target, i),
                "file_name": f"{Path(target['file_name']).stem}.png",
                "segments_info": panoptic_segments_to_coco(
                    pred["segments_info"], self.thing_category_ids, self.stuff_category_ids
                ),
            }
            self._images.append((annotation, _png_bytes(pred["panoptic_seg"])))

    def compute(self) -> dict[str, float]:
        """Writes the PNGs and json of every image seen on every rank (rank 0 writes); no metrics."""
        images = all_gather_list(self._images)
        if is_main_process():
            png_dir = self.output_dir / PANOPTIC_PNG_DIR
            png_dir.mkdir(parents=True, exist_ok=True)
            for annotation, png in images:
                (png_dir / annotation["file_name"]).write_bytes(png)
            annotations = [annotation for annotation, _ in images]
            write_json(self.output_dir / PANOPTIC_RESULTS_FILE, {"annotations": annotations})
        return {}

    def reset(self) -> None:
        """Forget all images."""
        self._images = []
