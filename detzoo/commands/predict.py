"""``detzoo predict``: a zoo model or a checkpoint over image files → drawn PNGs + predictions.json.

``detzoo predict`` has two forms, told apart by ``--config``:

- ``detzoo predict --model NAME|CKPT IMAGES... --out DIR``: this command (images in, files out);
- ``detzoo predict --config CONFIG.yaml [...]``: LightningCLI's ``predict`` over a config's data
  module (``trainer.predict``), like ``detzoo fit|validate|test``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

_LIGHTNING_FLAGS = ("--config", "-c", "--print_config")

DESCRIPTION = """\
Run a model over images; write each image with its predictions drawn (<out>/<name>.png) and all
results (<out>/predictions.json: boxes XYXY in pixels, scores, labels, class names).
Images are resized for the model as its config evaluates (e.g. short side 800, long side <= 1333
for COCO models) and predictions are mapped back to each image's own size.

With --config, `detzoo predict` is LightningCLI's predict instead (a config's data module):
  detzoo predict --config CONFIG.yaml [--ckpt_path CKPT] [...]   (see `detzoo predict --config CONFIG.yaml --help`)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detzoo predict",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", help="image files or directories of images")
    parser.add_argument("--out", required=True, help="directory to write into")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (1)")
    return parser


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The options ``predict`` and ``demo`` share."""
    parser.add_argument(
        "--model",
        required=required,
        help="a zoo name (see `detzoo zoo list`) or a checkpoint that rebuilds its model "
        "(a Lightning .ckpt of a detzoo model, a detzoo .safetensors)",
    )
    parser.add_argument(
        "--weights",
        help="with a zoo name: load this file instead of the published weights (a Detectron2 "
        ".pkl/.pth, detzoo .safetensors or Lightning .ckpt)",
    )
    parser.add_argument(
        "--score-thresh", type=float, default=0.5, help="keep and draw detections scoring >= (0.5)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument(
        "--min-size",
        type=int,
        help="test-time short side in pixels (default: what the model's config evaluates at)",
    )
    parser.add_argument(
        "--max-size", type=int, help="test-time long side limit (with --min-size; default 1333)"
    )


def size_override(args: argparse.Namespace) -> tuple[int, int] | None:
    if args.min_size is None:
        if args.max_size is not None:
            raise ValueError("--max-size needs --min-size")
        return None
    return args.min_size, args.max_size or 1333


def wants_lightning(argv: Sequence[str]) -> bool:
    """Whether the arguments are LightningCLI's (a ``--config``)."""
    return any(a in _LIGHTNING_FLAGS or a.startswith("--config=") for a in argv)


def _run(argv: Sequence[str]) -> int:
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exit_:  # usage error or --help, already printed
        return int(exit_.code or 0)
    from detzoo.commands.inference import find_images, load_model, predict_files

    images = find_images(args.images)
    loaded = load_model(
        args.model, args.weights, args.score_thresh, args.device, size_override(args)
    )
    json_path = predict_files(loaded, images, Path(args.out), args.score_thresh, args.batch_size)
    print(f"predictions for {len(images)} images in {json_path.parent} ({json_path.name})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    if wants_lightning(args.predict_args):
        from detzoo.lightning_cli import run_lightning

        return run_lightning("predict", args.predict_args)
    return _run(args.predict_args)


def add_predict(subparsers: argparse._SubParsersAction) -> None:
    # Parsed by _predict: either form's arguments (and --help) pass through untouched.
    parser = subparsers.add_parser(
        "predict",
        help="run a zoo model or checkpoint over images (drawn PNGs + JSON); "
        "with --config: LightningCLI predict",
        add_help=False,
        prefix_chars="\0",
    )
    parser.add_argument("predict_args", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=_predict)
