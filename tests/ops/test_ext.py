"""The extension loader: fast path when built, one warning on the slow path, error when required."""

import os
import subprocess
import sys
import textwrap

import torch

from detzoo.ops import _ext

# Runs in a fresh interpreter with detzoo._C made unimportable (sys.modules entry None).
_WITHOUT_EXT = textwrap.dedent(
    """
    import sys, warnings
    sys.modules["detzoo._C"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import detzoo.ops._ext as ext
    slow = [w for w in caught if w.category.__name__ == "SlowPathWarning"]
    print(ext.HAS_EXT, len(slow), "pip install --no-build-isolation" in str(slow[0].message))
    """
)


def _run(env_extra: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXT], env=env, capture_output=True, text=True, timeout=120
    )


def test_extension_is_loaded_and_registers_every_op():
    assert _ext.HAS_EXT
    for name in (
        "roi_align",
        "_roi_align_backward",
        "roi_align_rotated",
        "_roi_align_rotated_backward",
        "nms",
        "batched_nms",
        "nms_rotated",
        "box_iou_rotated",
        "paste_masks",
    ):
        assert hasattr(torch.ops.detzoo, name), name


def test_missing_extension_warns_with_build_command():
    proc = _run({"DETZOO_REQUIRE_EXT": "0"})
    assert proc.returncode == 0, proc.stderr
    has_ext, n_warnings, names_command = proc.stdout.split()
    assert has_ext == "False"
    assert int(n_warnings) == 1  # once, however many ops are used
    assert names_command == "True"


def test_missing_extension_is_an_error_when_required():
    proc = _run({"DETZOO_REQUIRE_EXT": "1"})
    assert proc.returncode != 0
    assert "DETZOO_REQUIRE_EXT=1" in proc.stderr
    assert "pip install --no-build-isolation" in proc.stderr
