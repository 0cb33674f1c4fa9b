import math
import pickle

import numpy as np
import pytest
import torch

from detzoo.data.synthetic.categories import FINE_PART_OF_COARSE
from detzoo.data.synthetic.surface import ShapesFigureSurface
from detzoo.evaluation import DensePoseEvaluator, SMPLGeodesics
from detzoo.evaluation.densepose import _gt_mask, geodesic_point_similarity
from detzoo.evaluation.surfaces import _pdist_index
from detzoo.structures.densepose import chart_to_box_iuv

S = 112  # chart resolution
IMAGE_SIZE = (300, 300)
GT_BOX = (10.0, 10.0, 122.0, 122.0)  # S x S: the charts map 1:1 to the box's pixels


class LineSurface:
    """A toy surface for hand computation: part I lies I metres along a line and U adds its
    offset, so d = |I - I'| + |U - U'| (V is ignored); kappa is 0.5 m everywhere."""

    def distances(self, gt_i, gt_u, gt_v, pred_i, pred_u, pred_v):
        distance = np.abs(gt_i - pred_i) + np.abs(gt_u - pred_u)
        return np.where(pred_i == 0, np.inf, distance.astype(np.float64))

    def normalization(self, gt_i):
        return np.full(len(gt_i), 0.5)


def _charts(part: int, u: float, v: float, foreground_cols: int = S) -> dict[str, torch.Tensor]:
    """Charts [1, C, S, S] predicting fine ``part`` and constant U, V, with the coarse
    foreground on the first ``foreground_cols`` chart columns."""
    coarse = torch.zeros(1, 2, S, S)
    coarse[0, 1, :, :foreground_cols] = 1.0
    coarse[0, 0, :, foreground_cols:] = 1.0
    fine = torch.zeros(1, 25, S, S)
    fine[0, part] = 1.0
    uu, vv = torch.zeros(1, 25, S, S), torch.zeros(1, 25, S, S)
    uu[0, part], vv[0, part] = u, v
    return {"coarse_segm": coarse, "fine_segm": fine, "u": uu, "v": vv}


