"""Pascal VOC reader (``VOCdevkit/VOC20XX``: ``Annotations/*.xml``, ``JPEGImages/``,
``ImageSets/Main/<split>.txt``). Not COCO-format, so parsed here with :mod:`xml.etree`."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from .annotation_checks import warn_degenerate
from .dataset import DetectionDataset, Transform

VOC_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def _text(node: ET.Element, path: str, source: str) -> str:
    found = node.find(path)
    if found is None or found.text is None:
        raise ValueError(f"{source}: missing <{path}>")
    return found.text.strip()


class VocDetection(DetectionDataset):
    """Pascal VOC boxes. ``difficult`` objects are kept with ``iscrowd`` = 1 (ignored in
    training and evaluation, like COCO crowds). Boxes follow Detectron2: ``xmin - 1``,
    ``ymin - 1``, ``xmax``, ``ymax`` (VOC's 1-based inclusive pixels -> continuous frame);
    ``area`` is the box area. ``image_id`` is the position in the split file.

    Args:
        root: a ``VOC20XX`` directory.
        split: ``ImageSets/Main/<split>.txt`` names the images (``train``, ``val``, ``test``...).
        class_names: VOC's 20 classes unless given.
        transforms: as in :class:`~detzoo.data.CocoDetection`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        *,
        class_names: Sequence[str] = VOC_CLASS_NAMES,
        transforms: Transform | None = None,
    ) -> None:
        root = Path(root)
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"VOC split file {split_file} does not exist")
        id_map = {name: label for label, name in enumerate(class_names)}
        self._num_degenerate = 0
        records = [
            self._record(root, index, stem, id_map)
            for index, stem in enumerate(split_file.read_text().split())
        ]
        warn_degenerate(self._num_degenerate, str(split_file))
        super().__init__(records, list(class_names), {i: i for i in range(len(id_map))}, transforms)

    def _record(self, root: Path, index: int, stem: str, id_map: dict[str, int]) -> dict:
        xml_path = root / "Annotations" / f"{stem}.xml"
        source = str(xml_path)
        if not xml_path.is_file():
            raise FileNotFoundError(f"VOC annotation {xml_path} does not exist")
        try:
            tree = ET.parse(xml_path).getroot()
        except ET.ParseError as error:
            raise ValueError(f"{source} is not valid XML: {error}") from error
        annotations = []
        for number, obj in enumerate(tree.findall("object")):
            name = _text(obj, "name", source)
            if name not in id_map:
                raise ValueError(f"{source}: object {number} has unknown class {name!r}")
            x0, y0, x1, y1 = (
                float(_text(obj, f"bndbox/{k}", source)) for k in ("xmin", "ymin", "xmax", "ymax")
            )
            box = [x0 - 1.0, y0 - 1.0, x1, y1]
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"{source}: object {number} ({name}) has an inverted box {box}")
            if box[2] == box[0] or box[3] == box[1]:
                self._num_degenerate += 1
                continue
            difficult = obj.find("difficult")
            annotations.append(
                {
                    "id": number,
                    "bbox": box,
                    "label": id_map[name],
                    "iscrowd": int(difficult is not None and difficult.text.strip() == "1"),
                    "area": (box[2] - box[0]) * (box[3] - box[1]),
                }
            )
        return {
            "image_id": index,
            "file_name": os.path.join(root, "JPEGImages", f"{stem}.jpg"),
            "height": int(_text(tree, "size/height", source)),
            "width": int(_text(tree, "size/width", source)),
            "annotations": annotations,
        }
