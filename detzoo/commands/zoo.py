"""``detzoo zoo list`` and ``detzoo zoo download``."""

from __future__ import annotations

import argparse


def _list(args: argparse.Namespace) -> int:
    from detzoo.zoo.index import TASKS, load_index
    from detzoo.zoo.table import markdown_table, text_table

    if args.task is not None and args.task not in TASKS:
        raise ValueError(f"unknown task {args.task!r}; choose from {', '.join(TASKS)}")
    entries = [e for e in load_index().values() if args.task is None or e.task == args.task]
    print(markdown_table(entries) if args.markdown else text_table(entries))
    return 0


def _download(args: argparse.Namespace) -> int:
    from detzoo.zoo.api import weights_path
    from detzoo.zoo.index import entry

    for name in args.names:
        entry(name)  # an unknown name fails before any download starts
    for name in args.names:
        print(f"{name}: {weights_path(name, progress=not args.quiet)}")
    return 0


def add_zoo(subparsers: argparse._SubParsersAction) -> None:
    zoo = subparsers.add_parser("zoo", help="list zoo models, download their weights")
    commands = zoo.add_subparsers(dest="zoo_command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "list", help="the zoo as a table: name, task, metrics, weights format, cached or not"
    )
    listing.add_argument("--task", help="only models of this task (e.g. detection)")
    listing.add_argument(
        "--markdown", action="store_true", help="print the README's Markdown table instead"
    )
    listing.set_defaults(handler=_list)

    download = commands.add_parser(
        "download",
        help="download (and verify) models' published weights into the cache "
        "($DETZOO_CACHE, default ~/.cache/detzoo)",
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="zoo model names")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(handler=_download)
