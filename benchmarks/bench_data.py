"""Throughput of the training data pipeline: images/s through DetectionDataModule's train loader
(decode, masks, Detectron2's default train transforms, collate) over a generated shapes dataset;
and the cost of decoding an image completely (``detzoo.data.load_image``: whole-stream check,
then OpenCV) against a bare ``cv2.imread``, timed interleaved on the same files.

    python benchmarks/bench_data.py [--num-images 100] [--workers 2] [--epochs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import Case, format_table, time_interleaved  # noqa: E402

from detzoo.data import CocoDetection, DetectionDataModule, build_train_transforms, load_image
from detzoo.data.synthetic import write_shapes_dataset


def decode_case(dataset: CocoDetection) -> Case:
    """load_image (checked, complete decode) against cv2.imread + BGR->RGB on every file."""
    records = dataset.records

    def ours() -> None:
        for r in records:
            load_image(r["file_name"], r["height"], r["width"], r["image_id"])

    def reference() -> None:
        for r in records:
            cv2.cvtColor(cv2.imread(r["file_name"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    return Case(
        f"decode {len(records)} shapes JPEGs", ours, reference, 0.95, "cv2.imread, unchecked"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument(
        "--epochs", type=int, default=2, help="timed passes (after a warm-up batch)"
    )
    parser.add_argument("--lsj-size", type=int, default=None, help="large-scale jitter size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_shapes_dataset(tmp, num_train=args.num_images, num_val=1, progress=False)
        dataset = CocoDetection(
            root / "train" / "images",
            root / "train" / "instances.json",
            transforms=build_train_transforms(lsj_size=args.lsj_size),
            filter_empty=True,
        )
        module = DetectionDataModule(dataset, batch_size=args.batch_size, num_workers=args.workers)
        loader = module.train_dataloader()
        next(iter(loader))  # start the (persistent) workers outside the timing
        num_images, start = 0, time.perf_counter()
        for epoch in range(args.epochs):
            loader.batch_sampler.set_epoch(epoch)
            num_images += sum(len(images) for images, _ in loader)
        elapsed = time.perf_counter() - start
        decode = time_interleaved(decode_case(dataset), repeats=5)
    transforms = (
        f"LSJ {args.lsj_size}" if args.lsj_size else "ResizeShortestEdge(640-800, 1333) + flip"
    )
    print(
        f"{num_images / elapsed:.1f} images/s  ({num_images} images in {elapsed:.2f} s; "
        f"{args.workers} workers, batch {args.batch_size}, masks on, {transforms}; "
        f"shapes images 320-640 px)"
    )
    print(format_table([decode]))


if __name__ == "__main__":
    main()
