"""Test-wide settings: no network, offline W&B, GPU tests skipped without a GPU, golden fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm would otherwise retry the hub for ~50 s
os.environ.setdefault("WANDB_MODE", "offline")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from .golden_utils import skip_without_golden  # noqa: E402

# Under pytest-xdist (README's test command runs `-n auto`) each worker gets its share of the
# cores, so that workers do not oversubscribe them with torch's intra-op threads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    torch.set_num_threads(max(1, torch.get_num_threads() // _WORKERS))

GOLDEN_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "golden"


def pytest_collection_modifyitems(config, items):
    # Slow (end-to-end) tests first: under pytest-xdist they then run beside the many short tests
    # instead of after them on one worker while the other idles. Stable: order otherwise kept.
    items.sort(key=lambda item: "slow" not in item.keywords)
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """``../shared/golden`` beside the repository; tests using it skip when it is absent (fail
    under ``DETZOO_REQUIRE_GOLDEN=1``)."""
    if not GOLDEN_DIR.is_dir():
        skip_without_golden(
            f"Detectron2 golden fixtures not found at {GOLDEN_DIR} (../shared is not beside the repo)"
        )
    return GOLDEN_DIR
