import math

import pytest
import torch
import torch.nn.functional as F

from detzoo.evaluation import SemSegEvaluator

NAMES = ["sky", "road", "car", "bus", "boat"]  # "bus" only predicted, "boat" never seen


def _batch(as_logits: bool):
    gt1 = torch.tensor([[0, 0, 1, 1], [0, 255, 2, 2]])
    pred1 = torch.tensor([[0, 1, 1, 1], [0, 0, 2, 1]])
    gt2, pred2 = torch.tensor([[2]]), torch.tensor([[3]])
    if as_logits:  # [C, H, W] scores whose argmax is the label
        pred1 = F.one_hot(pred1, 5).permute(2, 0, 1).float() * 3.0 - 1.0
    return [{"sem_seg": pred1}, {"sem_seg": pred2}], [{"sem_seg": gt1}, {"sem_seg": gt2}]


@pytest.mark.parametrize("as_logits", [False, True])
def test_hand_computed(as_logits):
    evaluator = SemSegEvaluator(5, class_names=NAMES)
    evaluator.update(*_batch(as_logits))
    r = evaluator.compute()
    # per class (tp, gt pixels, predicted pixels): sky (2, 3, 2), road (2, 2, 4), car (1, 3, 1);
    # the ignored pixel (predicted sky) counts nowhere
    assert r["sem_seg/IoU-sky"] == pytest.approx(2 / 3)
    assert r["sem_seg/IoU-road"] == pytest.approx(2 / 4)
    assert r["sem_seg/IoU-car"] == pytest.approx(1 / 3)
    assert math.isnan(r["sem_seg/IoU-bus"]) and math.isnan(r["sem_seg/IoU-boat"])
    assert r["sem_seg/ACC-road"] == pytest.approx(1.0)
    assert r["sem_seg/mIoU"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 3) / 3)
    assert r["sem_seg/fwIoU"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 3 * 1 / 3) / 8)
    assert r["sem_seg/mACC"] == pytest.approx((2 / 3 + 1 + 1 / 3) / 3)
    assert r["sem_seg/pACC"] == pytest.approx(5 / 8)


def test_reset_and_default_names():
    evaluator = SemSegEvaluator(5)
    evaluator.update(*_batch(False))
    assert "sem_seg/IoU-4" in evaluator.compute()
    evaluator.reset()
    evaluator.update([{"sem_seg": torch.tensor([[1]])}], [{"sem_seg": torch.tensor([[1]])}])
    assert evaluator.compute()["sem_seg/mIoU"] == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="class_names"):
        SemSegEvaluator(2, class_names=["a"])
    evaluator = SemSegEvaluator(3)
    gt = {"sem_seg": torch.zeros(2, 2, dtype=torch.int64)}
    with pytest.raises(ValueError, match="channels"):
        evaluator.update([{"sem_seg": torch.zeros(4, 2, 2)}], [gt])
    with pytest.raises(ValueError, match="differ in size"):
        evaluator.update([{"sem_seg": torch.zeros(3, 3, dtype=torch.int64)}], [gt])
    with pytest.raises(ValueError, match="target labels"):
        evaluator.update(
            [{"sem_seg": torch.zeros(2, 2, dtype=torch.int64)}],
            [{"sem_seg": torch.full((2, 2), 7)}],
        )
    with pytest.raises(RuntimeError, match="no labelled"):
        evaluator.compute()
