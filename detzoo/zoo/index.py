"""The model zoo index, ``zoo_configs/index.yaml``: what each zoo model is and where its weights are.

The index is parsed once per content and checked as it is read (see :func:`load_index`): an
entry with an unknown task, a missing config, a non-numeric metric, a duplicate name, or a
Detectron2 URL whose file name does not carry its md5 prefix is an error naming the entry, so a
broken index fails loudly instead of at download time. The format of an entry is documented at the
top of ``index.yaml``. This module needs only ``yaml``: listing the zoo never imports torch.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

TASKS = ("detection", "instance_segmentation", "keypoints", "panoptic", "semantic", "densepose")
WEIGHT_FORMATS = ("detectron2", "detzoo")

# Detectron2's model-zoo files are named model_final_<first 6 hex digits of their md5>.pkl
_DETECTRON2_FILE = re.compile(r"^model_final_([0-9a-f]{6})\.pkl$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ZooError(LookupError):
    """An unknown model name, a malformed index entry, or a model without the asked-for weights."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a zoo model's pretrained weights come from.

    Attributes:
        format: ``"detectron2"`` (a Detectron2 model-zoo ``.pkl``) or ``"detzoo"`` (safetensors).
        url: ``https://``, ``http://``, ``file://`` URL or local path.
        sha256: full hex digest (required for ``detzoo`` weights).
    """

    format: str
    url: str
    sha256: str | None = None

    @property
    def file_name(self) -> str:
        return Path(urllib.parse.urlparse(self.url).path).name

    @property
    def md5_prefix(self) -> str | None:
        """The md5 prefix a Detectron2 file name carries (``model_final_f10217.pkl`` → ``f10217``)."""
        if self.format != "detectron2":
            return None
        match = _DETECTRON2_FILE.match(self.file_name)
        return match.group(1) if match else None


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo (see ``index.yaml`` for the meaning of each field).

    Attributes:
        config: absolute path of the model's LightningCLI YAML.
        classes: class names in contiguous label order (label ``i`` is ``classes[i]``).
        metrics: published metrics, AP in percent (``{"bbox/AP": 40.2}``).
    """

    name: str
    task: str
    config: Path
    dataset: str
    classes: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    weights: WeightsSource | None = None
    detectron2_config: str | None = None
    notes: str | None = None


def configs_root() -> Path:
    """``$DETZOO_ZOO_CONFIGS`` or the ``zoo_configs/`` folder of the detzoo checkout."""
    env = os.environ.get("DETZOO_ZOO_CONFIGS")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "zoo_configs"


def load_index(root: Path | None = None) -> dict[str, ZooEntry]:
    """Every entry of ``<root>/index.yaml`` (default :func:`configs_root`) by name, in index order.

    Raises:
        ZooError: the index is missing or an entry is malformed (the message names the entry).
    """
    path = (root or configs_root()) / "index.yaml"
    if not path.is_file():
        raise ZooError(
            f"zoo index {path} not found; set DETZOO_ZOO_CONFIGS to the zoo_configs folder of a "
            f"detzoo checkout"
        )
    return dict(_parse_index(path, path.read_text()))


@lru_cache(maxsize=8)
def _parse_index(path: Path, text: str) -> tuple[tuple[str, ZooEntry], ...]:
    """Parsed once per content (the text is the cache key, so an edited index is re-read)."""
    raw = yaml.safe_load(text) or {}
    class_lists = raw.get("classes") or {}
    entries: dict[str, ZooEntry] = {}
    for i, item in enumerate(raw.get("models") or []):
        where = f"{path}: models[{i}] ({item.get('name', '?') if isinstance(item, dict) else '?'})"
        entry = _parse_entry(item, path.parent, class_lists, where)
        if entry.name in entries:
            raise ZooError(f"{where}: the name {entry.name!r} is used twice")
        entries[entry.name] = entry
    return tuple(entries.items())


def _parse_entry(item: Any, root: Path, class_lists: Mapping, where: str) -> ZooEntry:
    if not isinstance(item, dict):
        raise ZooError(f"{where}: an entry must be a mapping")
    for key in ("name", "task", "config", "dataset", "classes"):
        if not item.get(key):
            raise ZooError(f"{where}: missing {key!r}")
    if item["task"] not in TASKS:
        raise ZooError(f"{where}: unknown task {item['task']!r}; choose from {', '.join(TASKS)}")
    config = root / item["config"]
    if not config.is_file():
        raise ZooError(f"{where}: config {config} does not exist")
    classes = item["classes"]
    if isinstance(classes, str):
        if classes not in class_lists:
            raise ZooError(f"{where}: classes {classes!r} is not a key of the index's 'classes'")
        classes = class_lists[classes]
    metrics = dict(item.get("metrics") or {})
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ZooError(f"{where}: metric {key!r} is {value!r}, not a number")
    return ZooEntry(
        name=str(item["name"]),
        task=item["task"],
        config=config,
        dataset=str(item["dataset"]),
        classes=tuple(str(c) for c in classes),
        metrics={k: float(v) for k, v in metrics.items()},
        weights=_parse_weights(item.get("weights"), where),
        detectron2_config=item.get("detectron2_config"),
        notes=item.get("notes"),
    )


def _parse_weights(raw: Any, where: str) -> WeightsSource | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw.get("url") or raw.get("format") not in WEIGHT_FORMATS:
        raise ZooError(
            f"{where}: weights need a 'url' and a 'format' in {WEIGHT_FORMATS}, got {raw!r}"
        )
    source = WeightsSource(raw["format"], str(raw["url"]), raw.get("sha256"))
    if source.sha256 is not None and not _SHA256.match(str(source.sha256)):
        raise ZooError(f"{where}: sha256 {source.sha256!r} is not a 64-digit lowercase hex digest")
    if source.format == "detectron2" and source.md5_prefix is None and source.sha256 is None:
        raise ZooError(
            f"{where}: Detectron2 weights {source.url} carry no md5 prefix in their file name "
            f"(model_final_<6 hex digits>.pkl) and no sha256 is given: nothing to verify them by"
        )
    if source.format == "detzoo" and source.sha256 is None:
        raise ZooError(f"{where}: detzoo weights need a sha256")
    return source


def entry(name: str) -> ZooEntry:
    """The index entry of ``name``; an unknown name suggests close matches."""
    entries = load_index()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, list(entries), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else " See detzoo.zoo.list_models()."
    raise ZooError(f"no zoo model named {name!r}.{hint}")


def list_models(task: str | None = None) -> list[str]:
    """Names of the zoo models, in index order; only those of ``task`` when given."""
    if task is not None and task not in TASKS:
        raise ZooError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return [e.name for e in load_index().values() if task is None or e.task == task]


def get_config(name: str) -> dict[str, Any]:
    """The parsed LightningCLI config of a zoo model (``model``, ``data``, ``trainer`` sections)."""
    return yaml.safe_load(entry(name).config.read_text())


def class_names(name: str) -> list[str]:
    """The class names of a zoo model's dataset, in contiguous label order."""
    return list(entry(name).classes)
