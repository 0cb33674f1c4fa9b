"""Zoo test fixtures: a tiny zoo index in a temporary folder, an empty weights cache, and a local
HTTP server (127.0.0.1 only; nothing here touches the internet)."""

import pytest

from .helpers import Server, write_tiny_zoo


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty ``$DETZOO_CACHE``."""
    path = tmp_path / "cache"
    monkeypatch.setenv("DETZOO_CACHE", str(path))
    return path


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch, cache):
    """Points ``$DETZOO_ZOO_CONFIGS`` at a zoo of two tiny models (``tiny_faster_rcnn``,
    ``tiny_retinanet``, 3 classes, no published weights); call it with a ``weights`` mapping to
    rewrite the index with published weights."""
    root = tmp_path / "zoo"
    monkeypatch.setenv("DETZOO_ZOO_CONFIGS", str(root))
    write_tiny_zoo(root)
    return lambda weights=None: write_tiny_zoo(root, weights)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()
