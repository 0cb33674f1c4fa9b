"""``detzoo.zoo.get``: published weights (downloaded, cached, offline), local Detectron2 / detzoo /
Lightning files loaded value for value, fine-tuning with a new ``num_classes``, test-time
thresholds, clear errors — on tiny models; and every model of the real index builds and predicts."""

import logging
import pickle
from pathlib import Path

import lightning as L
import pytest
import torch

import detzoo
from detzoo.models import FasterRCNN, RetinaNet
from detzoo.zoo import CheckpointMismatchError, ZooError, load_checkpoint, save_weights
from detzoo.zoo.build import build_model, with_num_classes

from .helpers import TINY_CONFIGS, randomised_state, write_detectron2_pkl

REPO = Path(__file__).resolve().parents[2]


def _tiny_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    return randomised_state(build_model(TINY_CONFIGS[name]), seed)


def _assert_state_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    actual = model.state_dict()
    assert sorted(actual) == sorted(state)
    for key, value in state.items():
        assert torch.equal(actual[key].cpu(), value), key


@pytest.mark.parametrize("name", ["tiny_faster_rcnn", "tiny_retinanet"])
def test_local_detectron2_pkl_loads_exactly(tiny_zoo, tmp_path, name):
    state = _tiny_state(name)
    pkl = write_detectron2_pkl(state, tmp_path)
    model = detzoo.zoo.get(name, weights=pkl, device="cpu")
    _assert_state_equal(model, state)
    assert not model.training and model.device.type == "cpu"


def test_detectron2_pth_and_file_url(tiny_zoo, tmp_path):
    state = _tiny_state("tiny_faster_rcnn", seed=1)
    pth = tmp_path / "model_0004999.pth"
    torch.save({"model": state, "iteration": 4999, "optimizer": {}}, pth)
    _assert_state_equal(detzoo.zoo.get("tiny_faster_rcnn", weights=pth.as_uri()), state)


def test_published_weights_download_once_then_offline(tiny_zoo, server, cache, tmp_path):
    state = _tiny_state("tiny_faster_rcnn", seed=2)
    pkl = write_detectron2_pkl(state, tmp_path / "published")
    server.files[f"/zoo/{pkl.name}"] = pkl.read_bytes()
    tiny_zoo({"tiny_faster_rcnn": {"format": "detectron2", "url": f"{server.url}/zoo/{pkl.name}"}})
    _assert_state_equal(detzoo.zoo.get("tiny_faster_rcnn", progress=False), state)
    assert (cache / "weights" / pkl.name).read_bytes() == pkl.read_bytes()
    server.close()  # no network from here on
    _assert_state_equal(detzoo.zoo.get("tiny_faster_rcnn", progress=False), state)
    assert len(server.requests) == 1


def test_published_detzoo_weights_are_sha256_checked(tiny_zoo, tmp_path):
    model = build_model(TINY_CONFIGS["tiny_retinanet"])
    model.load_state_dict(_tiny_state("tiny_retinanet", seed=3))
    path = save_weights(model, tmp_path / "retina.safetensors")
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tiny_zoo({"tiny_retinanet": {"format": "detzoo", "url": path.as_uri(), "sha256": digest}})
    _assert_state_equal(detzoo.zoo.get("tiny_retinanet"), model.state_dict())
    tiny_zoo({"tiny_retinanet": {"format": "detzoo", "url": path.as_uri(), "sha256": "0" * 64}})
    with pytest.raises(detzoo.zoo.ChecksumError, match=f"sha256 is {digest}, expected 0000"):
        detzoo.zoo.get("tiny_retinanet")


def test_no_published_weights_is_a_clear_error(tiny_zoo):
    with pytest.raises(ZooError, match="has no published weights: use pretrained=False"):
        detzoo.zoo.get("tiny_faster_rcnn")
    model = detzoo.zoo.get("tiny_faster_rcnn", pretrained=False)
    assert isinstance(model, FasterRCNN) and model.num_classes == 3


