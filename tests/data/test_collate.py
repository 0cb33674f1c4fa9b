import torch

from detzoo.data import collate_detection


def test_collate_keeps_lists_in_order_without_stacking():
    batch = [
        (torch.zeros(3, 4, 5, dtype=torch.uint8), {"image_id": 1}),
        (torch.zeros(3, 6, 2, dtype=torch.uint8), {"image_id": 2}),
    ]
    images, targets = collate_detection(batch)
    assert isinstance(images, list) and [i.shape[1:] for i in images] == [(4, 5), (6, 2)]
    assert [t["image_id"] for t in targets] == [1, 2]
