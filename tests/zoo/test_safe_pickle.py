import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from detzoo.zoo.safe_pickle import UnsafePickleError, load_arrays_pickle


class _Payload:
    """Unpickling this would create a file: proof of code execution."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_arrays_and_containers_round_trip(tmp_path):
    data = {
        "model": OrderedDict(
            [
                ("a.weight", np.arange(6, dtype=np.float32).reshape(2, 3)),
                ("b.bias", np.zeros(2, np.float64)),
            ]
        ),
        "__author__": "Detectron2 Model Zoo",
        "matching_heuristics": True,
        "scalar": np.float32(1.5),
        "nested": [(1, 2), {3}],
    }
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    loaded = load_arrays_pickle(path)
    np.testing.assert_array_equal(loaded["model"]["a.weight"], data["model"]["a.weight"])
    assert loaded["model"]["b.bias"].dtype == np.float64
    assert loaded["scalar"] == np.float32(1.5)
    assert loaded["nested"] == [(1, 2), {3}]


def test_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(1)}, "x": _Payload(str(marker))}))
    with pytest.raises(UnsafePickleError, match="builtins.open|io.open"):
        load_arrays_pickle(path)
    assert not marker.exists()


def test_os_system_payload_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil2.pkl"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UnsafePickleError, match="system"):
        load_arrays_pickle(path)
    assert not marker.exists()


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(100)}})[:50])
    with pytest.raises(pickle.UnpicklingError, match="cut.pkl"):
        load_arrays_pickle(path)
