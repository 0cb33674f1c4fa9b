"""``zoo_configs/index.yaml``: every entry valid, Detectron2 URLs carrying their md5 prefix and
matching their Detectron2 config, class names right, malformed entries refused by name, and the
README's model-zoo table in sync."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from detzoo.data.synthetic import THING_CATEGORIES
from detzoo.zoo import index
from detzoo.zoo.index import TASKS, ZooError, load_index
from detzoo.zoo.table import README_BEGIN, README_END, markdown_table, text_table

from .helpers import write_tiny_zoo

REPO = Path(__file__).resolve().parents[2]
# Detectron2's model zoo, and its DensePose project's (configs under projects/DensePose/configs)
D2_URL = re.compile(
    r"^https://dl\.fbaipublicfiles\.com/(?:detectron2/(?P<config>[\w-]+/\w+)|densepose/(?P<densepose>\w+))"
    r"/\d+/model_final_[0-9a-f]{6}\.pkl$"
)


def test_every_entry_is_valid():
    entries = load_index(REPO / "zoo_configs")
    assert len(entries) >= 11
    assert len({name.lower() for name in entries}) == len(entries)  # unique, even ignoring case
    for name, e in entries.items():
        assert e.name == name and e.task in TASKS
        assert e.config.is_file() and e.config.suffix == ".yaml"
        assert all(isinstance(v, float) and 0 < v < 100 for v in e.metrics.values())
        # published weights come with their published numbers; a detzoo-native recipe without
        # weights lists only what was measured with it, possibly nothing yet
        assert e.metrics or (e.weights is None and e.detectron2_config is None), name
        assert len(set(e.classes)) == len(e.classes) > 0
        if e.weights is not None and e.weights.format == "detectron2":
            match = D2_URL.match(e.weights.url)
            assert match, e.weights.url
            assert e.weights.md5_prefix == e.weights.file_name[len("model_final_") : -4]
            config = match["config"] or f"projects/DensePose/configs/{match['densepose']}"
            assert f"{config}.yaml" == e.detectron2_config


def test_zoo_names_follow_their_detectron2_configs():
    """``faster_rcnn_R50_FPN_3x`` ↔ ``COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml``."""
    for e in load_index(REPO / "zoo_configs").values():
        if e.detectron2_config is None:
            continue
        d2_name = Path(e.detectron2_config).stem
        assert re.sub(r"_([RX])_(\d+)", r"_\1\2", d2_name) == e.name
        assert e.config.stem == e.name  # zoo_configs/coco/<name>.yaml


def test_published_box_ap_of_a_few_models():
    """Spot checks against Detectron2's MODEL_ZOO.md."""
    entries = load_index(REPO / "zoo_configs")
    assert entries["faster_rcnn_R50_FPN_3x"].metrics == {"bbox/AP": 40.2}
    assert entries["faster_rcnn_R50_FPN_3x"].weights.md5_prefix == "280758"
    assert entries["retinanet_R50_FPN_1x"].metrics == {"bbox/AP": 37.4}
    assert entries["retinanet_R101_FPN_3x"].weights.url.endswith(
        "/190397697/model_final_971ab9.pkl"
    )
    assert entries["faster_rcnn_X101_32x8d_FPN_3x"].metrics == {"bbox/AP": 43.0}
    assert entries["mask_rcnn_R50_FPN_3x"].metrics == {"bbox/AP": 41.0, "segm/AP": 37.2}
    assert entries["mask_rcnn_R50_FPN_3x"].weights.url.endswith("/137849600/model_final_f10217.pkl")
    assert entries["keypoint_rcnn_R50_FPN_3x"].metrics == {"bbox/AP": 55.4, "keypoints/AP": 65.5}
    assert entries["keypoint_rcnn_R50_FPN_1x"].weights.md5_prefix == "04e291"
    assert entries["cascade_mask_rcnn_R50_FPN_1x"].metrics == {"bbox/AP": 42.1, "segm/AP": 36.4}
    assert entries["cascade_mask_rcnn_R50_FPN_3x"].weights.url.endswith(
        "/Misc/cascade_mask_rcnn_R_50_FPN_3x/144998488/model_final_480dd8.pkl"
    )


