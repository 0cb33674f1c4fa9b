"""The category, keypoint and DensePose part tables of the ``shapes`` dataset.

Category ids are deliberately not contiguous (as in COCO), so readers must map ids to labels.

Thing categories (``isthing`` 1, in ``instances.json`` and ``panoptic.json``):

====  ========  ==================================================
id    name      geometry
====  ========  ==================================================
1     circle    disc
3     triangle  jittered triangle
5     square    square
7     star      five-pointed star (concave)
9     hexagon   regular hexagon
11    ring      disc with a concentric hole (always written as RLE)
13    figure    articulated stick figure, with keypoints and DensePose
====  ========  ==================================================

Stuff categories (``isthing`` 0, ``panoptic.json`` only): 21 sky (vertical colour gradient),
23 ground (noisy texture), 25 water (stripes).

Keypoints of ``figure`` (COCO's 17 without eyes and ears, in COCO's order; ``left`` is the
figure's own left, which is the image's right for a figure facing the camera):
nose, left_shoulder, right_shoulder, left_elbow, right_elbow, left_wrist, right_wrist, left_hip,
right_hip, left_knee, right_knee, left_ankle, right_ankle.

DensePose parts of ``figure``. Each body part is one capsule; it is labelled with DensePose's
coarse index (1..14, the order of DensePose-COCO's ``dp_masks``) and with the first fine index
``I`` (1..24) of DensePose's front/back pair for that part (the figure has one visible side):

======  ========  ================  ====================================
coarse  fine I    part              surface coordinates
======  ========  ================  ====================================
1       1         torso             U across the body, V neck -> pelvis
2       3         right hand        U across, V wrist -> fingertips
3       4         left hand         U across, V wrist -> fingertips
4       5         left foot         U across, V ankle -> toes
5       6         right foot        U across, V ankle -> toes
6       7         upper leg right   U across, V hip -> knee
7       8         upper leg left    U across, V hip -> knee
8       11        lower leg right   U across, V knee -> ankle
9       12        lower leg left    U across, V knee -> ankle
10      15        upper arm left    U across, V shoulder -> elbow
11      16        upper arm right   U across, V shoulder -> elbow
12      19        lower arm left    U across, V elbow -> wrist
13      20        lower arm right   U across, V elbow -> wrist
14      23        head              U across, V crown -> chin
======  ========  ================  ====================================

U runs across a capsule: (signed distance from its axis / its radius + 1) / 2; V runs along it,
from the far side of the cap at its first end (0) to the far side of the cap at its second end
(1). Both are continuous and lie in [0, 1].
"""

THING_CATEGORIES: tuple[dict, ...] = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
    {"id": 5, "name": "square", "supercategory": "shape"},
    {"id": 7, "name": "star", "supercategory": "shape"},
    {"id": 9, "name": "hexagon", "supercategory": "shape"},
    {"id": 11, "name": "ring", "supercategory": "shape"},
    {"id": 13, "name": "figure", "supercategory": "figure"},
)
STUFF_CATEGORIES: tuple[dict, ...] = (
    {"id": 21, "name": "sky", "supercategory": "background"},
    {"id": 23, "name": "ground", "supercategory": "background"},
    {"id": 25, "name": "water", "supercategory": "background"},
)
CATEGORY_ID_BY_NAME: dict[str, int] = {
    c["name"]: c["id"] for c in THING_CATEGORIES + STUFF_CATEGORIES
}
SHAPE_KINDS: tuple[str, ...] = ("circle", "triangle", "square", "star", "hexagon", "ring")
FIGURE_CATEGORY_ID = CATEGORY_ID_BY_NAME["figure"]

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# Per-keypoint OKS sigmas of ``figure`` for keypoint AP: COCO's sigmas of the same 13 joints
# (COCO's 17 person sigmas without eyes and ears). OKS scales them by sqrt(annotated area); the
# figure's area is ~0.22 of its squared height, about a standing COCO person's, so they give
# the same tolerances relative to body size as COCO's keypoint AP.
KEYPOINT_OKS_SIGMAS: tuple[float, ...] = (
    0.026,  # nose
    0.079,  # shoulders
    0.079,
    0.072,  # elbows
    0.072,
    0.062,  # wrists
    0.062,
    0.107,  # hips
    0.107,
    0.087,  # knees
    0.087,
    0.089,  # ankles
    0.089,
)
# 1-based keypoint index pairs, as in COCO's ``skeleton``.
SKELETON: tuple[tuple[int, int], ...] = (
    (12, 10),
    (10, 8),
    (13, 11),
    (11, 9),
    (8, 9),
    (2, 8),
    (3, 9),
    (2, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
    (1, 2),
    (1, 3),
)

# Coarse DensePose part index (1..14) -> fine part index I (1..24); see the module docstring.
FINE_PART_OF_COARSE: dict[int, int] = {
    1: 1,
    2: 3,
    3: 4,
    4: 5,
    5: 6,
    6: 7,
    7: 8,
    8: 11,
    9: 12,
    10: 15,
    11: 16,
    12: 19,
    13: 20,
    14: 23,
}
NUM_COARSE_PARTS = 14


def figure_category() -> dict:
    """The ``figure`` category as COCO keypoint files list it (with names and skeleton)."""
    category = dict(THING_CATEGORIES[-1])
    category["keypoints"] = list(KEYPOINT_NAMES)
    category["skeleton"] = [list(pair) for pair in SKELETON]
    return category


def panoptic_categories() -> list[dict]:
    """All categories with COCO panoptic's ``isthing`` flag (things first, then stuff)."""
    things = [dict(c, isthing=1) for c in THING_CATEGORIES]
    stuff = [dict(c, isthing=0) for c in STUFF_CATEGORIES]
    return things + stuff
