"""``detzoo demo``: a trained model on freshly drawn ``shapes`` images, predictions drawn.

No image or model has to be fetched: the images are drawn by :mod:`detzoo.data.synthetic`, and the
model is, by default, the newest checkpoint that ``detzoo fit --config
zoo_configs/shapes/faster_rcnn_R18_FPN.yaml`` left under ``./lightning_logs`` (or any
``--model``: a checkpoint, or a zoo name whose published weights are then downloaded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

_SHAPES_RECIPE = "zoo_configs/shapes/faster_rcnn_R18_FPN.yaml"


def newest_checkpoint(root: Path) -> Path | None:
    """The most recently written ``<root>/*/checkpoints/*.ckpt``."""
    found = list(root.glob("*/checkpoints/*.ckpt"))
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _demo(args: argparse.Namespace) -> int:
    from detzoo.commands.inference import find_images, load_model, predict_files
    from detzoo.commands.predict import size_override
    from detzoo.data.synthetic import write_shapes_dataset

    model = args.model
    if model is None:
        checkpoint = newest_checkpoint(Path(args.logs))
        if checkpoint is None:
            raise ValueError(
                f"no trained model to show: no checkpoint under {args.logs}/*/checkpoints. Train "
                f"the shapes recipe first (~15 min on 2 CPU cores): `detzoo fit --config "
                f"{_SHAPES_RECIPE}`, then run `detzoo demo` again; or pass --model <checkpoint or "
                f"zoo name> (a zoo name downloads its published weights)"
            )
        model = str(checkpoint)
        print(f"model: {model}")
    out = Path(args.out)
    shapes = write_shapes_dataset(
        out / "shapes",
        num_train=0,
        num_val=args.num_images,
        seed=args.seed,
        workers=1,
        progress=False,
    )
    images = find_images([str(shapes / "val" / "images")])
    loaded = load_model(model, args.weights, args.score_thresh, args.device, size_override(args))
    json_path = predict_files(loaded, images, out, args.score_thresh)
    print(f"{len(images)} shapes images with predictions drawn in {out} ({json_path.name})")
    return 0


def add_demo(subparsers: argparse._SubParsersAction) -> None:
    from detzoo.commands.predict import add_model_arguments

    demo = subparsers.add_parser(
        "demo",
        help="draw a trained model's predictions on a few freshly generated shapes images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(demo, required=False)
    demo.add_argument("--out", default="demo", help="directory to write into (demo)")
    demo.add_argument("--num-images", type=int, default=4, help="shapes images to draw (4)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the drawn images (1)")
    demo.add_argument(
        "--logs",
        default="lightning_logs",
        help="where to look for the newest checkpoint when --model is not given (lightning_logs)",
    )
    demo.set_defaults(handler=_demo)