def _pred(detections: list[tuple[tuple[float, ...], float, dict]]) -> dict:
    """One image's prediction from (box xyxy, score, charts) triples."""
    return {
        "boxes": torch.tensor([d[0] for d in detections], dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor([d[1] for d in detections], dtype=torch.float32),
        "labels": torch.zeros(len(detections), dtype=torch.int64),
        "densepose": {
            k: torch.cat([d[2][k] for d in detections]) if detections else torch.zeros(0, 2, S, S)
            for k in ("coarse_segm", "fine_segm", "u", "v")
        },
    }


def _person(part: int, u: float, v: float, xs: list[float], segm_cols: int = 256) -> dict:
    """A DensePose annotation over GT_BOX: points at (x, 60.5) for x in ``xs``, all on fine
    ``part`` at (u, v); coarse mask on the first ``segm_cols`` columns of the frame."""
    segm = torch.zeros(256, 256, dtype=torch.uint8)
    segm[:, :segm_cols] = 1
    n = len(xs)
    return {
        "x": torch.tensor(xs, dtype=torch.float32),
        "y": torch.full((n,), 60.5),
        "I": torch.full((n,), part, dtype=torch.int64),
        "U": torch.full((n,), u),
        "V": torch.full((n,), v),
        "segm": segm,
        "segm_box": torch.tensor(GT_BOX),
    }


def _target(people: list[tuple[tuple[float, ...], dict | None]]) -> dict:
    """One image's target from (box xyxy, DensePose annotation or None) pairs."""
    boxes = torch.tensor([p[0] for p in people], dtype=torch.float32).reshape(-1, 4)
    return {
        "boxes": boxes,
        "labels": torch.zeros(len(people), dtype=torch.int64),
        "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
        "iscrowd": torch.zeros(len(people), dtype=torch.int64),
        "densepose": [p[1] for p in people],
        "orig_size": IMAGE_SIZE,
    }


XS = [20.5, 30.5, 45.5, 60.5]  # all in the left half of GT_BOX


def _gps(charts: dict, box: tuple[float, ...], person: dict, surface=None, kappa=None) -> float:
    x0, y0, x1, y1 = box
    iuv = chart_to_box_iuv(
        charts["coarse_segm"][0], charts["fine_segm"][0], charts["u"][0], charts["v"][0],
        torch.tensor(box),
    )  # fmt: skip
    return geodesic_point_similarity(
        iuv, (x0, y0, x1 - x0, y1 - y0), person, surface or LineSurface(), kappa
    )


def _evaluate(preds: list[dict], targets: list[dict], **kwargs) -> dict[str, float]:
    evaluator = DensePoseEvaluator(LineSurface(), **kwargs)
    evaluator.update(preds, targets)
    return evaluator.compute()


# ---- GPS and GPSm of single pairs -----------------------------------------------------------


def test_gps_is_one_for_a_prediction_equal_to_the_ground_truth():
    # U = 1, V = 0 survive Detectron2's uint8 quantisation exactly
    assert _gps(_charts(3, 1.0, 0.0), GT_BOX, _person(3, 1.0, 0.0, XS)) == 1.0


def test_gps_of_points_on_a_wrong_part():
    # d = |4 - 3| = 1 m on every point: exp(-1 / (2 * 0.5^2)) = exp(-2)
    assert _gps(_charts(4, 1.0, 0.0), GT_BOX, _person(3, 1.0, 0.0, XS)) == pytest.approx(
        math.exp(-2)
    )
    # five parts away: exp(-25 / 0.5) = exp(-50), nothing left
    assert _gps(_charts(8, 1.0, 0.0), GT_BOX, _person(3, 1.0, 0.0, XS)) < 1e-20
    # a fixed kappa (the paper's 0.255 m) replaces the surface's: exp(-1 / (2 * 0.255^2))
    gps = _gps(_charts(4, 1.0, 0.0), GT_BOX, _person(3, 1.0, 0.0, XS), kappa=0.255)
    assert gps == pytest.approx(math.exp(-1 / (2 * 0.255**2)))
    # U off by 0.6 (0.6 = 153 / 255 quantises exactly): exp(-0.36 / 0.5)
    gps = _gps(_charts(3, 0.4, 0.0), GT_BOX, _person(3, 1.0, 0.0, XS))
    assert gps == pytest.approx(math.exp(-0.72), rel=1e-6)


def test_points_on_background_or_outside_the_box_have_similarity_zero():
    person = _person(3, 1.0, 0.0, XS)
    assert _gps(_charts(3, 1.0, 0.0, foreground_cols=0), GT_BOX, person) == 0.0
    # a box holding the first two of the four points (x 20.5, 30.5): (1 + 1 + 0 + 0) / 4
    assert _gps(_charts(3, 1.0, 0.0), (10.0, 10.0, 40.0, 122.0), person) == 0.5
    # a box away from every point: GPS 0
    assert _gps(_charts(3, 1.0, 0.0), (70.0, 10.0, 122.0, 122.0), person) == 0.0


def test_points_are_read_where_detectron2_reads_them():
    # Detectron2 reads pixel trunc(dp_x * w / 255) of the box, where detzoo's x - x_gt is
    # dp_x * w / 256: x = 73.5 reads 63.5 * 256 / 255 = 63.75 -> pixel 63, inside a 64-px box
    # from x = 10; x = 73.9 reads 64.15 -> pixel 64, outside it (with / 256 it would be 63)
    box = (10.0, 10.0, 74.0, 122.0)
    assert _gps(_charts(3, 1.0, 0.0), box, _person(3, 1.0, 0.0, [73.5])) == 1.0
    assert _gps(_charts(3, 1.0, 0.0), box, _person(3, 1.0, 0.0, [73.9])) == 0.0


def test_gt_mask_resize_matches_scipy_zoom():
    zoom = pytest.importorskip("scipy.ndimage").zoom
    segm = torch.from_numpy((np.random.default_rng(0).random((256, 256)) > 0.6).astype(np.uint8))
    for w, h in ((37.6, 81.2), (300.0, 12.4), (0.3, 5.0)):
        mask = np.minimum(segm.numpy().astype(np.float64), 1.0)
        expected = zoom(mask, (max(h, 1) / 256, max(w, 1) / 256), order=1, prefilter=False) > 0.5
        np.testing.assert_array_equal(_gt_mask(segm, (5.0, 5.0, w, h)), expected)


# ---- AP ---------------------------------------------------------------------------------------


def test_perfect_prediction_has_ap_one():
    pred = _pred([(GT_BOX, 0.9, _charts(3, 1.0, 0.0))])
    target = _target([(GT_BOX, _person(3, 1.0, 0.0, XS))])
    results = _evaluate([pred], [target])
    for mode in ("GPS", "GPSm"):
        for stat in ("AP", "AP50", "AP75", "APl"):
            assert results[f"densepose/{stat}_{mode}"] == pytest.approx(1.0)
        assert math.isnan(results[f"densepose/APm_{mode}"])  # no medium person (area 112^2)


def test_wrong_part_prediction_is_a_false_positive():
    # GPS exp(-2) = 0.135 < 0.5: never matched, and the box rule does not excuse it (the person
    # is annotated)
    pred = _pred([(GT_BOX, 0.9, _charts(4, 1.0, 0.0))])
    target = _target([(GT_BOX, _person(3, 1.0, 0.0, XS))])
    results = _evaluate([pred], [target])
    assert results["densepose/AP_GPS"] == 0.0 and results["densepose/AP50_GPSm"] == 0.0


def test_gpsm_with_a_half_overlapping_mask():
    # The prediction's foreground is the left half of its box (chart columns < 56), the
    # person's mask the whole box: IoU 0.5; points all in the left half with
    # the right part: GPS 1; GPSm = sqrt(1 * 0.5) = 0.707, matched at thresholds 0.50..0.70
    # (5 of 10)
    pred = _pred([(GT_BOX, 0.9, _charts(3, 1.0, 0.0, foreground_cols=S // 2))])
    target = _target([(GT_BOX, _person(3, 1.0, 0.0, XS))])
    results = _evaluate([pred], [target])
    assert results["densepose/AP_GPS"] == pytest.approx(1.0)
    assert results["densepose/AP_GPSm"] == pytest.approx(0.5)
    assert (
        results["densepose/AP50_GPSm"] == pytest.approx(1.0)
        and results["densepose/AP75_GPSm"] == 0.0
    )
    # half the person's mask (frame columns < 128 -> box columns < 56) against the whole
    # predicted box: the same IoU
    pred = _pred([(GT_BOX, 0.9, _charts(3, 1.0, 0.0))])
    target = _target([(GT_BOX, _person(3, 1.0, 0.0, XS, segm_cols=128))])
    results = _evaluate([pred], [target])
    assert results["densepose/AP_GPSm"] == pytest.approx(0.5)


def test_ap_depends_on_score_order():
    right, wrong = _charts(3, 1.0, 0.0), _charts(4, 1.0, 0.0)
    target = _target([(GT_BOX, _person(3, 1.0, 0.0, XS))])
    # the right detection first: precision 1 at recall 1, the false positive comes after
    results = _evaluate([_pred([(GT_BOX, 0.9, right), (GT_BOX, 0.5, wrong)])], [target])
    assert results["densepose/AP_GPS"] == pytest.approx(1.0)
    # the wrong one first: precision 1/2 at recall 1 (at every threshold)
    results = _evaluate([_pred([(GT_BOX, 0.9, wrong), (GT_BOX, 0.5, right)])], [target])
    assert results["densepose/AP_GPS"] == pytest.approx(0.5)


def test_detections_of_unannotated_people_are_ignored():
    other = (150.0, 20.0, 290.0, 290.0)  # a person without DensePose annotations
    target = _target([(GT_BOX, _person(3, 1.0, 0.0, XS)), (other, None)])
    preds = _pred([(other, 0.95, _charts(3, 1.0, 0.0)), (GT_BOX, 0.9, _charts(3, 1.0, 0.0))])
    assert _evaluate([preds], [target])["densepose/AP_GPS"] == pytest.approx(1.0)
    # the same detection away from any person (box IoU < 0.8) is a false positive
    preds = _pred(
        [((150.0, 150.0, 290.0, 290.0), 0.95, _charts(3, 1.0, 0.0))]
        + [(GT_BOX, 0.9, _charts(3, 1.0, 0.0))]
    )
    assert _evaluate([preds], [target])["densepose/AP_GPS"] == pytest.approx(0.5)


def test_images_are_pooled_and_nothing_predicted_is_nan():
    target = _target([(GT_BOX, _person(3, 1.0, 0.0, XS))])
    hit, missed = _pred([(GT_BOX, 0.9, _charts(3, 1.0, 0.0))]), _pred([])
    # two annotated people, one found with precision 1: recall 1/2, AP = 51 / 101
    results = _evaluate([hit, missed], [target, target])
    assert results["densepose/AP_GPS"] == pytest.approx(51 / 101)
    results = _evaluate([missed], [target])
    assert all(math.isnan(v) for v in results.values()) and len(results) == 10


def test_reset_and_input_checks():
    evaluator = DensePoseEvaluator(LineSurface())
    target = _target([(GT_BOX, _person(3, 1.0, 0.0, XS))])
    evaluator.update([_pred([(GT_BOX, 0.9, _charts(3, 1.0, 0.0))])], [target])
    evaluator.reset()
    assert math.isnan(evaluator.compute()["densepose/AP_GPS"])
    with pytest.raises(ValueError, match="'densepose' charts"):
        evaluator.update([{"boxes": torch.zeros(0, 4)}], [target])
    with pytest.raises(ValueError, match="kappa"):
        DensePoseEvaluator(LineSurface(), kappa=0.0)


# ---- the shapes figure's surface ----------------------------------------------------------

# The upright figure (generator units of its `height` h): head top 0.41 h + 0.03 h + 0.075 h above
# the pelvis; feet down to 0.43 h + 0.07 h cos(1.3) + 0.022 h below it; scaled to 1.7 m.
METRES_PER_H = 1.7 / (0.515 + 0.43 + 0.07 * math.cos(1.3) + 0.022)
TORSO, HEAD = FINE_PART_OF_COARSE[1], FINE_PART_OF_COARSE[14]
UPPER_LEG_LEFT, UPPER_LEG_RIGHT = FINE_PART_OF_COARSE[7], FINE_PART_OF_COARSE[6]
LOWER_ARM_LEFT, HAND_LEFT, HAND_RIGHT = (FINE_PART_OF_COARSE[c] for c in (12, 3, 2))


@pytest.fixture(scope="module")
def figure() -> ShapesFigureSurface:
    return ShapesFigureSurface()


def _d(surface, a: tuple[int, float, float], b: tuple[int, float, float]) -> float:
    (i, u, v), (j, s, t) = a, b
    arrays = [np.array([x]) for x in (i, u, v, j, s, t)]
    return float(surface.distances(*arrays)[0])


def _random_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts = rng.choice(sorted(FINE_PART_OF_COARSE.values()), n)
    return parts, rng.random(n), rng.random(n)


def test_figure_distance_is_zero_for_identical_points_and_symmetric(figure):
    a, b = _random_points(200, 0), _random_points(200, 1)
    np.testing.assert_array_equal(figure.distances(*a, *a), 0.0)
    np.testing.assert_allclose(figure.distances(*a, *b), figure.distances(*b, *a), rtol=1e-12)
    assert (figure.distances(*a, *b)[a[0] != b[0]] > 0).all()


def test_figure_distance_known_values(figure):
    # along the torso's axis from V = 0 to V = 1: its length plus both caps, 0.30 h + 2 * 0.09 h
    assert _d(figure, (TORSO, 0.5, 0.0), (TORSO, 0.5, 1.0)) == pytest.approx(0.48 * METRES_PER_H)
    # the neck (torso V = r / (length + 2 r) = 0.09 / 0.48) to the top of the head (head V = 0):
    # 0.515 h - 0.30 h, through the neck joint
    neck = (TORSO, 0.5, 0.09 / 0.48)
    assert _d(figure, neck, (HEAD, 0.5, 0.0)) == pytest.approx(0.215 * METRES_PER_H)
    # hip to hip (each upper leg at V = 0.042 / 0.304, its hip end), through the pelvis: 0.11 h
    hip = 0.042 / (0.22 + 2 * 0.042)
    distance = _d(figure, (UPPER_LEG_LEFT, 0.5, hip), (UPPER_LEG_RIGHT, 0.5, hip))
    assert distance == pytest.approx(0.11 * METRES_PER_H)


def test_figure_distance_grows_along_a_limb_and_goes_round_through_the_torso(figure):
    neck = (TORSO, 0.5, 0.09 / 0.48)
    along = [_d(figure, neck, (LOWER_ARM_LEFT, 0.5, v)) for v in np.linspace(0.2, 1.0, 9)]
    assert np.all(np.diff(along) > 0)
    hand_to_hand = _d(figure, (HAND_LEFT, 0.5, 0.5), (HAND_RIGHT, 0.5, 0.5))
    assert hand_to_hand > _d(figure, (HAND_LEFT, 0.5, 0.5), neck) + 0.1


def test_figure_off_surface_parts(figure):
    # fine index 2 (torso back) is not on the one-sided figure: a prediction there is background
    assert _d(figure, (TORSO, 0.5, 0.5), (2, 0.5, 0.5)) == math.inf
    assert _d(figure, (TORSO, 0.5, 0.5), (0, 0.0, 0.0)) == math.inf
    with pytest.raises(ValueError, match=r"\[2\] are not parts of the shapes figure"):
        figure.distances(*(np.array([x]) for x in (2, 0.5, 0.5, 1, 0.5, 0.5)))


def test_figure_normalization_is_the_mean_distance_over_the_part(figure):
    # Monte Carlo mean distance between two uniform points of the torso's chart rectangle,
    # (0.30 h + 2 * 0.09 h) x (2 * 0.09 h)
    rng = np.random.default_rng(0)
    sides = np.array([0.48, 0.18]) * METRES_PER_H
    p, q = rng.random((2, 400_000, 2)) * sides
    expected = np.linalg.norm(p - q, axis=1).mean()
    assert figure.normalization(np.array([TORSO]))[0] == pytest.approx(expected, rel=3e-3)
    kappas = figure.normalization(np.array([TORSO, HEAD, HAND_LEFT, HAND_RIGHT]))
    assert kappas[0] > kappas[1] > kappas[2] == kappas[3]


def test_shapes_surface_in_the_evaluator(figure):
    # on the figure's surface: GPS 1 for the right hand chart, ~0 for the other hand's (1.46 m away
    # round the body, far beyond the hand's kappa of 7 cm)
    person = _person(HAND_LEFT, 1.0, 0.0, XS)
    assert _gps(_charts(HAND_LEFT, 1.0, 0.0), GT_BOX, person, figure) == 1.0
    gps = _gps(_charts(HAND_RIGHT, 1.0, 0.0), GT_BOX, person, figure)
    d = _d(figure, (HAND_LEFT, 1.0, 0.0), (HAND_RIGHT, 1.0, 0.0))
    kappa = figure.normalization(np.array([HAND_LEFT]))[0]
    assert gps == pytest.approx(math.exp(-(d**2) / (2 * kappa**2))) and gps < 1e-6


# ---- SMPL geodesics -------------------------------------------------------------------------


def test_missing_smpl_files_name_what_to_download(tmp_path):
    (tmp_path / "SMPL_subdiv.mat").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as error:
        SMPLGeodesics.from_files(tmp_path)
    message = str(error.value)
    assert "SMPL_SUBDIV_TRANSFORM.mat" in message and "Pdist_matrix.pkl" in message
    assert f"{tmp_path / 'SMPL_subdiv.mat'}," not in message  # present, not listed missing
    assert "https://dl.fbaipublicfiles.com/densepose/data/Pdist_matrix.pkl" in message


def _detectron2_pdist_index(i: int, j: int, n: int = 27554) -> int:
    """getDistancesUV's index arithmetic, transcribed (i, j 0-based, i != j)."""
    if j > i:
        i, j = j, i
    i, j = n - i - 1, n - j - 1
    k = (n * (n - 1) / 2) - (n - i) * ((n - i) - 1) / 2 + j - i - 1
    return int((n * n - n) / 2 - k - 1)


def test_smpl_lookup_on_tiny_files(tmp_path):
    savemat = pytest.importorskip("scipy.io").savemat
    # subdivided mesh: 5 vertices, on parts 1, 1, 2, 2, 24; each maps to a distance-matrix vertex
    u = np.array([[0.1, 0.9, 0.2, 0.8, 0.5]])
    v = np.array([[0.1, 0.9, 0.5, 0.5, 0.5]])
    savemat(tmp_path / "SMPL_subdiv.mat", {
        "U_subdiv": u, "V_subdiv": v, "Part_ID_subdiv": np.array([[1, 1, 2, 2, 24]]),
    })  # fmt: skip
    transform = np.array([[3, 1, 4, 2, 3]])  # 1-based, into 4 distance-matrix vertices
    savemat(tmp_path / "SMPL_SUBDIV_TRANSFORM.mat", {"index": transform})
    n = 4
    geodesic = np.array([[0, 1.0, 2.0, 3.0], [1.0, 0, 4.0, 5.0], [2.0, 4.0, 0, 6.0], [3, 5, 6, 0]])
    pdist = np.zeros((n * (n - 1) // 2, 1), np.float32)
    for a in range(n):
        for b in range(a):
            pdist[_detectron2_pdist_index(a, b)] = geodesic[a, b]
    with open(tmp_path / "Pdist_matrix.pkl", "wb") as f:
        pickle.dump({"Pdist_matrix": pdist}, f)

    smpl = SMPLGeodesics.from_files(tmp_path)
    # GT (1, 0.15, 0.1) -> vertex 1 -> matrix vertex 3; predictions -> vertices 2, 3, 4, 5, none
    gt = [np.full(5, x) for x in (1, 0.15, 0.1)]
    pred_i, pred_u, pred_v = np.array([1, 2, 2, 24, 0]), np.array([0.8, 0.3, 0.7, 0.0, 0.5]), 0.9
    distances = smpl.distances(*gt, pred_i, pred_u, np.full(5, pred_v))
    # matrix vertices (1-based) 3 vs 1, 4, 2, 3 (the same: 0), background: inf
    np.testing.assert_allclose(distances, [2.0, 6.0, 4.0, 0.0, np.inf])
    # kappa: Detectron2's Mean_Distances of the torso and head groups
    np.testing.assert_allclose(
        smpl.normalization(np.array([1, 2, 24, 3])), [0.351] * 2 + [0.150, 0.107]
    )


def test_condensed_index_matches_detectron2():
    pairs = np.random.default_rng(0).integers(0, 27554, (200, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    high, low = pairs.max(axis=1), pairs.min(axis=1)
    expected = [_detectron2_pdist_index(int(a), int(b)) for a, b in pairs]
    np.testing.assert_array_equal(_pdist_index(high, low), expected)


def test_figure_layout_matches_the_generators_charts_on_a_posed_figure(figure):
    # Points of a randomly posed figure, charted by the generator's surface_uv, are as far apart
    # on the layout as on the figure itself (through the elbow joint), scaled to 1.7 m.
    from detzoo.data.synthetic.figure import pose_figure, surface_uv

    height = 200.0
    posed = pose_figure(np.random.default_rng(3), np.array([300.0, 300.0]), height)
    upper, lower = posed.parts[10], posed.parts[12]  # left upper and lower arm: fine I 15, 19
    elbow = upper.end

    def on(capsule, t: float, side: float) -> np.ndarray:
        axis = capsule.end - capsule.start
        normal = np.array([axis[1], -axis[0]]) / np.linalg.norm(axis)
        return (capsule.start + t * axis + side * capsule.radius * normal)[None]

    a, b, c = on(upper, 0.3, 0.5), on(upper, 0.8, -0.7), on(lower, 0.6, 0.4)
    (ua, va), (ub, vb), (uc, vc) = (
        surface_uv(upper, a),
        surface_uv(upper, b),
        surface_uv(lower, c),
    )
    metres_per_px = METRES_PER_H / height
    same_part = figure.distances(np.array([15]), ua, va, np.array([15]), ub, vb)[0]
    assert same_part == pytest.approx(np.linalg.norm(a - b) * metres_per_px)
    through_elbow = figure.distances(np.array([15]), ua, va, np.array([19]), uc, vc)[0]
    expected = (np.linalg.norm(a - elbow) + np.linalg.norm(elbow - c)) * metres_per_px
    assert through_elbow == pytest.approx(expected)


def test_shapes_datamodule_gives_its_evaluation_set_the_figure_surface(tmp_path):
    from detzoo.data import ShapesDataModule

    datamodule = ShapesDataModule(tmp_path, num_train=1, num_val=2, task="densepose")
    datamodule.prepare_data()
    datamodule.setup("validate")
    surface = datamodule.val_dataset.densepose_surface
    assert isinstance(surface, ShapesFigureSurface)
    # every annotated point of the generated figures is on the surface, at distance 0 from itself
    people = [p for i in range(2) for p in datamodule.val_dataset[i][1]["densepose"] if p]
    assert people
    for p in people:
        iuv = (p["I"].numpy(), p["U"].numpy(), p["V"].numpy())
        np.testing.assert_array_equal(surface.distances(*iuv, *iuv), 0.0)
