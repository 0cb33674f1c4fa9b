"""Loads the compiled kernels ``detzoo._C`` once and decides which path every op takes.

With the extension, ops run through ``torch.ops.detzoo.*`` (visible to torch.compile, torch.export
and TorchScript). Without it, each op falls back to torchvision or a plain-PyTorch version and
detzoo warns once, with the command that builds the extension. ``DETZOO_REQUIRE_EXT=1`` turns
the fallback into an error (CI sets it so the fast path is what is tested).
"""

from __future__ import annotations

import importlib
import os
import warnings

import torch  # noqa: F401  (loads libc10/libtorch, which detzoo._C links against)

BUILD_COMMAND = "pip install --no-build-isolation -e .  (from the detzoo source checkout)"


class SlowPathWarning(UserWarning):
    """detzoo runs without its compiled kernels (slower, same results)."""


def _load() -> tuple[bool, str]:
    try:
        importlib.import_module("detzoo._C")
    except ImportError as err:  # not built, or built against another torch
        return False, str(err)
    return True, ""


HAS_EXT, _LOAD_ERROR = _load()

if not HAS_EXT:
    if os.environ.get("DETZOO_REQUIRE_EXT", "0") == "1":
        raise ImportError(
            f"DETZOO_REQUIRE_EXT=1 but the compiled kernels detzoo._C could not be loaded "
            f"({_LOAD_ERROR}). Build them with: {BUILD_COMMAND}"
        )
    warnings.warn(
        f"detzoo._C is not available ({_LOAD_ERROR}); detzoo uses torchvision / plain-PyTorch "
        f"versions of its ROI and NMS ops, which are slower. Build the kernels with: {BUILD_COMMAND}",
        SlowPathWarning,
        stacklevel=2,
    )
