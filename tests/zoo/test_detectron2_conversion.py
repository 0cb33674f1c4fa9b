"""Detectron2 checkpoints of every index model with a golden fixture convert strictly into the
model its zoo config builds (``../shared/golden``: the parameter names and shapes Detectron2's
own models have), a renamed/missing/misshapen key is a clear error, and one converted checkpoint
predicts through ``detzoo.zoo.get`` exactly as Detectron2 did."""

import json
import pickle
import re
from pathlib import Path

import pytest
import torch

import detzoo
from detzoo.zoo.build import build_model
from detzoo.zoo.checkpoints import CheckpointFile
from detzoo.zoo.detectron2 import CheckpointMismatchError, check_compatible
from detzoo.zoo.index import get_config, load_index
from detzoo.zoo.loading import to_model_names

from ..golden_utils import (
    golden_images,
    golden_outputs,
    golden_weights,
    match_as_sets,
    skip_without_golden,
)

REPO = Path(__file__).resolve().parents[2]
ENTRIES = load_index(REPO / "zoo_configs")


def _arch(name: str) -> str:
    return re.sub(r"_(1x|3x|s1x)$", "", name)


def _fixture_shapes(golden_dir: Path, arch: str) -> tuple[dict[str, list[int]], str] | None:
    """(Detectron2 parameter shapes, Detectron2 config) of an architecture's fixture, if any."""
    full = golden_dir / arch / "params.json"
    if full.is_file():
        config = json.loads((golden_dir / arch / "outputs.json").read_text())["detectron2_config"]
        return {k: v["shape"] for k, v in json.loads(full.read_text()).items()}, config
    only = golden_dir / "params_only" / f"{arch}.json"
    if only.is_file():
        data = json.loads(only.read_text())
        return data["params"], data["detectron2_config"]
    return None


def _meta_model(name: str, monkeypatch) -> torch.nn.Module:
    """The zoo config's model with parameters on the meta device (shapes only, no memory)."""
    monkeypatch.setenv("DETZOO_ZOO_CONFIGS", str(REPO / "zoo_configs"))
    with torch.device("meta"):
        return build_model(get_config(name), source=name)


@pytest.mark.parametrize("name", [n for n, e in ENTRIES.items() if e.detectron2_config])
def test_detectron2_checkpoint_loads_strictly(golden_dir, monkeypatch, name):
    fixture = _fixture_shapes(golden_dir, _arch(name))
    if fixture is None:
        skip_without_golden(f"no golden parameter list for {_arch(name)}")
    shapes, d2_config = fixture
    # a fixture made with the 1x config also describes the 3x model: same layout
    assert Path(d2_config).stem[:-3] == Path(ENTRIES[name].detectron2_config).stem[:-3]
    model = _meta_model(name, monkeypatch)
    weights = {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}
    converted = to_model_names(model, CheckpointFile(weights, "detectron2"))
    check_compatible(model, converted, f"{name} golden parameters")  # raises on any mismatch


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            "rename",
            r"missing: backbone\.bottom_up\.res3\.0\.conv1\.weight; unexpected: backbone\.bottom_up\.res3\.0\.conv_1\.weight",
        ),
        ("drop", r"missing: roi_heads\.box_head\.fc2\.bias"),
        (
            "reshape",
            r"shape mismatch: backbone\.fpn_output3\.weight: checkpoint \(256, 256, 1, 1\) vs model \(256, 256, 3, 3\)",
        ),
    ],
)
def test_golden_parameter_list_with_a_bad_key_is_refused(golden_dir, monkeypatch, edit, message):
    shapes, _ = _fixture_shapes(golden_dir, "faster_rcnn_R50_FPN")
    if edit == "rename":
        shapes["backbone.bottom_up.res3.0.conv_1.weight"] = shapes.pop(
            "backbone.bottom_up.res3.0.conv1.weight"
        )
    elif edit == "drop":
        del shapes["roi_heads.box_head.fc2.bias"]
    else:
        shapes["backbone.fpn_output3.weight"] = [256, 256, 1, 1]
    model = _meta_model("faster_rcnn_R50_FPN_1x", monkeypatch)
    weights = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    with pytest.raises(CheckpointMismatchError, match=message):
        check_compatible(
            model, to_model_names(model, CheckpointFile(weights, "detectron2")), "x.pkl"
        )


@pytest.mark.slow
def test_zoo_model_from_detectron2_pkl_predicts_like_detectron2(golden_dir, tmp_path, monkeypatch):
    """The README's recipe: ``get(<zoo name>, weights=<.pkl>, score_thresh=0.0)`` — the zoo
    config, the converter and the loader together give Detectron2's detections."""
    monkeypatch.setenv("DETZOO_ZOO_CONFIGS", str(REPO / "zoo_configs"))
    arch_dir = golden_dir / "retinanet_R50_FPN"
    pkl = tmp_path / "model_final.pkl"
    pkl.write_bytes(pickle.dumps({"model": golden_weights(arch_dir / "params.json")}, protocol=4))
    model = detzoo.zoo.get("retinanet_R50_FPN_1x", weights=pkl, score_thresh=0.0, device="cpu")
    images = golden_images(golden_dir)
    gold, meta = golden_outputs(arch_dir)
    with torch.no_grad():
        predictions = model(images)
    for i, (prediction, info) in enumerate(zip(predictions, meta["images"])):
        assert len(prediction["boxes"]) == info["num_instances"]
        pairs = match_as_sets(
            gold[f"instances/{i}/boxes"],
            gold[f"instances/{i}/scores"],
            prediction["boxes"],
            prediction["scores"],
            gold[f"instances/{i}/classes"],
            prediction["labels"],
        )
        assert len(pairs) >= 0.95 * info["num_instances"]
