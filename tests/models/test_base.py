import pytest
import torch
from torch import nn

from detzoo.config import build, spec_of
from detzoo.models.base import DetectionModel
from detzoo.models.solver import Solver


class _Toy(DetectionModel):
    """Predicts one box per image at a fixed place; its loss is a parameter chosen by the test."""

    def __init__(self, loss_value: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.value = nn.Parameter(torch.tensor(loss_value))
        self.seen = None

    def compute_losses(self, images, targets):
        self.seen = (images, targets)
        return {"a": self.value * 1.0, "b": self.value * 2.0}

    def detect(self, images):
        return [
            {
                "boxes": torch.tensor([[10.0, 10.0, 30.0, 20.0], [50.0, 50.0, 50.0, 60.0]]),
                "scores": torch.tensor([0.9, 0.8]),
                "labels": torch.tensor([1, 2]),
            }
            for _ in images.image_sizes
        ]


def test_preprocess_flips_to_bgr_normalises_and_pads():
    model = _Toy(pixel_mean=(1.0, 2.0, 3.0), pixel_std=(2.0, 2.0, 2.0), size_divisibility=8)
    image = torch.stack(
        [torch.full((5, 6), 10.0), torch.full((5, 6), 20.0), torch.full((5, 6), 30.0)]
    )
    batch = model.preprocess([image.to(torch.uint8), torch.zeros(3, 9, 3)])
    assert batch.tensor.shape == (2, 3, 16, 8)
    assert batch.image_sizes == [(5, 6), (9, 3)]
    # RGB (10, 20, 30) -> BGR (30, 20, 10) -> ((30-1)/2, (20-2)/2, (10-3)/2)
    torch.testing.assert_close(batch.tensor[0, :, 0, 0], torch.tensor([14.5, 9.0, 3.5]))
    assert (batch.tensor[0, :, 5:, :] == 0).all()  # padding after normalisation, as Detectron2
    rgb = _Toy(input_format="RGB", pixel_mean=(0.0, 0.0, 0.0))
    torch.testing.assert_close(
        rgb.preprocess([image]).tensor[0, :, 0, 0], torch.tensor([10.0, 20.0, 30.0])
    )


def test_bad_images_are_clear_errors():
    model = _Toy()
    with pytest.raises(ValueError, match=r"image 1 has shape \(1, 4, 4\)"):
        model.preprocess([torch.zeros(3, 4, 4), torch.zeros(1, 4, 4)])
    with pytest.raises(ValueError, match="empty list"):
        model.preprocess([])


def test_eval_rescales_to_output_size_and_drops_empty_boxes():
    model = _Toy().eval()
    preds = model([torch.zeros(3, 40, 80)], output_sizes=[(80, 160)])
    assert len(preds[0]["boxes"]) == 1  # the zero-width box is dropped
    torch.testing.assert_close(preds[0]["boxes"], torch.tensor([[20.0, 20.0, 60.0, 40.0]]))
    assert preds[0]["labels"].tolist() == [1]


def test_training_drops_crowd_and_logs_every_term():
    model = _Toy().train()
    target = {
        "boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 4.0, 4.0]]),
        "labels": torch.tensor([0, 1]),
        "iscrowd": torch.tensor([0, 1]),
    }
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, float(value.detach()))
    total = model.training_step(([torch.zeros(3, 8, 8)], [target]), 0)
    assert float(total) == pytest.approx(3.0)
    assert logged == {"train/a": 1.0, "train/b": 2.0, "train/loss": 3.0}
    _, targets = model.seen
    assert targets[0]["labels"].tolist() == [0] and targets[0]["iscrowd"].tolist() == [0]


def test_non_finite_loss_names_the_term():
    model = _Toy(loss_value=float("nan")).train()
    model.log = lambda *a, **k: None
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    with pytest.raises(FloatingPointError, match="loss term a became nan"):
        model.training_step(([torch.zeros(3, 8, 8)], [target]), 0)


def test_hyperparameters_rebuild_the_model():
    model = _Toy(loss_value=2.5, solver=Solver(lr=0.5), input_format="RGB")
    assert model.hparams["loss_value"] == 2.5
    assert model.hparams["solver"]["init_args"]["lr"] == 0.5
    rebuilt = build(spec_of(model))
    assert isinstance(rebuilt, _Toy) and rebuilt.solver.lr == 0.5 and rebuilt.input_format == "RGB"
    again = _Toy(**dict(model.hparams))  # what load_from_checkpoint does
    assert again.solver.lr == 0.5
