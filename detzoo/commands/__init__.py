"""Subcommands of the ``detzoo`` command line (see :mod:`detzoo.cli`), one module each.

Each module has an ``add_<command>(subparsers)`` registering its parser; heavy imports (torch,
Lightning, models) happen inside the handlers so that ``detzoo --help`` and ``detzoo zoo list``
stay fast.
"""
