"""Reading Detectron2 ``.pkl`` checkpoints without executing anything they might contain.

A pickle can call any importable function while loading, so a checkpoint from the internet is never
``pickle.load``-ed as is. Detectron2's model-zoo files hold ``{"model": {name: ndarray}, ...}``:
this unpickler admits exactly what such a file needs — numpy arrays, dtypes and scalars, and plain
containers — and refuses any other global before it is imported or called.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

# (module, name) pairs a numpy-array pickle refers to. numpy 1.x wrote "numpy.core.*", numpy 2
# writes "numpy._core.*"; both resolve to the same objects here.
_NUMPY_GLOBALS = {
    ("multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("multiarray", "scalar"): None,  # filled below: numpy's scalar reconstructor
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_NUMPY_GLOBALS[("multiarray", "scalar")] = np.float32(0).__reduce__()[0]


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles store ``bytes`` as ``_codecs.encode(text, "latin1")``; nothing else passes."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_PLAIN_GLOBALS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("__builtin__", "set"): set,  # Python 2 pickles (old Detectron/caffe2 files)
}


class UnsafePickleError(pickle.UnpicklingError):
    """The checkpoint refers to something other than arrays and plain containers."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            key = ("multiarray", name)
        elif module == "numpy":
            key = ("numpy", name)
        else:
            key = (module, name)
        if key in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[key]
        if key in _PLAIN_GLOBALS:
            return _PLAIN_GLOBALS[key]
        raise UnsafePickleError(
            f"{self._source} refers to {module}.{name}, which a weights file has no reason to hold; "
            f"refusing to load it (only numpy arrays and plain containers are allowed). If you trust "
            f"the file, convert it to safetensors or a state-dict .pth yourself."
        )


def load_arrays_pickle(path: str | Path) -> Any:
    """Loads a pickle of numpy arrays and plain containers (a Detectron2 ``.pkl``)."""
    path = Path(path)
    with path.open("rb") as f:
        try:
            return _ArraysOnlyUnpickler(f, str(path)).load()
        except UnsafePickleError:
            raise
        except Exception as err:  # truncated/corrupt files raise many different errors
            raise pickle.UnpicklingError(f"{path} is not a readable pickle: {err}") from err
