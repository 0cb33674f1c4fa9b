"""ImageNet initialisation of a detector's ResNet (Detectron2's ``MODEL.WEIGHTS=R-50.pkl``):
caffe2 pickles, torchvision state dicts, the C4 ``res5`` head, clear refusals, the
``BackboneWeights`` callback, and the COCO configs naming Detectron2's ImageNet files."""

import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.callbacks import BackboneWeights
from detzoo.models import FasterRCNN
from detzoo.zoo.backbone_weights import load_imagenet_backbone, read_imagenet_weights
from detzoo.zoo.detectron2 import CheckpointMismatchError

REPO = Path(__file__).resolve().parents[2]
_NARROW = {"stem_out_channels": 8, "res2_out_channels": 16, "width_per_group": 4}


def _fpn_model(input_format: str = "BGR") -> FasterRCNN:
    resnet = ResNet(50, **_NARROW)
    backbone = FPN(resnet, out_channels=16, top_block=LastLevelMaxPool())
    return FasterRCNN(backbone, num_classes=2, input_format=input_format)


def _c4_model() -> FasterRCNN:
    return FasterRCNN(ResNet(50, out_features=["res4"], **_NARROW), num_classes=2)


def _c2_name(name: str) -> str:
    """detzoo ResNet name → Detectron's caffe2 name (the inverse of the converter's mapping)."""
    layer, _, field = name.rpartition(".")
    if layer.endswith(".norm"):
        layer = layer[: -len(".norm")]
        suffix = {
            "weight": "bn_s",
            "bias": "bn_b",
            "running_mean": "bn_rm",
            "running_var": "bn_riv",
        }[field]
    else:
        suffix = {"weight": "w", "bias": "b"}[field]
    if layer == "stem.conv1":
        return "res_conv1_" + suffix if suffix.startswith("bn") else "conv1_" + suffix
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}
    stage, block, conv = layer.split(".")
    return f"{stage}_{block}_{branch[conv]}_{suffix}"


