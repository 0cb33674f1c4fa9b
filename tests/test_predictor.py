"""``detzoo.Predictor``: any image kind in, test-time resize as Detectron2's ResizeShortestEdge,
batching, predictions at the original size."""

import numpy as np
import pytest
import torch
from PIL import Image

import detzoo
from detzoo.data.transforms import shortest_edge_size
from detzoo.predictor import to_cpu, to_rgb_array


class _Recorder(torch.nn.Module):
    """Stands in for a model: records each batch, returns one box covering each output size."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.batches: list[list[tuple]] = []
        self.pixels: list[torch.Tensor] = []

    def forward(self, images, output_sizes):
        self.batches.append([(tuple(im.shape), im.dtype) for im in images])
        self.pixels += list(images)
        return [
            {
                "boxes": torch.tensor([[0.0, 0.0, float(w), float(h)]]),
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([1]),
            }
            for h, w in output_sizes
        ]


def test_resizes_short_side_and_answers_at_original_size():
    model = _Recorder()
    predictor = detzoo.Predictor(model, min_size=64, max_size=100)
    out = predictor(np.zeros((120, 300, 3), np.uint8))
    assert model.batches == [[((3, *shortest_edge_size(120, 300, 64, 100)), torch.uint8)]]
    assert model.batches[0][0][0] == (3, 40, 100)  # long side capped at 100
    assert out["boxes"].tolist() == [[0.0, 0.0, 300.0, 120.0]]
    assert not model.training


def test_every_image_kind_and_batching(tmp_path):
    rgb = np.zeros((50, 70, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = tmp_path / "red.png"
    Image.fromarray(rgb).save(path)
    model = _Recorder()
    predictor = detzoo.Predictor(model, min_size=None, batch_size=2)
    inputs = [str(path), path, Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1), rgb]
    outputs = predictor(inputs)
    assert len(outputs) == 5 and [len(b) for b in model.batches] == [2, 2, 1]
    for pixels in model.pixels:  # every kind arrives as the same RGB uint8 [3, H, W] tensor
        assert pixels.shape == (3, 50, 70) and pixels.dtype == torch.uint8
        assert pixels[0].eq(200).all() and pixels[1:].eq(0).all()


def test_grey_arrays_and_bad_inputs():
    assert to_rgb_array(np.full((4, 5), 7, np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        to_rgb_array(torch.zeros(1, 4, 5))
    with pytest.raises(FileNotFoundError, match="/nonexistent/image.jpg does not exist"):
        to_rgb_array("/nonexistent/image.jpg")
    with pytest.raises(ValueError, match="batch_size"):
        detzoo.Predictor(_Recorder(), batch_size=0)


def test_to_cpu_reaches_nested_outputs(monkeypatch):
    """DensePose charts (a dict) and panoptic segments (a list of dicts) come back whole, every
    tensor in them moved (``.cpu()`` called on it)."""
    moved = []
    original = torch.Tensor.cpu

    def recording_cpu(tensor, *args, **kwargs):
        moved.append(tensor)
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", recording_cpu)
    charts = torch.ones(1, 25, 4, 4)
    first = torch.zeros(1)
    pred = {
        "boxes": torch.zeros(1, 4),
        "densepose": {"u": charts},
        "segments_info": [{"id": 1, "score": 0.5}],
        "pair": (first, 3),
    }
    out = to_cpu(pred)
    assert any(t is charts for t in moved) and any(t is first for t in moved)
    assert out["densepose"]["u"].shape == (1, 25, 4, 4)
    assert out["segments_info"] == [{"id": 1, "score": 0.5}]
    assert isinstance(out["pair"], tuple) and out["pair"][1] == 3