def test_class_names():
    entries = load_index(REPO / "zoo_configs")
    coco = entries["faster_rcnn_R50_FPN_3x"].classes
    assert len(coco) == 80 and coco[0] == "person" and coco[-1] == "toothbrush"
    assert coco[coco.index("dining table") + 1] == "toilet"
    shapes = entries["faster_rcnn_R18_FPN_shapes"].classes
    assert list(shapes) == [c["name"] for c in sorted(THING_CATEGORIES, key=lambda c: c["id"])]
    assert entries["keypoint_rcnn_R50_FPN_3x"].classes == ("person",)
    assert entries["keypoint_rcnn_R18_FPN_shapes"].classes == ("figure",)
    assert entries["mask_rcnn_R50_FPN_3x"].classes == coco


def test_every_model_has_as_many_classes_as_its_config(monkeypatch):
    monkeypatch.setenv("DETZOO_ZOO_CONFIGS", str(REPO / "zoo_configs"))
    for name, e in load_index().items():
        config = index.get_config(name)
        assert config["model"]["init_args"]["num_classes"] == len(e.classes), name


def test_list_models_and_lookup(tiny_zoo):
    assert index.list_models() == ["tiny_faster_rcnn", "tiny_retinanet"]
    assert index.list_models(task="detection") == ["tiny_faster_rcnn", "tiny_retinanet"]
    assert index.list_models(task="panoptic") == []
    with pytest.raises(ZooError, match="unknown task 'boxes'"):
        index.list_models(task="boxes")
    with pytest.raises(ZooError, match="Did you mean tiny_retinanet"):
        index.entry("tiny_retinanett")
    assert index.class_names("tiny_retinanet") == ["cat", "dog", "bird"]
    assert index.get_config("tiny_faster_rcnn")["model"]["init_args"]["num_classes"] == 3


def _with_first_entry(root: Path, **changes) -> None:
    data = yaml.safe_load((root / "index.yaml").read_text())
    data["models"][0].update(changes)
    (root / "index.yaml").write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "tiny_retinanet"}, "'tiny_retinanet' is used twice"),
        ({"task": "boxes"}, "unknown task 'boxes'"),
        ({"config": "nothere.yaml"}, "nothere.yaml does not exist"),
        ({"metrics": {"bbox/AP": "high"}}, "metric 'bbox/AP' is 'high', not a number"),
        ({"classes": "imagenet"}, "classes 'imagenet' is not a key"),
        (
            {"weights": {"format": "detectron2", "url": "https://x/model_final.pkl"}},
            "carry no md5 prefix",
        ),
        ({"weights": {"format": "detzoo", "url": "https://x/w.safetensors"}}, "need a sha256"),
        ({"weights": {"format": "onnx", "url": "https://x/w.onnx"}}, "'format' in"),
    ],
)
def test_malformed_entries_are_refused_by_name(tmp_path, changes, message):
    root = write_tiny_zoo(tmp_path / "zoo")
    _with_first_entry(root, **changes)
    with pytest.raises(ZooError, match=rf"models\[\d\].*{re.escape(message)}"):
        load_index(root)


def test_text_table_lists_every_model_with_cache_state(tiny_zoo, tmp_path, cache):
    url = "https://example.org/w/model_final_abcdef.pkl"
    tiny_zoo({"tiny_faster_rcnn": {"format": "detectron2", "url": url}})
    table = text_table(load_index().values()).splitlines()
    assert table[0].split() == ["NAME", "TASK", "METRICS", "WEIGHTS", "CACHED"]
    assert table[1].split() == [
        "tiny_faster_rcnn",
        "detection",
        "bbox/AP",
        "12.5",
        "detectron2",
        "no",
    ]
    assert table[2].split() == ["tiny_retinanet", "detection", "bbox/AP", "12.5", "-", "-"]
    (cache / "weights").mkdir(parents=True)
    (cache / "weights" / "model_final_abcdef.pkl").write_bytes(b"x")
    assert text_table(load_index().values()).splitlines()[1].split()[-1] == "yes"


def test_readme_model_zoo_section_is_in_sync():
    readme = (REPO / "README.md").read_text()
    if README_BEGIN not in readme:
        pytest.skip(
            "README.md has no generated model-zoo section yet: paste the output of "
            "`detzoo zoo list --markdown` under a '## Model zoo' heading"
        )
    start = readme.index(README_BEGIN)
    end = readme.index(README_END) + len(README_END)
    assert readme[start:end] == markdown_table(load_index(REPO / "zoo_configs").values()), (
        "README.md's model-zoo table is out of date: replace it with `detzoo zoo list --markdown`"
    )


def test_listing_the_zoo_imports_no_torch():
    """``detzoo zoo list`` and the index stay light: torch and Lightning load only to build."""
    code = (
        "import sys, detzoo, detzoo.zoo as zoo; from detzoo.zoo.table import text_table; "
        "text_table(zoo.load_index().values()); zoo.fetch; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
