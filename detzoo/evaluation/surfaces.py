"""Body surfaces for DensePose's geodesic point similarity: the :class:`SurfaceDistance` interface
and Detectron2's SMPL geodesics for DensePose-COCO (:class:`SMPLGeodesics`). The synthetic
``shapes`` figure's surface is :class:`detzoo.data.synthetic.surface.ShapesFigureSurface`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from detzoo.structures.densepose import NUM_FINE_PARTS


class SurfaceDistance(Protocol):
    """A body surface with its geodesic distance, for :class:`DensePoseEvaluator`.

    Surface points are (I, U, V): fine part index I (1..24; 0 = background) and chart
    coordinates U, V in ``[0, 1]``. Distances are in metres of a ~1.7 m person, the units of
    Detectron2's SMPL geodesics.
    """

    def distances(
        self,
        gt_i: np.ndarray,
        gt_u: np.ndarray,
        gt_v: np.ndarray,
        pred_i: np.ndarray,
        pred_u: np.ndarray,
        pred_v: np.ndarray,
    ) -> np.ndarray:
        """float64 ``[P]``: geodesic distance between the ground-truth points (int ``[P]`` I in
        1..24, float ``[P]`` U, V) and the predicted ones (I in 0..24); ``inf`` where
        ``pred_i == 0``."""
        ...

    def normalization(self, gt_i: np.ndarray) -> np.ndarray:
        """float64 ``[P]``: GPS's ``κ`` of points on parts ``gt_i`` (int ``[P]``, 1..24), the
        mean geodesic distance between points of the part (metres)."""
        ...


# ---- SMPL geodesics (DensePose-COCO) -------------------------------------------------------

#: Detectron2's body-model data for the evaluation (``DensePoseCocoEval._loadGEval``)
SMPL_GEODESICS_FILES = ("SMPL_subdiv.mat", "SMPL_SUBDIV_TRANSFORM.mat", "Pdist_matrix.pkl")
SMPL_GEODESICS_URL = "https://dl.fbaipublicfiles.com/densepose/data/"
# _loadGEval: mean geodesic distance (m) of 8 part groups, and each fine part's group
_SMPL_MEAN_DISTANCES = np.array([0, 0.351, 0.107, 0.126, 0.237, 0.173, 0.142, 0.128, 0.150])
_SMPL_PART_GROUPS = np.array(
    [0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8]
)


def _pdist_index(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Index in ``Pdist_matrix`` of the vertex pair (0-based, ``high > low``): Detectron2's
    ``getDistancesUV`` arithmetic (with n = 27554) reduces to the row-major index of
    ``(high, low)`` in the strictly lower triangle, whatever n is."""
    return high * (high - 1) // 2 + low