@pytest.mark.parametrize(
    ("name", "class_specific"),
    [
        (
            "tiny_faster_rcnn",
            {
                "roi_heads.box_predictor.cls_score.weight",
                "roi_heads.box_predictor.cls_score.bias",
                "roi_heads.box_predictor.bbox_pred.weight",
                "roi_heads.box_predictor.bbox_pred.bias",
            },
        ),
        ("tiny_retinanet", {"head.cls_score.weight", "head.cls_score.bias"}),
    ],
)
def test_new_num_classes_reinitialises_only_predictor_layers(
    tiny_zoo, tmp_path, caplog, name, class_specific
):
    state = _tiny_state(name)
    pkl = write_detectron2_pkl(state, tmp_path)
    with caplog.at_level(logging.INFO, logger="detzoo.zoo"):
        model = detzoo.zoo.get(name, weights=pkl, num_classes=5)
    assert model.num_classes == 5 and model.hparams["num_classes"] == 5
    loaded = model.state_dict()
    for key, value in state.items():
        if key in class_specific:
            assert (
                loaded[key].shape[0] != value.shape[0] and loaded[key].shape[1:] == value.shape[1:]
            )
        else:
            assert torch.equal(loaded[key], value), key  # backbone, RPN, box head: the file's
    fresh = build_model(TINY_CONFIGS[name], num_classes=5).state_dict()
    for key in class_specific:  # the new layers are initialised as a new model's would be
        assert loaded[key].shape == fresh[key].shape
        assert abs(float(loaded[key].std()) - float(fresh[key].std())) < 0.5 * float(
            fresh[key].std() + 1e-3
        )
    (record,) = [r for r in caplog.records if r.name == "detzoo.zoo"]
    assert "re-initialised for 5 classes" in record.getMessage()
    assert all(key in record.getMessage() for key in class_specific)


def test_new_num_classes_model_trains_and_predicts_its_classes(tiny_zoo, tmp_path):
    pkl = write_detectron2_pkl(_tiny_state("tiny_faster_rcnn"), tmp_path)
    model = detzoo.zoo.get("tiny_faster_rcnn", weights=pkl, num_classes=1, score_thresh=0.0)
    assert model.roi_heads.box_predictor.cls_score.out_features == 2
    with torch.no_grad():
        (prediction,) = model([torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)])
    assert (prediction["labels"] == 0).all()


def test_same_num_classes_is_a_strict_load(tiny_zoo, tmp_path, caplog):
    state = _tiny_state("tiny_faster_rcnn")
    pkl = write_detectron2_pkl(state, tmp_path)
    with caplog.at_level(logging.INFO, logger="detzoo.zoo"):
        _assert_state_equal(detzoo.zoo.get("tiny_faster_rcnn", weights=pkl, num_classes=3), state)
    assert not [r for r in caplog.records if r.name == "detzoo.zoo"]


