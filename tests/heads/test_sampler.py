import torch

from detzoo.heads.sampler import subsample_labels


def test_fractions_and_membership():
    torch.manual_seed(0)
    labels = torch.tensor([1] * 30 + [0] * 100 + [-1] * 20)
    pos, neg = subsample_labels(labels, num_samples=64, positive_fraction=0.25, bg_label=0)
    assert len(pos) == 16 and len(neg) == 48
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 16 and len(set(neg.tolist())) == 48


def test_negatives_fill_when_positives_are_few():
    labels = torch.tensor([3, 0, 0, 0, 0, 0, -1, 5])  # bg_label 0; 3 and 5 are positives
    pos, neg = subsample_labels(labels, num_samples=6, positive_fraction=0.5, bg_label=0)
    assert sorted(pos.tolist()) == [0, 7]
    assert len(neg) == 4 and (labels[neg] == 0).all()


def test_foreground_classes_with_background_label_k():
    labels = torch.tensor([0, 1, 2, 3, 3, 3])  # Fast R-CNN style: background is class K = 3
    pos, neg = subsample_labels(labels, num_samples=4, positive_fraction=0.25, bg_label=3)
    assert len(pos) == 1 and labels[pos].item() in (0, 1, 2)
    assert len(neg) == 3 and (labels[neg] == 3).all()
