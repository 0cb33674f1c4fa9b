"""The ``detzoo`` command: an argparse dispatcher of subcommands.

Each command is one ``_add_<command>(subparsers)`` function that registers its parser and sets
``handler`` (a function of the parsed arguments returning an exit code); adding a command is
adding such a function to :data:`_COMMANDS`. Errors a user can fix (bad arguments, unwritable
paths) are printed as one line, without a traceback, with exit code 1.
"""

import argparse
import pickle
import sys
from collections.abc import Callable, Sequence

from detzoo.commands.demo import add_demo
from detzoo.commands.predict import add_predict
from detzoo.commands.zoo import add_zoo
from detzoo.zoo.index import ZooError

# ValueError also covers checksum and checkpoint-mismatch errors, OSError download errors and
# missing files, UnpicklingError a refused or corrupt .pkl, ZooError an unknown model name.
_USER_ERRORS = (ValueError, OSError, pickle.UnpicklingError, ZooError)


def _data_shapes(args: argparse.Namespace) -> int:
    # Imported here so that ``detzoo --help`` and other commands do not pay for it.
    from detzoo.data.synthetic import write_shapes_dataset

    out_dir = write_shapes_dataset(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed,
        min_size=args.min_size,
        max_size=args.max_size,
        workers=args.workers,
        progress=True,
    )
    print(f"shapes dataset ready in {out_dir}")
    return 0


def _add_data(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare datasets")
    datasets = data.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    shapes = datasets.add_parser(
        "shapes",
        help="write the procedural shapes dataset (COCO, keypoints, panoptic, DensePose)",
    )
    shapes.add_argument("--out", required=True, help="directory to write into")
    shapes.add_argument("--num-train", type=int, default=1000, help="train images (1000)")
    shapes.add_argument("--num-val", type=int, default=200, help="val images (200)")
    shapes.add_argument("--seed", type=int, default=0, help="dataset seed (0)")
    shapes.add_argument("--min-size", type=int, default=320, help="smallest image side, px (320)")
    shapes.add_argument("--max-size", type=int, default=640, help="largest image side, px (640)")
    shapes.add_argument("--workers", type=int, default=2, help="drawing processes (2)")
    shapes.set_defaults(handler=_data_shapes)


def _lightning(args: argparse.Namespace) -> int:
    from detzoo.lightning_cli import run_lightning

    return run_lightning(args.command, args.lightning_args)


def _add_lightning(subparsers: argparse._SubParsersAction) -> None:
    helps = {
        "fit": "train a model from a LightningCLI config (e.g. zoo_configs/shapes/*.yaml)",
        "validate": "evaluate a model on the validation set",
        "test": "evaluate a model on the test set",
    }  # predict: see detzoo.commands.predict (LightningCLI's when given --config)
    for name, help_ in helps.items():
        # Everything after the subcommand (including --help) belongs to LightningCLI.
        parser = subparsers.add_parser(name, help=help_, add_help=False, prefix_chars="\0")
        parser.add_argument("lightning_args", nargs=argparse.REMAINDER)
        parser.set_defaults(handler=_lightning)


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_data,
    _add_lightning,
    add_predict,
    add_zoo,
    add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``detzoo`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="detzoo", description="detzoo: object detection and segmentation model zoo"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``detzoo`` command line.

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, 1 on a user error, 2 on bad usage (argparse's code).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error or the help
        return int(exit_.code or 0)
    try:
        return args.handler(args)
    except _USER_ERRORS as error:
        print(f"detzoo: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
