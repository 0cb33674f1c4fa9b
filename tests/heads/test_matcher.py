import pytest
import torch

from detzoo.heads.matcher import Matcher


def test_labels_by_threshold_interval():
    m = Matcher([0.3, 0.7], [0, -1, 1])
    iou = torch.tensor([[0.1, 0.3, 0.5, 0.7, 0.9], [0.2, 0.0, 0.6, 0.2, 0.1]])
    matches, labels = m(iou)
    assert matches.tolist() == [1, 0, 1, 0, 0]
    assert labels.tolist() == [0, -1, -1, 1, 1]
    assert labels.dtype == torch.int8


def test_low_quality_matches_include_ties():
    m = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    # gt 1's best IoU is 0.4, shared by predictions 1 and 3 -> both become positive
    iou = torch.tensor([[0.9, 0.1, 0.0, 0.2], [0.0, 0.4, 0.2, 0.4]])
    _, labels = m(iou)
    assert labels.tolist() == [1, 1, 0, 1]
    _, labels = Matcher([0.3, 0.7], [0, -1, 1])(iou)
    assert labels.tolist() == [1, -1, 0, -1]


def test_no_ground_truth_gives_first_label():
    m = Matcher([0.5], [0, 1])
    matches, labels = m(torch.zeros(0, 4))
    assert matches.tolist() == [0, 0, 0, 0]
    assert labels.tolist() == [0, 0, 0, 0]


def test_bad_configuration():
    with pytest.raises(ValueError, match="increasing"):
        Matcher([0.7, 0.3], [0, -1, 1])
    with pytest.raises(ValueError, match="labels"):
        Matcher([0.5], [0, -1, 1])