class SMPLGeodesics:
    """Geodesic distances on the SMPL body, from the files Detectron2's DensePose evaluation
    downloads (:data:`SMPL_GEODESICS_FILES` from :data:`SMPL_GEODESICS_URL`).

    As ``DensePoseCocoEval`` (``findAllClosestVertsUV``/``findAllClosestVertsGT``,
    ``getDistancesUV``): each (I, U, V) goes to the vertex of the subdivided SMPL mesh on part I
    nearest in (U, V) (``SMPL_subdiv.mat``: ``U_subdiv``, ``V_subdiv``, ``Part_ID_subdiv``), which
    ``SMPL_SUBDIV_TRANSFORM.mat`` (``index``) maps to a vertex of the 27554 whose pairwise
    geodesic distances (m) ``Pdist_matrix.pkl`` holds as a condensed matrix. ``κ`` is
    ``Mean_Distances`` of the part's group (torso 0.351 m ... head 0.150 m).

    The files are checked here and read at the first query (the distance matrix is large);
    reading the ``.mat`` files needs scipy. The pickle is read with detzoo's arrays-only
    unpickler.

    Args:
        subdiv_mat, transform_mat, pdist_pkl: paths of the three files.
    """

    def __init__(
        self, subdiv_mat: str | Path, transform_mat: str | Path, pdist_pkl: str | Path
    ) -> None:
        self.paths = (Path(subdiv_mat), Path(transform_mat), Path(pdist_pkl))
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"DensePose evaluation needs Detectron2's SMPL geodesic data; missing: "
                f"{', '.join(missing)}. Download "
                + ", ".join(SMPL_GEODESICS_URL + name for name in SMPL_GEODESICS_FILES)
                + " into one directory and pass it (SMPLGeodesics.from_files(directory) or "
                "CocoDataModule(densepose_geodesics_dir=...))"
            )
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_files(cls, directory: str | Path) -> SMPLGeodesics:
        """The three files under their Detectron2 names (:data:`SMPL_GEODESICS_FILES`) in
        ``directory``; raises ``FileNotFoundError`` naming the missing ones and their URLs."""
        return cls(*(Path(directory) / name for name in SMPL_GEODESICS_FILES))

    def __getstate__(self) -> dict:
        # DataLoader workers get a copy of the dataset holding this: never the loaded matrix.
        return {"paths": self.paths, "_tables": None}

    def _load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._tables is None:
            try:
                from scipy.io import loadmat
            except ImportError as error:
                raise ImportError(
                    "SMPLGeodesics reads Detectron2's .mat files with scipy, which is not "
                    "installed: pip install scipy"
                ) from error
            # detzoo.zoo is imported lazily and needs nothing back from evaluation
            from detzoo.zoo.safe_pickle import load_arrays_pickle

            subdiv = loadmat(self.paths[0])
            vertex_uv = np.stack(
                [np.asarray(subdiv[k], np.float64).reshape(-1) for k in ("U_subdiv", "V_subdiv")],
                axis=1,
            )
            vertex_part = np.asarray(subdiv["Part_ID_subdiv"]).reshape(-1).astype(np.int64)
            transform = np.asarray(loadmat(self.paths[1])["index"]).reshape(-1).astype(np.int64)
            pdist = np.asarray(load_arrays_pickle(self.paths[2])["Pdist_matrix"]).reshape(-1)
            self._tables = (vertex_uv, vertex_part, transform, pdist)
        return self._tables

    def _closest_vertices(self, parts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """int64 ``[P]``: the 1-based distance-matrix vertex of each point, 0 for parts not in
        1..24 (background)."""
        vertex_uv, vertex_part, transform, _ = self._load()
        closest = np.zeros(len(parts), np.int64)  # 1-based subdivided-mesh vertex
        uv = np.stack([u, v], axis=1).astype(np.float64)
        for part in np.unique(parts[(parts >= 1) & (parts <= NUM_FINE_PARTS)]):
            on_part = parts == part
            candidates = np.flatnonzero(vertex_part == part)
            squared = ((uv[on_part, None] - vertex_uv[None, candidates]) ** 2).sum(-1)
            closest[on_part] = candidates[squared.argmin(axis=1)] + 1
        return np.where(closest > 0, transform[np.maximum(closest, 1) - 1], 0)

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
        pdist = self._load()[3]
        gt_vertex = self._closest_vertices(np.asarray(gt_i), gt_u, gt_v) - 1
        pred_vertex = self._closest_vertices(np.asarray(pred_i), pred_u, pred_v) - 1
        high = np.maximum(gt_vertex, pred_vertex)
        low = np.minimum(gt_vertex, pred_vertex)
        pair = (low >= 0) & (high > low)
        found = pdist[np.where(pair, _pdist_index(high, low), 0)].astype(np.float64)
        return np.where(pred_vertex < 0, np.inf, np.where(high == low, 0.0, found))

    def normalization(self, gt_i: np.ndarray) -> np.ndarray:
        """See :meth:`SurfaceDistance.normalization`."""
        return _SMPL_MEAN_DISTANCES[_SMPL_PART_GROUPS[np.asarray(gt_i)]]
