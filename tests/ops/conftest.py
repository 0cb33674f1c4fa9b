import pytest
import torch


@pytest.fixture
def dynamic_output_shapes():
    """Lets torch.compile capture ops whose output size depends on data (NMS) in one graph.

    (``monkeypatch.setattr`` on ``torch._dynamo.config`` deletes the option on undo, breaking later
    tests; the config's own ``patch`` restores it.)
    """
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        yield