def _imagenet_resnet(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded ResNet-50 (narrow) weights in detzoo names, all five stages."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=g)
        for k, v in ResNet(50, **_NARROW).state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def _write_c2_pickle(weights: dict[str, torch.Tensor], path: Path, blobs: bool = False) -> Path:
    data = {_c2_name(k): v.numpy() for k, v in weights.items()}
    data["fc1000_w"] = torch.zeros(10, 4).numpy()  # the classifier is dropped
    path.write_bytes(pickle.dumps({"blobs": data} if blobs else data, protocol=2))
    return path


@pytest.mark.parametrize("blobs", [False, True])
def test_caffe2_pickle_into_fpn_backbone(tmp_path, blobs):
    weights = _imagenet_resnet()
    path = _write_c2_pickle(weights, tmp_path / "R-50.pkl", blobs=blobs)
    model = _fpn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_imagenet_backbone(model, path)
    state = model.state_dict()
    assert set(loaded) == {f"backbone.bottom_up.{k}" for k in weights}
    for key, value in weights.items():
        assert torch.equal(state[f"backbone.bottom_up.{key}"], value), key
    untouched = [k for k in state if not k.startswith("backbone.bottom_up.")]
    assert untouched and all(torch.equal(state[k], before[k]) for k in untouched)


def test_caffe2_pickle_without_running_statistics(tmp_path):
    """Folded batch norms (scale and bias only): running mean 0, variance 1, as Detectron2."""
    weights = {k: v for k, v in _imagenet_resnet().items() if "running" not in k}
    path = _write_c2_pickle(weights, tmp_path / "R-50.pkl")
    model = _fpn_model()
    load_imagenet_backbone(model, path)
    state = model.state_dict()
    assert (state["backbone.bottom_up.res3.1.conv2.norm.running_var"] == 1).all()
    assert (state["backbone.bottom_up.stem.conv1.norm.running_mean"] == 0).all()


def test_c4_model_gets_res5_in_its_roi_head(tmp_path):
    weights = _imagenet_resnet(seed=1)
    path = _write_c2_pickle(weights, tmp_path / "R-50.pkl")
    model = _c4_model()
    load_imagenet_backbone(model, path)
    state = model.state_dict()
    assert torch.equal(state["backbone.res4.5.conv3.weight"], weights["res4.5.conv3.weight"])
    assert torch.equal(state["roi_heads.res5.2.conv3.weight"], weights["res5.2.conv3.weight"])
    assert torch.equal(state["roi_heads.res5.0.shortcut.weight"], weights["res5.0.shortcut.weight"])


def test_torchvision_state_dict_into_an_rgb_model(tmp_path):
    weights = _imagenet_resnet(seed=2)
    tv = {}
    for key, value in weights.items():
        name = key.replace("stem.conv1.norm.", "bn1.").replace("stem.conv1.", "conv1.")
        name = re.sub(r"^res(\d)", lambda m: f"layer{int(m.group(1)) - 1}", name)
        name = re.sub(r"\.conv(\d)\.norm\.", r".bn\1.", name)
        name = name.replace(".shortcut.norm.", ".downsample.1.").replace(
            ".shortcut.", ".downsample.0."
        )
        tv[name] = value
    tv["fc.weight"] = torch.zeros(10, 4)
    path = tmp_path / "resnet50.pth"
    torch.save(tv, path)
    assert read_imagenet_weights(path)[1] == "torchvision"
    model = _fpn_model(input_format="RGB")
    load_imagenet_backbone(model, path)
    assert torch.equal(
        model.state_dict()["backbone.bottom_up.res2.0.shortcut.norm.running_var"],
        weights["res2.0.shortcut.norm.running_var"],
    )
    with pytest.raises(ValueError, match="trained on RGB input.*input_format=BGR"):
        load_imagenet_backbone(_fpn_model(input_format="BGR"), path)


def test_wrong_depth_is_a_clear_error(tmp_path):
    weights = {k: v for k, v in _imagenet_resnet().items() if not k.startswith("res4.5.")}
    path = _write_c2_pickle(weights, tmp_path / "R-50-short.pkl")
    with pytest.raises(
        CheckpointMismatchError, match=r"missing: backbone\.bottom_up\.res4\.5\.conv1"
    ):
        load_imagenet_backbone(_fpn_model(), path)


def test_callback_loads_on_fit_only(tmp_path):
    weights = _imagenet_resnet(seed=3)
    path = _write_c2_pickle(weights, tmp_path / "R-50.pkl")
    callback = BackboneWeights(weights=path.as_uri())
    model = _fpn_model()
    callback.setup(None, model, stage="validate")
    assert callback.loaded == []
    assert not torch.equal(
        model.backbone.bottom_up.res2[0].conv1.weight, weights["res2.0.conv1.weight"]
    )
    callback.setup(None, model, stage="fit")
    assert len(callback.loaded) == len(weights)
    assert torch.equal(
        model.backbone.bottom_up.res2[0].conv1.weight, weights["res2.0.conv1.weight"]
    )


def test_coco_configs_start_from_detectron2_imagenet_weights():
    expected = {
        "R50": "MSRA/R-50.pkl",
        "R101": "MSRA/R-101.pkl",
        "X101_32x8d": "FAIR/X-101-32x8d.pkl",
    }
    configs = sorted((REPO / "zoo_configs" / "coco").glob("*.yaml"))
    for path in configs:
        # every COCO recipe (Faster R-CNN, RetinaNet, Mask, Keypoint, Cascade Mask R-CNN, ...)
        # names its backbone: <arch>_<R50|R101|X101_32x8d>_...
        match = re.search(r"_(R50|R101|X101_32x8d)_", path.name)
        assert match, f"{path.name}: no backbone in the name; add its ImageNet file here"
        callbacks = yaml.safe_load(path.read_text())["trainer"]["callbacks"]
        (init,) = [c for c in callbacks if c["class_path"] == "detzoo.callbacks.BackboneWeights"]
        url = "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/" + expected[match[1]]
        assert init["init_args"] == {"weights": url}, path.name
    assert len(configs) >= 20
