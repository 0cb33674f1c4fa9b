"""Writing a seeded ``shapes`` dataset to disk, one split at a time, with a process pool.

Layout written under ``out_dir``::

    shapes.json                  {"version", "seed", "num_train", "num_val", "min_size",
                                  "max_size", "generator"}; written last, so its presence means
                                  the dataset is complete
    <split>/images/000000.jpg    RGB JPEG (quality 95)
    <split>/instances.json       COCO instances (things, polygons/RLE, crowds)
    <split>/person_keypoints.json  COCO keypoints (figure annotations only)
    <split>/panoptic.json        COCO panoptic (things and stuff)
    <split>/panoptic/000000.png  panoptic ids, id = R + 256 G + 256^2 B, 0 = void
    <split>/densepose.json       DensePose-COCO (figure annotations with dp_* fields)

Each image's random generator is seeded from ``(seed, split, index)`` alone, so the output does
not depend on the number of workers.
"""

import json
import multiprocessing
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .annotations import IDS_PER_IMAGE, scene_records
from .categories import THING_CATEGORIES, figure_category, panoptic_categories
from .scene import compose_scene

FORMAT_VERSION = 2  # 2: keypoints in COCO pixel-index convention
SPLITS: tuple[str, ...] = ("train", "val")
# Keeps every panoptic segment id (image_id * 100 + k) below 2^24, what a PNG's RGB can hold.
MAX_IMAGES_PER_SPLIT = 2**24 // IDS_PER_IMAGE - 1
_JPEG_QUALITY = 95
_PNG_COMPRESSION = 1


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _write_image(
    split_dir: Path, seed: int, split: str, min_size: int, max_size: int, index: int
) -> dict:
    """Compose image ``index`` of ``split``, write its JPEG and panoptic PNG, return its records."""
    rng = _image_rng(seed, split, index)
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    scene = compose_scene(rng, height, width)
    records = scene_records(rng, scene, index)
    panoptic_png = records.pop("panoptic_png")
    jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
    image_path = split_dir / "images" / records["image"]["file_name"]
    if not cv2.imwrite(str(image_path), scene.image[..., ::-1], jpeg_params):
        raise OSError(f"could not write {image_path}")
    png_path = split_dir / "panoptic" / records["panoptic"]["file_name"]
    if not cv2.imwrite(
        str(png_path), panoptic_png[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, _PNG_COMPRESSION]
    ):
        raise OSError(f"could not write {png_path}")
    return records


def _counted(images: Iterator[dict], bar: tqdm) -> Iterator[dict]:
    for records in images:
        bar.update(1)
        yield records


def _start_worker() -> None:
    # OpenCV's own thread pool does not survive fork(); the pool's processes are the parallelism.
    cv2.setNumThreads(0)


def _dump(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, separators=(",", ":")))


def _write_split(
    out_dir: Path,
    split: str,
    seed: int,
    min_size: int,
    max_size: int,
    images: Iterator[dict],
) -> None:
    """Collect the records of one split (in index order) into its four json files."""
    split_dir = out_dir / split
    collected = {"images": [], "instances": [], "keypoints": [], "densepose": [], "panoptic": []}
    for records in images:
        collected["images"].append(records["image"])
        for key in ("instances", "keypoints", "densepose"):
            collected[key].extend(records[key])
        collected["panoptic"].append(records["panoptic"])
    info = {
        "description": f"detzoo synthetic shapes, {split} split",
        "version": str(FORMAT_VERSION),
        "seed": seed,
        "min_size": min_size,
        "max_size": max_size,
    }
    things = [dict(c) for c in THING_CATEGORIES]
    figures = [figure_category()]
    base = {"info": info, "images": collected["images"]}
    _dump(
        split_dir / "instances.json",
        {**base, "annotations": collected["instances"], "categories": things},
    )
    _dump(
        split_dir / "person_keypoints.json",
        {**base, "annotations": collected["keypoints"], "categories": figures},
    )
    _dump(
        split_dir / "densepose.json",
        {**base, "annotations": collected["densepose"], "categories": figures},
    )
    _dump(
        split_dir / "panoptic.json",
        {**base, "annotations": collected["panoptic"], "categories": panoptic_categories()},
    )


def _validate(num_train: int, num_val: int, min_size: int, max_size: int, workers: int) -> None:
    for name, value in (("num_train", num_train), ("num_val", num_val)):
        if not 0 <= value <= MAX_IMAGES_PER_SPLIT:
            raise ValueError(f"{name} must be in [0, {MAX_IMAGES_PER_SPLIT}], got {value}")
    if not 32 <= min_size <= max_size:
        raise ValueError(
            f"need 32 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}"
        )
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")


def write_shapes_dataset(
    out_dir: str | Path,
    num_train: int = 1000,
    num_val: int = 200,
    seed: int = 0,
    min_size: int = 320,
    max_size: int = 640,
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write the procedural ``shapes`` dataset (COCO, keypoints, panoptic, DensePose) to disk.

    Args:
        out_dir: directory to write into (created if missing).
        num_train, num_val: number of images in the ``train`` and ``val`` splits.
        seed: the dataset seed; the same arguments always give byte-identical files.
        min_size, max_size: range of each image side, in pixels (height and width are drawn
            independently, so images are portrait, landscape or square).
        workers: processes drawing images (1 draws in this process).
        progress: show a tqdm progress bar over all images.

    Returns:
        ``out_dir`` as a Path. If ``out_dir/shapes.json`` already records the same request,
        nothing is regenerated.

    Raises:
        ValueError: on counts out of range, sizes below 32 px or ``min_size > max_size``, or
            ``workers < 1``.
    """
    _validate(num_train, num_val, min_size, max_size, workers)
    out_dir = Path(out_dir)
    manifest = {
        "version": FORMAT_VERSION,
        "seed": seed,
        "num_train": num_train,
        "num_val": num_val,
        "min_size": min_size,
        "max_size": max_size,
        "generator": "detzoo.data.synthetic",
    }
    manifest_path = out_dir / "shapes.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return out_dir
    manifest_path.unlink(missing_ok=True)
    counts = {"train": num_train, "val": num_val}
    bar = tqdm(total=num_train + num_val, desc="shapes", unit="img", disable=not progress)
    # fork starts workers without re-importing detzoo; spawn where fork does not exist.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = None
    if workers > 1:
        pool = multiprocessing.get_context(method).Pool(workers, initializer=_start_worker)
    try:
        for split in SPLITS:
            split_dir = out_dir / split
            (split_dir / "images").mkdir(parents=True, exist_ok=True)
            (split_dir / "panoptic").mkdir(parents=True, exist_ok=True)
            draw = partial(_write_image, split_dir, seed, split, min_size, max_size)
            indices = range(counts[split])
            images = pool.imap(draw, indices, chunksize=4) if pool else map(draw, indices)
            _write_split(out_dir, split, seed, min_size, max_size, _counted(images, bar))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    _dump(manifest_path, manifest)
    return out_dir
