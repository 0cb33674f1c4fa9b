"""The surface distance of the synthetic ``figure`` (DensePose-style GPS on ``shapes``): a
:class:`detzoo.evaluation.surfaces.SurfaceDistance` built from the generator's own figure."""

from __future__ import annotations

import numpy as np

from detzoo.data.synthetic.categories import (
    FINE_PART_OF_COARSE,
    KEYPOINT_NAMES,
    NUM_COARSE_PARTS,
)

# figure.py's coarse part ids of each body part, (left, right) for the paired ones
from detzoo.data.synthetic.figure import (
    _FOOT,
    _HAND,
    _HEAD,
    _LOWER_ARM,
    _LOWER_LEG,
    _TORSO,
    _UPPER_ARM,
    _UPPER_LEG,
    pose_figure,
)
from detzoo.structures.densepose import NUM_FINE_PARTS

# ---- the synthetic figure ------------------------------------------------------------------

#: the body height the figure is scaled to (m), that of the SMPL template Detectron2 measures in
BODY_HEIGHT = 1.7
# figure height (px) the layout is built at: large enough that no capsule radius hits
# pose_figure's minimum radius (1.5 px), so all proportions are the generator's
_LAYOUT_HEIGHT = 1000.0


class _UprightPose:
    """Stands in for :func:`pose_figure`'s random generator: every random angle takes the value
    of its range closest to 0 (no lean, straight legs and elbows, arms at their smallest
    angle from the body)."""

    def uniform(self, low: float, high: float) -> float:
        return float(np.clip(0.0, low, high))


