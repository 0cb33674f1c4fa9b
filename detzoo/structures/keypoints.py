"""Keypoint helpers: the horizontal-flip permutation from keypoint names."""

from __future__ import annotations

from collections.abc import Sequence

_SIDES = (("left_", "right_"), ("l_", "r_"), ("left", "right"))


def _mirror_name(name: str) -> str | None:
    for left, right in _SIDES:
        if name.startswith(left):
            return right + name[len(left) :]
        if name.startswith(right):
            return left + name[len(right) :]
    return None


def keypoint_flip_map(names: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs of names swapped by a horizontal flip, found by ``left``/``right`` prefixes
    (``left_eye`` <-> ``right_eye``, as in Detectron2's ``keypoint_flip_map`` metadata).

    Each pair is listed once, left name first. Names without a partner (``nose``) are absent.
    """
    present = set(names)
    pairs = []
    for name in names:
        mirror = _mirror_name(name)
        if mirror in present and name < mirror:
            pairs.append((name, mirror) if name.startswith("l") else (mirror, name))
    return pairs


def flip_indices(names: Sequence[str], flip_map: Sequence[tuple[str, str]]) -> list[int]:
    """Permutation ``p`` of ``range(K)``: after a flip, keypoint ``i`` is the old keypoint ``p[i]``."""
    if len(set(names)) != len(names):
        raise ValueError(f"keypoint names must be unique, got {list(names)}")
    position = {name: i for i, name in enumerate(names)}
    swapped = dict(flip_map)
    swapped.update({b: a for a, b in flip_map})
    unknown = [name for name in swapped if name not in position]
    if unknown:
        raise ValueError(f"flip map names {unknown} are not keypoint names {list(names)}")
    return [position[swapped.get(name, name)] for name in names]
