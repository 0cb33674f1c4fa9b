"""What ``detzoo predict`` and ``detzoo demo`` share: finding the model, running it over image
files, and writing drawn predictions and a JSON of results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from detzoo.callbacks.prediction_images import draw_predictions
from detzoo.predictor import Predictor, to_rgb_array
from detzoo.structures.panoptic_ids import id2rgb
from detzoo.zoo.api import default_device, get, inference_size
from detzoo.zoo.build import inference_resize, model_num_classes
from detzoo.zoo.checkpoints import load_checkpoint, run_config
from detzoo.zoo.index import class_names, get_config, load_index

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: test-time resize when nothing says otherwise (Detectron2's INPUT.MIN/MAX_SIZE_TEST)
DEFAULT_SIZE = (800, 1333)
_CHECKPOINT_SUFFIXES = (".ckpt", ".safetensors", ".pth", ".pkl", ".pt")


@dataclass
class LoadedModel:
    """A model ready to predict, with what the command line needs around it.

    Attributes:
        size: ``(min_size, max_size)`` test-time resize, or ``None`` for none.
        class_names: label → name, when known.
        source: what was loaded, for messages and the JSON.
    """

    model: torch.nn.Module
    size: tuple[int, int] | None
    class_names: list[str] | None
    source: str


def is_checkpoint_path(value: str) -> bool:
    return Path(value).suffix in _CHECKPOINT_SUFFIXES or Path(value).is_file()


def load_model(
    model: str,
    weights: str | None = None,
    score_thresh: float | None = None,
    device: str | None = None,
    size: tuple[int, int] | None = None,
) -> LoadedModel:
    """``model`` is a zoo name (published weights, or ``weights``) or a detzoo/Lightning checkpoint
    that rebuilds its model alone. ``size`` overrides the test-time resize the config gives."""
    device = device or str(default_device())
    if is_checkpoint_path(model):
        if weights is not None:
            raise ValueError("--weights goes with a zoo name in --model, not with a checkpoint")
        net = load_checkpoint(model)
        if score_thresh is not None:
            net.set_test_thresholds(score_thresh=score_thresh)
        config = run_config(model)
        if size is None and config is not None:
            size = inference_resize(config, source=f"the run config of {model}")
        names = _class_names_like(config, getattr(net, "num_classes", None))
        return LoadedModel(net.to(device).eval(), size or DEFAULT_SIZE, names, model)
    net = get(model, weights=weights, score_thresh=score_thresh, device=device)
    return LoadedModel(net, size or inference_size(model), class_names(model), weights or model)


def _class_names_like(config: dict | None, num_classes: int | None) -> list[str] | None:
    """Class names of the zoo entry trained on the same kind of data (the same data module class)
    with as many classes as the checkpoint's model: a checkpoint does not record them."""

    def data_class(config: dict | None) -> str | None:  # "pkg.mod.Class" -> "Class"
        class_path = ((config or {}).get("data") or {}).get("class_path")
        return class_path.rsplit(".", 1)[-1] if class_path else None

    wanted = data_class(config)
    if wanted is None or num_classes is None:
        return None
    for entry in load_index().values():
        entry_config = get_config(entry.name)
        if data_class(entry_config) == wanted and model_num_classes(entry_config) == num_classes:
            return list(entry.classes)
    return None


def find_images(inputs: Sequence[str]) -> list[Path]:
    """Image files among ``inputs``; a directory contributes its image files, sorted."""
    found: list[Path] = []
    for value in inputs:
        path = Path(value)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no image file or directory {path}")
    if not found:
        raise ValueError(f"no images found in {', '.join(inputs)}")
    return found


def prediction_record(
    prediction: dict[str, torch.Tensor], class_names: Sequence[str] | None
) -> list[dict]:
    """JSON-able instances: ``box`` XYXY pixels, ``score``, ``label`` (+ ``class_name``,
    ``mask`` as COCO RLE, ``keypoints`` ``[[x, y, score], ...]`` where present)."""
    instances = []
    masks = prediction.get("masks")
    for i in range(len(prediction["scores"])):
        label = int(prediction["labels"][i])
        record = {
            "box": [round(float(v), 2) for v in prediction["boxes"][i]],
            "score": round(float(prediction["scores"][i]), 5),
            "label": label,
        }
        if class_names is not None and 0 <= label < len(class_names):
            record["class_name"] = class_names[label]
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[i].numpy().astype(np.uint8)))
            record["mask"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        if "keypoints" in prediction:
            record["keypoints"] = [
                [round(float(v), 2) for v in k] for k in prediction["keypoints"][i]
            ]
        instances.append(record)
    return instances


def predict_files(
    loaded: LoadedModel,
    images: Sequence[Path],
    out_dir: Path,
    score_thresh: float,
    batch_size: int = 1,
    progress: bool = True,
) -> Path:
    """Runs the model over ``images``, writes ``<out_dir>/<image stem>.png`` (predictions scoring
    at least ``score_thresh`` drawn) and ``<out_dir>/predictions.json``; returns the JSON path.
    Panoptic models also write ``<image stem>_panoptic.png`` (COCO panoptic format: segment id =
    R + 256 G + 256^2 B) and each image's ``segments_info`` into the JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    min_size, max_size = loaded.size if loaded.size else (None, 0)
    predictor = Predictor(loaded.model, min_size, max_size, batch_size=batch_size)
    records: list[dict] = []
    used_names: set[str] = set()
    with tqdm(total=len(images), desc="predicting", unit="image", disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            paths = images[start : start + batch_size]
            arrays = [to_rgb_array(path) for path in paths]
            for path, array, prediction in zip(paths, arrays, predictor(arrays)):
                image = torch.from_numpy(array).permute(2, 0, 1)
                drawn = draw_predictions(image, prediction, loaded.class_names, score_thresh)
                name = _unique_name(path.stem, used_names)
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(out_dir / f"{name}.png")
                record = {
                    "file": str(path),
                    "height": int(array.shape[0]),
                    "width": int(array.shape[1]),
                    "drawn": f"{name}.png",
                    "instances": prediction_record(prediction, loaded.class_names),
                }
                if "panoptic_seg" in prediction:
                    rgb = id2rgb(prediction["panoptic_seg"].numpy())
                    Image.fromarray(rgb).save(out_dir / f"{name}_panoptic.png")
                    record["panoptic"] = f"{name}_panoptic.png"
                    record["segments_info"] = prediction["segments_info"]
                records.append(record)
            bar.update(len(paths))
    result = {
        "model": loaded.source,
        "test_size": list(loaded.size) if loaded.size else None,
        "score_thresh": score_thresh,
        "class_names": loaded.class_names,
        "images": records,
    }
    json_path = out_dir / "predictions.json"
    json_path.write_text(json.dumps(result, indent=1))
    return json_path


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = stem, 1
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name