def _mean_distance_in_rectangle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean distance between two points drawn uniformly in an ``a x b`` rectangle (closed form)."""
    d = np.hypot(a, b)
    return (a**3 / b**2 + b**3 / a**2 + d * (3 - a**2 / b**2 - b**2 / a**2)) / 15 + (
        b**2 / a * np.log((a + d) / b) + a**2 / b * np.log((b + d) / a)
    ) / 6


class ShapesFigureSurface:
    """The surface distance of the ``shapes`` dataset's ``figure`` (:mod:`detzoo.data.synthetic`).

    The figure is 14 capsules (:func:`detzoo.data.synthetic.figure.pose_figure`), one per
    DensePose coarse part, labelled with one fine index I each and charted by
    :func:`~detzoo.data.synthetic.figure.surface_uv`: U across the capsule, V along it, from
    beyond the cap of its first end (0) to beyond the cap of its second (1). The layout is the
    generator's own figure, upright (:class:`_UprightPose`), scaled to :data:`BODY_HEIGHT` from
    the top of the head to the lowest point of the feet. A point (I, U, V) sits at
    ``start + axis · (V · (length + 2r) - r) + normal · (2U - 1) · r`` of its capsule (the inverse
    of ``surface_uv``).

    Distance (a geodesic on the flat figure, travelling through its joints): on the same part,
    the straight line; between parts, the path along the body's tree from the first point to the
    joint of its part on the way, from joint to joint, then to the second point. Joints are the
    generator's keypoints (shoulders, elbows, wrists, hips, knees, ankles) and the neck (the
    torso's upper end) for the head. Each term lies within one rigid part, so the distance does
    not depend on the pose (as SMPL geodesics are measured on the template, not the posed body)
    and left/right limbs are as far apart as going round through the torso makes them.

    ``κ`` of a part is the mean distance between two points uniform in its (U, V) chart, i.e. in
    its ``(length + 2r) x 2r`` rectangle (Detectron2's definition of ``Mean_Distances``).

    Fine indices the figure does not use (the back halves of DensePose's front/back part pairs)
    are not on its surface: a prediction there counts as background (similarity 0); ground truth
    there is an error.
    """

    def __init__(self) -> None:
        figure = pose_figure(_UprightPose(), np.zeros(2), _LAYOUT_HEIGHT)
        capsules = figure.parts
        top = min(min(c.start[1], c.end[1]) - c.radius for c in capsules.values())
        bottom = max(max(c.start[1], c.end[1]) + c.radius for c in capsules.values())
        scale = BODY_HEIGHT / (bottom - top)

        parts = NUM_COARSE_PARTS + 1  # tables are indexed by coarse part id, 0 = none
        self._start = np.zeros((parts, 2))
        self._axis = np.zeros((parts, 2))
        self._extent = np.zeros(parts)  # length + 2 r
        self._radius = np.zeros(parts)
        for part, capsule in capsules.items():
            axis = (capsule.end - capsule.start) * scale
            length = float(np.hypot(*axis))
            self._start[part] = capsule.start * scale
            self._axis[part] = axis / length
            self._radius[part] = capsule.radius * scale
            self._extent[part] = length + 2 * self._radius[part]
        self._coarse_of_fine = np.zeros(NUM_FINE_PARTS + 1, np.int64)
        for coarse, fine in FINE_PART_OF_COARSE.items():
            self._coarse_of_fine[fine] = coarse
        self._kappa = np.zeros(parts)
        self._kappa[1:] = _mean_distance_in_rectangle(self._extent[1:], 2 * self._radius[1:])

        keypoints = dict(zip(KEYPOINT_NAMES, figure.keypoints * scale))
        joints = {(_HEAD, _TORSO): capsules[_TORSO].start * scale}  # the neck
        for index, side in enumerate(("left", "right")):  # figure.py's (left, right) order
            joints[(_UPPER_ARM[index], _TORSO)] = keypoints[f"{side}_shoulder"]
            joints[(_LOWER_ARM[index], _UPPER_ARM[index])] = keypoints[f"{side}_elbow"]
            joints[(_HAND[index], _LOWER_ARM[index])] = keypoints[f"{side}_wrist"]
            joints[(_UPPER_LEG[index], _TORSO)] = keypoints[f"{side}_hip"]
            joints[(_LOWER_LEG[index], _UPPER_LEG[index])] = keypoints[f"{side}_knee"]
            joints[(_FOOT[index], _LOWER_LEG[index])] = keypoints[f"{side}_ankle"]
        self._entry, self._between = self._tree_paths(joints, parts)

    @staticmethod
    def _tree_paths(
        joints: dict[tuple[int, int], np.ndarray], parts: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """For parts ``p != q``: ``entry[p, q]`` ``[2]``, the first joint on the tree path from
        ``p`` to ``q``, and ``between[p, q]``, the path's length from its first to its last
        joint."""
        neighbours: dict[int, list[tuple[int, np.ndarray]]] = {}
        for (child, parent), position in joints.items():
            neighbours.setdefault(child, []).append((parent, position))
            neighbours.setdefault(parent, []).append((child, position))
        entry = np.zeros((parts, parts, 2))
        between = np.zeros((parts, parts))
        for source in neighbours:
            # node -> (first joint, last joint, length between them)
            reached = {n: (j, j, 0.0) for n, j in neighbours[source]}
            frontier = list(reached)
            while frontier:
                node = frontier.pop()
                first, last, length = reached[node]
                for other, joint in neighbours[node]:
                    if other != source and other not in reached:
                        step = float(np.hypot(*(joint - last)))
                        reached[other] = (first, joint, length + step)
                        frontier.append(other)
            for target, (first, _, length) in reached.items():
                entry[source, target] = first
                between[source, target] = length
        return entry, between

    def _positions(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        along = np.asarray(v, np.float64) * self._extent[parts] - self._radius[parts]
        across = (2 * np.asarray(u, np.float64) - 1) * self._radius[parts]
        axis = self._axis[parts]
        normal = np.stack([axis[:, 1], -axis[:, 0]], axis=1)  # surface_uv's "across" direction
        return self._start[parts] + axis * along[:, None] + normal * across[:, None]

    def _gt_parts(self, gt_i: np.ndarray) -> np.ndarray:
        gt_i = np.asarray(gt_i)
        parts = self._coarse_of_fine[np.clip(gt_i, 0, NUM_FINE_PARTS)]
        if ((parts == 0) | (gt_i > NUM_FINE_PARTS)).any():
            raise ValueError(
                f"ground-truth part indices {sorted(set(gt_i[parts == 0].tolist()))} are not "
                f"parts of the shapes figure (its fine parts: {sorted(FINE_PART_OF_COARSE.values())})"
            )
        return parts

    def distances(
        self,
        gt_i: np.ndarray,
        gt_u: np.ndarray,
        gt_v: np.ndarray,
        pred_i: np.ndarray,
        pred_u: np.ndarray,
        pred_v: np.ndarray,
    ) -> np.ndarray:
        """See :meth:`SurfaceDistance.distances`."""
        gt_part = self._gt_parts(gt_i)
        pred_part = self._coarse_of_fine[np.clip(np.asarray(pred_i), 0, NUM_FINE_PARTS)]
        a = self._positions(gt_part, gt_u, gt_v)
        b = self._positions(pred_part, pred_u, pred_v)
        via_joints = (
            np.linalg.norm(a - self._entry[gt_part, pred_part], axis=1)
            + self._between[gt_part, pred_part]
            + np.linalg.norm(b - self._entry[pred_part, gt_part], axis=1)
        )
        distance = np.where(gt_part == pred_part, np.linalg.norm(a - b, axis=1), via_joints)
        return np.where(pred_part == 0, np.inf, distance)

    def normalization(self, gt_i: np.ndarray) -> np.ndarray:
        """See :meth:`SurfaceDistance.normalization`."""
        return self._kappa[self._gt_parts(gt_i)]
