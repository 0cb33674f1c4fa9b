"""Throughput of the training data pipeline: images/s through DetectionDataModule's train loader
(decode, masks, Detectron2's default train transforms, collate) over a generated shapes dataset.

    python benchmarks/bench_data.py [--num-images 100] [--workers 2] [--epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from detzoo.data import CocoDetection, DetectionDataModule, build_train_transforms
from detzoo.data.synthetic import write_shapes_dataset


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
            skip_crowd_only=True,
        )
        module = DetectionDataModule(dataset, batch_size=args.batch_size, num_workers=args.workers)
        loader = module.train_dataloader()
        next(iter(loader))  # start the (persistent) workers outside the timing
        num_images, start = 0, time.perf_counter()
        for epoch in range(args.epochs):
            loader.batch_sampler.set_epoch(epoch)
            num_images += sum(len(images) for images, _ in loader)
        elapsed = time.perf_counter() - start
    transforms = (
        f"LSJ {args.lsj_size}" if args.lsj_size else "ResizeShortestEdge(640-800, 1333) + flip"
    )
    print(
        f"{num_images / elapsed:.1f} images/s  ({num_images} images in {elapsed:.2f} s; "
        f"{args.workers} workers, batch {args.batch_size}, masks on, {transforms}; "
        f"shapes images 320-640 px)"
    )


if __name__ == "__main__":
    main()
