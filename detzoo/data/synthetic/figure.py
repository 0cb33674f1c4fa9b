"""The articulated ``figure``: a stick person of capsules with keypoints and a DensePose chart.

Each of the 14 body parts is a capsule (a segment thickened by a radius) labelled with its
DensePose coarse part index (see :mod:`.categories`). Joint angles are random; keypoints are the
joints, so each lies on the axis of the capsules it connects.
"""

from dataclasses import dataclass

import numpy as np

from .categories import KEYPOINT_NAMES
from .raster import capsule_outline

# Coarse part indices (DensePose-COCO dp_masks order) for each side: (left, right).
_TORSO, _HEAD = 1, 14
_HAND, _FOOT = (3, 2), (4, 5)
_UPPER_LEG, _LOWER_LEG = (7, 6), (9, 8)
_UPPER_ARM, _LOWER_ARM = (10, 11), (12, 13)
# Parts later in this order are drawn over earlier ones.
_DRAW_ORDER = (*_UPPER_LEG, *_LOWER_LEG, *_FOOT, _TORSO, *_UPPER_ARM, *_LOWER_ARM, *_HAND, _HEAD)
_MIN_RADIUS = 1.5  # px, so that even small figures' limbs are solid


@dataclass
class Capsule:
    """A segment ``start -> end`` (float ``[2]`` (x, y) image pixels) thickened by ``radius`` px."""

    start: np.ndarray
    end: np.ndarray
    radius: float


@dataclass
class Figure:
    """One posed figure.

    Attributes:
        keypoints: float ``[13, 2]`` (x, y) image pixels, in ``KEYPOINT_NAMES`` order.
        parts: coarse part index (1..14) -> its capsule.
    """

    keypoints: np.ndarray
    parts: dict[int, Capsule]


def pose_figure(rng: np.random.Generator, pelvis: np.ndarray, height: float) -> Figure:
    """A figure about ``height`` px tall standing on ``pelvis`` (float ``[2]`` (x, y)).

    The body leans by up to 25 degrees; arms swing anywhere from down to up, legs spread up to
    35 degrees, elbows and knees bend randomly. ``left`` is the image's right before leaning.
    """
    tilt = rng.uniform(-0.45, 0.45)
    up = np.array([np.sin(tilt), -np.cos(tilt)])
    side = np.array([np.cos(tilt), np.sin(tilt)])

    def capsule(start: np.ndarray, end: np.ndarray, radius: float) -> Capsule:
        return Capsule(start, end, max(radius * height, _MIN_RADIUS))

    def toward(angle: float, sign: float) -> np.ndarray:
        return -up * np.cos(angle) + side * sign * np.sin(angle)

    neck = pelvis + up * 0.30 * height
    nose = neck + up * 0.11 * height
    parts = {
        _TORSO: capsule(neck, pelvis, 0.09),
        _HEAD: capsule(nose + up * 0.03 * height, nose - up * 0.03 * height, 0.075),
    }
    joints = {"nose": nose}
    for sign, name, index in ((1.0, "left", 0), (-1.0, "right", 1)):
        shoulder = neck + (side * sign * 0.10 - up * 0.02) * height
        arm = rng.uniform(0.15, 2.8)
        elbow = shoulder + toward(arm, sign) * 0.15 * height
        forearm = toward(arm + rng.uniform(-0.5, 2.0), sign)
        wrist = elbow + forearm * 0.14 * height
        hip = pelvis + side * sign * 0.055 * height
        leg = rng.uniform(-0.1, 0.6)
        knee = hip + toward(leg, sign) * 0.22 * height
        ankle = knee + toward(leg + rng.uniform(-0.5, 0.2), sign) * 0.21 * height
        parts[_UPPER_ARM[index]] = capsule(shoulder, elbow, 0.032)
        parts[_LOWER_ARM[index]] = capsule(elbow, wrist, 0.027)
        parts[_HAND[index]] = capsule(
            wrist + forearm * 0.01 * height, wrist + forearm * 0.045 * height, 0.028
        )
        parts[_UPPER_LEG[index]] = capsule(hip, knee, 0.042)
        parts[_LOWER_LEG[index]] = capsule(knee, ankle, 0.034)
        parts[_FOOT[index]] = capsule(ankle, ankle + toward(1.3, sign) * 0.07 * height, 0.022)
        joints.update(
            {
                f"{name}_shoulder": shoulder,
                f"{name}_elbow": elbow,
                f"{name}_wrist": wrist,
                f"{name}_hip": hip,
                f"{name}_knee": knee,
                f"{name}_ankle": ankle,
            }
        )
    keypoints = np.stack([joints[name] for name in KEYPOINT_NAMES])
    return Figure(keypoints=keypoints, parts=parts)


def figure_outlines(figure: Figure) -> list[tuple[np.ndarray, int]]:
    """``(points, coarse part index)`` polygons drawing the figure, for :func:`fill_polygons`."""
    return [
        (capsule_outline(figure.parts[p].start, figure.parts[p].end, figure.parts[p].radius), p)
        for p in _DRAW_ORDER
    ]


def surface_uv(capsule: Capsule, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DensePose-style surface coordinates of ``points`` on one part.

    Args:
        capsule: the part.
        points: float ``[N, 2]`` (x, y) image pixels on the part.

    Returns:
        ``(u, v)``, float ``[N]`` each in [0, 1]: ``u`` = (signed distance from the axis /
        radius + 1) / 2 across the part; ``v`` = position along it, from the far side of the
        start cap (0) to the far side of the end cap (1).
    """
    axis = capsule.end - capsule.start
    length = float(np.hypot(*axis))
    direction = axis / length
    offset = points - capsule.start
    along = offset @ direction
    across = offset[:, 0] * direction[1] - offset[:, 1] * direction[0]
    u = np.clip((across / capsule.radius + 1) / 2, 0, 1)
    v = np.clip((along + capsule.radius) / (length + 2 * capsule.radius), 0, 1)
    return u, v