def test_new_num_classes_does_not_hide_other_mismatches(tiny_zoo, tmp_path):
    state = _tiny_state("tiny_faster_rcnn")
    state["backbone.fpn_output2.weight"] = torch.zeros(16, 16, 1, 1)  # 3x3 in the model
    pkl = write_detectron2_pkl(state, tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch: backbone\.fpn_output2"):
        detzoo.zoo.get("tiny_faster_rcnn", weights=pkl, num_classes=5)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            "rename",
            r"missing: backbone\.fpn_lateral2\.weight; unexpected: backbone\.fpn_lat2\.weight",
        ),
        ("drop", r"missing: proposal_generator\.rpn_head\.conv\.weight"),
        (
            "reshape",
            r"shape mismatch: roi_heads\.box_predictor\.cls_score\.weight: checkpoint \(5, ",
        ),
    ],
)
def test_mismatched_checkpoint_is_a_clear_error(tiny_zoo, tmp_path, edit, message):
    state = _tiny_state("tiny_faster_rcnn")
    if edit == "rename":
        state["backbone.fpn_lat2.weight"] = state.pop("backbone.fpn_lateral2.weight")
    elif edit == "drop":
        del state["proposal_generator.rpn_head.conv.weight"]
    else:
        weight = state["roi_heads.box_predictor.cls_score.weight"]
        state["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(5, weight.shape[1])
    pkl = write_detectron2_pkl(state, tmp_path)
    with pytest.raises(CheckpointMismatchError, match=message) as info:
        detzoo.zoo.get("tiny_faster_rcnn", weights=pkl)
    assert pkl.name in str(info.value) and "FasterRCNN" in str(info.value)


def test_pickle_with_code_is_refused_before_it_runs(tiny_zoo, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "model_final_000000.pkl"
    evil.write_bytes(pickle.dumps({"model": {"w": Payload()}}))
    with pytest.raises(detzoo.zoo.UnsafePickleError, match="refusing"):
        detzoo.zoo.get("tiny_faster_rcnn", weights=evil)
    assert not marker.exists()


def test_imagenet_checkpoint_is_pointed_to_backbone_weights(tiny_zoo, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(
        {"conv1.weight": torch.zeros(8, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(1)}, path
    )
    with pytest.raises(ValueError, match="ImageNet backbone checkpoint.*BackboneWeights"):
        detzoo.zoo.get("tiny_faster_rcnn", weights=path)


def test_score_thresh_reaches_every_test_time_threshold(tiny_zoo):
    faster = detzoo.zoo.get("tiny_faster_rcnn", pretrained=False, score_thresh=0.3)
    assert faster.roi_heads.box_predictor.score_thresh == 0.3
    assert faster.hparams["score_thresh"] == 0.3
    retina = detzoo.zoo.get("tiny_retinanet", pretrained=False, score_thresh=0.4)
    assert isinstance(retina, RetinaNet) and retina.outputs.score_thresh == 0.4


def test_safetensors_round_trip_and_rebuild_alone(tiny_zoo, tmp_path):
    model = detzoo.zoo.get("tiny_retinanet", pretrained=False)
    model.load_state_dict(_tiny_state("tiny_retinanet", seed=4))
    path = save_weights(model, tmp_path / "out" / "retina.safetensors")
    _assert_state_equal(detzoo.zoo.get("tiny_retinanet", weights=path), model.state_dict())
    rebuilt = load_checkpoint(path)
    assert type(rebuilt) is RetinaNet and rebuilt.num_classes == 3
    _assert_state_equal(rebuilt, model.state_dict())
    with pytest.raises(ValueError, match=r"\*\.safetensors"):
        save_weights(model, tmp_path / "retina.pth")


def test_lightning_checkpoint_loads_and_rebuilds_alone(tiny_zoo, tmp_path):
    model = detzoo.zoo.get("tiny_faster_rcnn", pretrained=False, num_classes=2)
    model.load_state_dict(randomised_state(model, seed=5))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    trainer.strategy.connect(model)
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = detzoo.zoo.get("tiny_faster_rcnn", weights=ckpt, num_classes=2)
    _assert_state_equal(loaded, model.state_dict())
    rebuilt = load_checkpoint(ckpt)
    assert type(rebuilt) is FasterRCNN and rebuilt.num_classes == 2
    _assert_state_equal(rebuilt, model.state_dict())


def test_with_num_classes_changes_every_copy_of_the_class_count():
    spec = {
        "init_args": {
            "num_classes": 80,
            "roi_heads": {"init_args": {"box_predictor": {"init_args": {"num_classes": 80}}}},
            "sem_seg_head": {"init_args": {"num_classes": 54}},  # stuff classes: not the same count
        }
    }
    out = with_num_classes(spec, 80, 3)
    assert out["init_args"]["num_classes"] == 3
    assert (
        out["init_args"]["roi_heads"]["init_args"]["box_predictor"]["init_args"]["num_classes"] == 3
    )
    assert out["init_args"]["sem_seg_head"]["init_args"]["num_classes"] == 54
    assert spec["init_args"]["num_classes"] == 80  # the input is left alone


def test_shapes_recipe_with_explicit_predictor_takes_new_num_classes(monkeypatch):
    monkeypatch.setenv("DETZOO_ZOO_CONFIGS", str(REPO / "zoo_configs"))
    model = detzoo.zoo.get("faster_rcnn_R18_FPN_shapes", pretrained=False, num_classes=2)
    assert model.num_classes == 2
    assert model.roi_heads.box_predictor.cls_score.out_features == 3


@pytest.mark.parametrize("name", detzoo.zoo.load_index(REPO / "zoo_configs"), ids=lambda name: name)
def test_every_index_model_builds_and_predicts(monkeypatch, name):
    monkeypatch.setenv("DETZOO_ZOO_CONFIGS", str(REPO / "zoo_configs"))
    model = detzoo.zoo.get(name, pretrained=False, score_thresh=0.0, device="cpu")
    assert model.num_classes == len(detzoo.zoo.class_names(name))
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 72, 96), dtype=torch.uint8)
    with torch.no_grad():
        (prediction,) = model([image])
    n = len(prediction["scores"])
    assert prediction["boxes"].shape == (n, 4) and prediction["labels"].shape == (n,)
    if n:
        assert (
            float(prediction["boxes"][:, 2].max()) <= 96
            and float(prediction["boxes"][:, 3].max()) <= 72
        )
        assert int(prediction["labels"].max()) < model.num_classes


def test_public_api_resolves():
    assert detzoo.zoo.get is detzoo.zoo.api.get
    for name in detzoo.zoo.__all__:
        assert getattr(detzoo.zoo, name) is not None, name
    assert detzoo.Predictor.__module__ == "detzoo.predictor"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        detzoo.zoo.nope  # noqa: B018


def test_weights_of_a_batchnorm_model_load_back(tmp_path, monkeypatch):
    """Shapes recipes train BatchNorm: their saved weights (no batch counters) load back whole,
    with the test-time thresholds set on the model."""
    monkeypatch.setenv("DETZOO_ZOO_CONFIGS", str(REPO / "zoo_configs"))
    model = detzoo.zoo.get("faster_rcnn_R18_FPN_shapes", pretrained=False, score_thresh=0.2)
    norm = model.backbone.bottom_up.stem.conv1.norm
    assert isinstance(norm, torch.nn.BatchNorm2d)
    norm.running_mean.uniform_()
    path = detzoo.zoo.save_weights(model, tmp_path / "trained.safetensors")
    loaded = detzoo.zoo.load_checkpoint(path)
    assert loaded.roi_heads.box_predictor.score_thresh == 0.2  # test-time settings travel too
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key
