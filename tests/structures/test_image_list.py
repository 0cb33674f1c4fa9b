import pytest
import torch

from detzoo.structures.image_list import ImageList


def test_pads_bottom_right_to_divisibility():
    a = torch.ones(3, 5, 7)
    b = 2 * torch.ones(3, 8, 4)
    batch = ImageList.from_tensors([a, b], size_divisibility=4, pad_value=-1.0)
    assert batch.tensor.shape == (2, 3, 8, 8)
    assert batch.image_sizes == [(5, 7), (8, 4)]
    assert (batch.tensor[0, :, :5, :7] == 1).all() and (batch.tensor[0, :, 5:, :] == -1).all()
    assert (batch.tensor[0, :, :, 7:] == -1).all()
    assert (batch.tensor[1, :, :, :4] == 2).all() and (batch.tensor[1, :, :, 4:] == -1).all()


def test_no_divisibility_keeps_max_size():
    batch = ImageList.from_tensors([torch.zeros(3, 5, 7), torch.zeros(3, 6, 3)])
    assert batch.tensor.shape == (2, 3, 6, 7)


def test_errors():
    with pytest.raises(ValueError, match="at least one"):
        ImageList.from_tensors([])
    with pytest.raises(ValueError, match="leading dimensions"):
        ImageList.from_tensors([torch.zeros(3, 4, 4), torch.zeros(1, 4, 4)])
